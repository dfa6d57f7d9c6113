"""Verifier prompt templates, one file per version.

A template is plain text with ``str.format`` placeholders (no template engine), split into a
``### system`` and a ``### user`` part. The file name follows the version: ``verify-v1`` lives
in ``verify_v1.txt``. Changing what the model is asked means a new file and a new
``PROMPT_VERSION``, never an edit in place: results carry the version that produced them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

PROMPT_VERSION = "verify-v1"

_SYSTEM = "### system\n"
_USER = "### user\n"


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: str
    user: str


def load_template(version: str = PROMPT_VERSION) -> PromptTemplate:
    """The template for ``version``; ValueError for a version that has no file."""
    name = version.replace("-", "_") + ".txt"
    try:
        text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no prompt template for version {version!r} ({name})") from None
    if not text.startswith(_SYSTEM) or _USER not in text:
        raise ValueError(f"prompt template {name} needs '### system' then '### user' parts")
    system, user = text[len(_SYSTEM) :].split(_USER, 1)
    return PromptTemplate(version=version, system=system.strip(), user=user.strip())
