"""medspaCy's ConText without the rest of medspaCy: start-up in half a second, not five.

We use one medspaCy component, ConText. A plain ``import medspacy.context`` runs the package's
``__init__``, which imports every component (PyRuSH, the section detector, QuickUMLS and through
it NLTK and SciPy), and spaCy's ``thinc`` imports torch whenever torch is installed (it is: the
index build embeds the catalogue with it). Together about 4.5 of the 5 seconds ``icdcoder code``
spent importing before a note was read. Here:

- ``medspacy`` is entered in ``sys.modules`` as a bare package over its real folder while
  ``medspacy.context`` is imported, so the package ``__init__`` does not run; medspaCy's
  extensions are then set as its ``__init__`` sets them;
- ``quickumls``, which ``medspacy.util`` imports for a loader we never call, is a placeholder
  during that import;
- torch is hidden from the first ``import spacy`` when nothing has imported torch yet, so
  ``thinc`` records that it has no torch (ConText uses no thinc model).

Both placeholders leave ``sys.modules`` afterwards: a later ``import medspacy`` runs the real
``__init__`` (reusing the ConText modules already loaded). If medspaCy or spaCy is already
imported, this is a plain import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

_PLACEHOLDERS = ("medspacy", "quickumls")


def import_context() -> Any:
    """``medspacy.context``, imported without medspaCy's other components or torch."""
    if "medspacy.context" in sys.modules:
        return sys.modules["medspacy.context"]
    _import_spacy_without_torch()
    if "medspacy" in sys.modules:
        return importlib.import_module("medspacy.context")
    spec = importlib.util.find_spec("medspacy")
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError("medspacy is not installed", name="medspacy")
    package = types.ModuleType("medspacy")
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__spec__ = spec
    quickumls = types.ModuleType("quickumls")
    quickumls.spacy_component = None  # type: ignore[attr-defined]
    added = [name for name in _PLACEHOLDERS if name not in sys.modules]
    sys.modules.setdefault("medspacy", package)
    sys.modules.setdefault("quickumls", quickumls)
    try:
        context = importlib.import_module("medspacy.context")
        importlib.import_module("medspacy._extensions").set_extensions()
    finally:
        for name in added:
            del sys.modules[name]
    return context


def _import_spacy_without_torch() -> None:
    if "spacy" in sys.modules or "torch" in sys.modules:
        importlib.import_module("spacy")
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
    try:
        importlib.import_module("spacy")
    finally:
        del sys.modules["torch"]
