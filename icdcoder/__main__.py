"""``python -m icdcoder``: the same command as ``icdcoder``."""

import sys

from icdcoder.cli import main

sys.exit(main())
