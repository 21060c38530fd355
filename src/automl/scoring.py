"""The run's score: weighted task metrics at each evaluation point, averaged over a window."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def point_score(metrics: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted sum of task metrics at one evaluation point; NaN when a weighted metric is missing."""
    total = 0.0
    for name, weight in weights.items():
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            return math.nan
        total += weight * value
    return total


def windowed_score(points: Sequence[float], window: int) -> float:
    """Mean of the last `window` finite point scores; NaN when there is none yet."""
    finite = [p for p in points if math.isfinite(p)]
    recent = finite[-window:]
    return sum(recent) / len(recent) if recent else math.nan
