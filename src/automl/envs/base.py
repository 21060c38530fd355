"""The batched environment interface that every environment of a run implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import gymnasium
import torch

# Names of per-episode task metrics an environment reports in `StepResult.episode`.
SUCCESS = "success"
"""1.0 where the finished episode reached its goal, else 0.0."""
FELL = "terminated"
"""1.0 where the finished episode ended by failure (the body fell, the pole dropped)."""
LENGTH = "length"
"""Steps the finished episode lasted."""
FINAL_DISTANCE = "final_distance"
"""Distance to the goal when the episode ended."""
RETURN = "return"
"""Episodic return under the task's own reference reward (gymnasium's reward; the default weights)."""
FORWARD_DISTANCE = "forward_distance"
"""Distance the body travelled forward (+x) during the finished episode, in metres."""
FORWARD_VELOCITY = "forward_velocity"
"""Mean forward (+x) velocity of the body over the finished episode, in metres per second."""
TERMINATED_BY = "terminated/"
"""Prefix of per-cause termination flags: `terminated/<term>` is 1.0 where the finished episode was
ended by the task's termination term <term> (Isaac Lab tasks report one per termination term)."""
WARMUP = "warmup"
"""1.0 where the finished episode was cut short by the spread of episode starts at reset (an env
that starts its first episode part-way through the time limit): eval mode, which needs whole
episodes, does not count it."""


@dataclass
class StepResult:
    """One batched step. Finished environments are already reset: `observations` are their first."""

    observations: torch.Tensor
    """(num_envs, obs_dim) float32: what the policy sees next (a new episode's first where one ended)."""
    final_observations: torch.Tensor
    """(num_envs, obs_dim) float32: the observation each environment reached on this step, before
    any reset; equal to `observations` where the episode did not end. PPO bootstraps a time-limit
    end from it, so it must be the finished episode's own last observation."""
    terms: dict[str, torch.Tensor]
    """Raw reward terms, each (num_envs,) float32; the run weights them with `reward.scales`."""
    terminated: torch.Tensor
    """(num_envs,) bool: the episode ended by the task's own rule (goal reached or failure)."""
    truncated: torch.Tensor
    """(num_envs,) bool: the episode hit its time limit."""
    episode: dict[str, torch.Tensor]
    """Per-episode task metrics, each (num_envs,) float32, meaningful where the episode just ended."""


@runtime_checkable
class BatchedEnv(Protocol):
    """What the trainer needs from an environment: tensors in, tensors out, all envs at once."""

    # Read-only members (properties), so that an env may declare narrower types than these.
    @property
    def observation_space(self) -> gymnasium.spaces.Box:
        """Space of one environment's observation."""
        ...

    @property
    def action_space(self) -> gymnasium.spaces.Space:
        """Space of one environment's action (Box or Discrete)."""
        ...

    @property
    def num_envs(self) -> int:
        """Environments stepped at once."""
        ...

    @property
    def device(self) -> torch.device:
        """Where observations, rewards and actions live."""
        ...

    @property
    def reward_terms(self) -> tuple[str, ...]:
        """Names of the raw reward terms `step` returns, in a fixed order."""
        ...

    # Optional: `default_scales: dict[str, float]`, the env's own weight of each term, used for a
    # term that reward.scales does not name (Isaac Lab tasks: the reward manager's weights).

    @property
    def episode_metrics(self) -> tuple[str, ...]:
        """Names (SUCCESS, FELL, LENGTH, FINAL_DISTANCE, RETURN, FORWARD_DISTANCE, FORWARD_VELOCITY,
        WARMUP above) of the per-episode metrics `step` reports in `StepResult.episode`; the run's
        scoring may weight only these."""
        ...

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every environment; returns (num_envs, obs_dim) observations."""
        ...

    def step(self, actions: torch.Tensor) -> StepResult:
        """Apply (num_envs, act_dim) actions (or (num_envs, 1) indices for Discrete)."""
        ...

    def close(self) -> None:
        """Release the environments."""
        ...
