"""Fitting a pack's verifier weights on a coded corpus (``icdcoder train``).

The modules, in the order a fit uses them:

- :mod:`~icdcoder.training.corpus`: the coded cases (text and document-level codes) to learn
  from: a CodiEsp split today, any other source through the :class:`~.corpus.Corpus` protocol;
- :mod:`~icdcoder.training.retrieval`: each case segmented and retrieved with a pack's model
  (cached as JSON lines), then its example memory searched with each case's own examples left
  out;
- :mod:`~icdcoder.training.span_fit`: the span model, logistic regression over
  :data:`~icdcoder.services.verifier.span_model.FEATURES` by Newton's method;
- :mod:`~icdcoder.training.note_fit`: the note model over
  :data:`~icdcoder.services.verifier.note_model.NOTE_FEATURES`, boosted trees or logistic, with
  the memory's coded notes left out or cross-fitted;
- :mod:`~icdcoder.training.weights_file`: the weights file, the base's operating points kept;
- :mod:`~icdcoder.training.train`: all of it, from a base pack to new weights.

docs/confidence.md follows a code's confidence through what these fit.
"""
