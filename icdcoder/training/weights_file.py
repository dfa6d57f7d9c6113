"""The weights file ``icdcoder train`` writes (read by
:class:`~icdcoder.services.verifier.weights.VerifierWeights`).

A fit replaces numbers, not decisions: the span and note operating points of the base file
(accept and review thresholds, codes per span and per note, chosen on held-out data) are kept
beside the new weights, to be checked again on held-out data. Each section says where its fit
came from (``provenance``). Lists of numbers are written on one line, so 200 trees stay a
readable file of a few hundred kilobytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from icdcoder.services.verifier.span_model import FEATURES

TOOL = "icdcoder train"


def provenance(
    corpus: str,
    cases: int,
    retrieval: str,
    memory: bool,
    rows: str,
    y: npt.NDArray[np.float64],
    part: str,
) -> dict[str, object]:
    """Where a fit came from, stored beside its weights."""
    return {
        "fitted_on": f"{corpus}, {cases} cases",
        "retrieval": retrieval,
        "memory": "leave-one-case-out" if memory else None,
        rows: len(y),
        "positives": int(y.sum()),
        "tool": f"{TOOL} ({part})",
    }


def with_span(
    base: Mapping[str, Any], weights: Mapping[str, float], origin: Mapping[str, object]
) -> dict[str, Any]:
    """New span weights and provenance; the base's span operating point and note section
    kept (the span features the new weights lack are dropped)."""
    out: dict[str, Any] = dict(weights) | {"provenance": dict(origin)}
    rest = {k: v for k, v in base.items() if k not in ("bias", *FEATURES, "provenance")}
    return out | rest


def with_note(base: Mapping[str, Any], note: Mapping[str, Any]) -> dict[str, Any]:
    """The ``note`` section replaced; the base note's operating point kept."""
    out = dict(base)
    point = (base.get("note") or {}).get("operating_point")
    out["note"] = dict(note)
    if point:
        # the operating point was chosen on held-out data for the previous fit: kept, to be
        # checked again
        out["note"]["operating_point"] = point
    return out


def compact_json(data: object) -> str:
    """Indented JSON with each list of numbers on one line (the trees stay readable)."""
    return re.sub(
        r"\[\s+([-+0-9.eE,\s]+?)\s+\]",
        lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]",
        json.dumps(data, indent=2),
    )


def write_weights(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(compact_json(data) + "\n", encoding="utf-8")


def read_weights(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a weights file")
    return data
