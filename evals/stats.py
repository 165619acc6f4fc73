"""The binomial standard error every held-out accuracy is printed with."""

from __future__ import annotations

import math


def binomial_se(p: float, n: int) -> float:
    """sqrt(p (1 - p) / n) of an accuracy p over n items (0 for n = 0)."""
    return math.sqrt(p * (1 - p) / n) if n else 0.0
