"""A user env that blows up: the example point env whose observations turn NaN after `nan_after`
steps, to check that a run reports `diverged` (tests/run/test_train_one.py)."""

from __future__ import annotations

from typing import Any

import torch

from automl.envs.base import StepResult
from tests.custom_env_factory import PointToOrigin


class NaNAfter(PointToOrigin):
    """PointToOrigin whose every observation is NaN from step `nan_after` on."""

    def __init__(self, *, nan_after: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nan_after = nan_after
        self.calls = 0

    def step(self, actions: torch.Tensor) -> StepResult:
        result = super().step(actions)
        self.calls += 1
        if self.calls >= self.nan_after:
            result.observations = torch.full_like(result.observations, float("nan"))
        return result


def make(num_envs: int, device: torch.device, seed: int, nan_after: int = 30,
         **params: Any) -> NaNAfter:
    """`env.factory=tests.nan_env_factory:make`, `+env.params.nan_after=K`."""
    return NaNAfter(num_envs=num_envs, device=device, seed=seed, nan_after=nan_after, **params)
