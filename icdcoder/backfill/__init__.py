"""Backfilling archives of notes into the results store (``icdcoder backfill``)."""
