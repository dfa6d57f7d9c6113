"""Rewrite the README's settings table from the settings tree (tests check they agree)."""

from __future__ import annotations

import re
from pathlib import Path

from icdcoder.shared.settings import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"

text = README.read_text()
new = re.sub(
    r"(<!-- settings-table:start -->\n).*?(\n<!-- settings-table:end -->)",
    lambda m: m.group(1) + settings_table() + m.group(2),
    text,
    flags=re.S,
)
README.write_text(new)
print("README settings table", "updated" if new != text else "unchanged")
