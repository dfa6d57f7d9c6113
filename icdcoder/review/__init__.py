"""The review page's pure parts: highlighting a note, searching the catalogue, and turning
reviewed notes into an example memory and a training corpus (``icdcoder.api.review`` serves
the page; ``icdcoder memory export`` and ``icdcoder train --store`` learn from it)."""
