"""The run's score: a weighted sum of task metrics over the most recent finished episodes."""

from __future__ import annotations

import math
from collections.abc import Mapping

from automl.errors import ConfigError

_SOURCE = "conf/scoring or the command line"


def point_score(metrics: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted sum of task metrics at one evaluation point; NaN when a weighted metric is missing."""
    total = 0.0
    for name, weight in weights.items():
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            return math.nan
        total += weight * value
    return total


def check_reported(weights: Mapping[str, float], episode_metrics: tuple[str, ...], *,
                   env_name: str) -> None:
    """Every weighted metric is one the environment reports; checked before any training."""
    from automl.run.episodes import reported_metrics  # run side only: it imports torch

    reported = reported_metrics(episode_metrics)
    for name, weight in weights.items():
        if name not in reported:
            raise ConfigError(
                file=_SOURCE, key=f"scoring.weights.{name}", value=weight,
                rule=f"env `{env_name}` does not report `{name}`; it reports: {', '.join(reported)}",
                fix=f"weight only those (e.g. scoring=return for a gymnasium task), or drop "
                    f"scoring.weights.{name}")
