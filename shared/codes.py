"""ICD-10-CM code normalisation: the one place that decides how a code is spelled."""

from __future__ import annotations

import re

_CODE_RE = re.compile(r"^[A-Z][0-9A-Z][0-9A-Z](?:[0-9A-Z]{1,4})?$")


class InvalidCodeError(ValueError):
    """A string that cannot be an ICD-10-CM code."""


def normalise_code(raw: str) -> str:
    """Canonical form: upper case, a dot after the third character (``e119`` -> ``E11.9``).

    Raises :class:`InvalidCodeError` for strings that are not shaped like an ICD-10-CM code.
    """
    compact = raw.strip().upper().replace(".", "")
    if not _CODE_RE.match(compact):
        raise InvalidCodeError(f"not an ICD-10-CM code: {raw!r}")
    return compact if len(compact) == 3 else f"{compact[:3]}.{compact[3:]}"


def category(code: str) -> str:
    """The three-character category of a code (``E11.9`` -> ``E11``)."""
    return normalise_code(code)[:3]
