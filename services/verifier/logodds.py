"""Probabilities and log-odds: the one sigmoid the verifier's models share."""

from __future__ import annotations

import math


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def logit(p: float, bound: float = 12.0) -> float:
    """Log-odds of ``p``, clipped to +-``bound`` (a probability of 0 or 1 stays finite)."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    return max(-bound, min(bound, math.log(p / (1 - p))))
