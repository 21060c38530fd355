"""A scripted environment whose episodes' outcomes do not depend on the policy: every episode
falls after `fall_steps` steps with probability `fall_prob`, otherwise succeeds after
`success_steps`. Its true success and fall rates are known, so the score and eval mode can be
checked against them. Used as `env.factory=tests.scripted_env:make`.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch

from automl.envs.base import FELL, LENGTH, RETURN, SUCCESS, WARMUP, StepResult


class Coin:
    """`num_envs` independent coin-flip episodes; actions are ignored."""

    reward_terms = ("alive",)
    episode_metrics = (SUCCESS, FELL, LENGTH, RETURN, WARMUP)
    """RETURN: the `alive` term pays 1 a step, so an episode's return is its length."""

    def __init__(self, *, num_envs: int, device: torch.device, seed: int, fall_prob: float = 0.3,
                 fall_steps: int = 5, success_steps: int = 40, spread_starts: bool = True) -> None:
        self.num_envs, self.device = num_envs, torch.device(device)
        self.fall_prob, self.fall_steps, self.success_steps = fall_prob, fall_steps, success_steps
        self.spread_starts = spread_starts
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._gen = torch.Generator(device=self.device).manual_seed(seed)
        self._falls = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self._steps = torch.zeros(num_envs, device=self.device)
        self._warmup = torch.zeros(num_envs, dtype=torch.bool, device=self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            self._gen.manual_seed(seed)
        every = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._new_episodes(every)
        if self.spread_starts:
            # The offset must not depend on the episode's fate, or which episodes count would.
            u = torch.rand(self.num_envs, generator=self._gen, device=self.device)
            self._steps = torch.minimum((u * self.success_steps).floor(), self._length() - 1)
            self._warmup = self._steps > 0
        return self._observe()

    def step(self, actions: torch.Tensor) -> StepResult:
        self._steps += 1
        done = self._steps >= self._length()
        fell, success = done & self._falls, done & ~self._falls
        episode = {SUCCESS: success.float(), FELL: fell.float(), LENGTH: self._steps.clone(),
                   RETURN: self._steps.clone(), WARMUP: self._warmup.float()}
        final = self._observe()
        self._new_episodes(done)
        return StepResult(observations=self._observe(), final_observations=final,
                          terms={"alive": torch.ones(self.num_envs, device=self.device)},
                          terminated=fell, truncated=success, episode=episode)

    def close(self) -> None:
        pass

    def _length(self) -> torch.Tensor:
        return torch.where(self._falls, float(self.fall_steps), float(self.success_steps))

    def _new_episodes(self, mask: torch.Tensor) -> None:
        u = torch.rand(self.num_envs, generator=self._gen, device=self.device)
        self._falls = torch.where(mask, u < self.fall_prob, self._falls)
        self._steps = torch.where(mask, 0.0, self._steps)
        self._warmup = self._warmup & ~mask

    def _observe(self) -> torch.Tensor:
        return (self._steps / self.success_steps).unsqueeze(1)


def make(num_envs: int, device: torch.device, seed: int, **params: Any) -> Coin:
    return Coin(num_envs=num_envs, device=device, seed=seed, **params)
