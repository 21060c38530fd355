"""An example of your own environment for automl: a point on a line that must be driven to 0.

This file is what a user writes to train on their own simulator. automl imports the factory named
by `env.factory` (`package.module:function`), calls it as
`make(num_envs=..., device=..., seed=..., **env.params)` and trains on what it returns: any object
with the attributes and methods of `BatchedEnv` in src/automl/envs/base.py. Try it from the
repository root (the folder holding `tests/` must be on sys.path; it is when you run from there):

    python train_one.py env=custom env.factory=tests.custom_env_factory:make \\
        +reward.scales.progress=1.0 +reward.scales.effort=-0.01 +env.params.max_steps=40

`reward.scales` must name the terms the env exposes (`reward_terms` below); a search may tune
those weights, so the run is scored on task metrics (success, falls, length, return under
REFERENCE_SCALES) that no weight can inflate.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch

from automl.envs.base import FELL, FINAL_DISTANCE, LENGTH, RETURN, SUCCESS, StepResult

REFERENCE_SCALES = {"progress": 1.0, "effort": -0.01}
"""The task's own reward weights: the episodic RETURN is measured under these, not the run's."""


class PointToOrigin:
    """`num_envs` points on a line, each pushed by its action; an episode succeeds near 0.

    Observation: (position, fraction of the time limit left). Action: a push in [-1, 1].
    Ends with success within `tolerance` of 0, with a fall beyond `track` from 0, or truncated
    after `max_steps`.
    """

    reward_terms = ("progress", "effort")
    episode_metrics = (SUCCESS, FELL, LENGTH, RETURN, FINAL_DISTANCE)

    def __init__(
        self,
        *,
        num_envs: int,
        device: torch.device,
        seed: int,
        max_steps: int = 50,
        speed: float = 0.1,
        tolerance: float = 0.05,
        start: float = 1.0,
        track: float = 2.0,
    ) -> None:
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.max_steps = max_steps
        self.speed = speed
        self.tolerance = tolerance
        self.start = start
        self.track = track
        self.observation_space = gymnasium.spaces.Box(
            low=np.array([-track - speed, 0.0], dtype=np.float32),
            high=np.array([track + speed, 1.0], dtype=np.float32), dtype=np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        # One generator for the whole batch, on the env's device, so runs repeat seed for seed.
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(seed)
        self._position = torch.zeros(num_envs, device=self.device)
        self._steps = torch.zeros(num_envs, device=self.device)
        self._return = torch.zeros(num_envs, device=self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            self._gen.manual_seed(seed)
        self._reset_where(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self._observe()

    def step(self, actions: torch.Tensor) -> StepResult:
        # The policy is Gaussian and samples outside [-1, 1]; the motor saturates.
        push = actions.reshape(self.num_envs).to(self.device).clamp(-1.0, 1.0)
        before = self._position.abs()
        self._position = self._position + self.speed * push
        distance = self._position.abs()
        self._steps += 1

        terms = {"progress": before - distance, "effort": push.square()}
        self._return += sum(REFERENCE_SCALES[name] * value for name, value in terms.items())

        success = distance < self.tolerance
        fell = distance > self.track
        terminated = success | fell
        truncated = (self._steps >= self.max_steps) & ~terminated
        done = terminated | truncated
        episode = {
            SUCCESS: success.float(),
            FELL: fell.float(),
            LENGTH: self._steps.clone(),
            RETURN: self._return.clone(),
            FINAL_DISTANCE: distance,
        }
        final_observations = self._observe()
        # Finished points start over now: the trainer expects their first observation back.
        self._reset_where(done)
        return StepResult(observations=self._observe(), final_observations=final_observations,
                          terms=terms, terminated=terminated, truncated=truncated, episode=episode)

    def close(self) -> None:
        pass  # nothing to release: plain tensors

    def _reset_where(self, mask: torch.Tensor) -> None:
        # Start between half and all of `start` away from 0, on either side, never at the goal.
        u = torch.rand(2, self.num_envs, generator=self._gen, device=self.device)
        side = torch.where(u[0] < 0.5, -1.0, 1.0)
        magnitude = self.start * (0.5 + 0.5 * u[1])
        self._position = torch.where(mask, side * magnitude, self._position)
        self._steps = torch.where(mask, 0.0, self._steps)
        self._return = torch.where(mask, 0.0, self._return)

    def _observe(self) -> torch.Tensor:
        time_left = 1.0 - self._steps / self.max_steps
        return torch.stack([self._position, time_left], dim=1)


def make(num_envs: int, device: torch.device, seed: int, **params: Any) -> PointToOrigin:
    """The factory automl calls: `env.factory=tests.custom_env_factory:make`."""
    return PointToOrigin(num_envs=num_envs, device=device, seed=seed, **params)
