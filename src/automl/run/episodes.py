"""Task metrics of the most recent finished episodes of every environment.

A run's score at an evaluation point is computed from these, weighted by episodes: the last
`per_env` finished episodes of each environment. Each environment counts the same number of
episodes, so an environment whose episodes end early (falls) is not over-represented, and the
estimate rests on at least one episode of every environment at any number of environments. All
state stays on the run's device: adding a step costs no host sync.

Training counts the first, shortened episodes of spread starts (WARMUP) too: leaving them out
would leave, for the first time limit or two, only the episodes short enough to have ended (bench/
score_stability.py measured a score biased by +0.7 for a whole time limit that way, against -0.08
for at most a quarter of one with them counted). Eval mode, which needs whole episodes, skips them.
"""

from __future__ import annotations

import math

import torch

from automl.envs.base import (
    FELL,
    FINAL_DISTANCE,
    FORWARD_DISTANCE,
    FORWARD_VELOCITY,
    LENGTH,
    RETURN,
    SUCCESS,
    TERMINATED_BY,
    WARMUP,
)
from automl.tags import TERMINATION_CAUSE_PREFIX

EPISODE_METRICS: dict[str, str] = {
    SUCCESS: "success_rate", FELL: "termination_rate", LENGTH: "episode_length",
    FINAL_DISTANCE: "final_distance", RETURN: "return",
    FORWARD_DISTANCE: "forward_distance", FORWARD_VELOCITY: "forward_velocity",
}
"""Per-episode value reported by an env -> task metric name (mean over the counted episodes)."""
SHAPED_RETURN = "episode_reward_mean"
"""The shaped return under the run's own weights: logged and reported, never scored."""
EPISODES = "episodes"
"""How many finished episodes a set of metrics rests on."""


def episodes_per_env(min_episodes: int, num_envs: int) -> int:
    """Episodes kept per environment so that all environments together keep >= `min_episodes`."""
    return max(1, math.ceil(min_episodes / num_envs))


def metric_keys(episode_metrics: tuple[str, ...]) -> list[str]:
    """The per-episode values of `episode_metrics` that become task metrics, in a fixed order."""
    causes = [key for key in episode_metrics if key.startswith(TERMINATED_BY)]
    return [key for key in EPISODE_METRICS if key in episode_metrics] + causes


def metric_name(key: str) -> str:
    """Task metric name of a per-episode value: `terminated/<term>` -> `termination_rate/<term>`."""
    if key.startswith(TERMINATED_BY):
        return TERMINATION_CAUSE_PREFIX + key.removeprefix(TERMINATED_BY)
    return EPISODE_METRICS[key]


def reported_metrics(episode_metrics: tuple[str, ...]) -> list[str]:
    """Task metric names of the per-episode values an environment declares it reports."""
    return [metric_name(key) for key in metric_keys(episode_metrics)]


class RecentEpisodes:
    """The last `per_env` counted episodes of each environment, as a (per_env, num_envs, metrics)
    table filled on device; WARMUP episodes (shortened by the spread of starts) count only with
    `count_warmup`.

    With `first_only`, an environment keeps its first counted episode(s) instead of its latest:
    eval mode then counts every environment's first complete episode, whatever its length.
    """

    def __init__(self, *, num_envs: int, device: torch.device, episode_metrics: tuple[str, ...],
                 per_env: int = 1, first_only: bool = False, count_warmup: bool = True) -> None:
        self.num_envs, self.device, self.per_env, self.first_only = num_envs, device, per_env, first_only
        self.count_warmup = count_warmup
        self.keys = metric_keys(episode_metrics)
        self.names = [metric_name(key) for key in self.keys] + [SHAPED_RETURN]
        self.values = torch.zeros(per_env, num_envs, len(self.names), device=device)
        self.filled = torch.zeros(per_env, num_envs, dtype=torch.bool, device=device)
        self.slot = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.shaped = torch.zeros(num_envs, device=device)
        self._rows = torch.arange(num_envs, device=device)

    def add(self, reward: torch.Tensor, done: torch.Tensor, episode: dict[str, torch.Tensor]) -> None:
        """One step: `reward` (shaped, per env), `done` (episode ended), the env's episode metrics."""
        self.shaped += reward
        counted = done
        if WARMUP in episode and not self.count_warmup:
            counted = counted & (episode[WARMUP] == 0)
        if self.first_only:
            counted = counted & ~self.filled[-1]
        row = torch.stack([episode[key].float() for key in self.keys] + [self.shaped], dim=1)
        old = self.values[self.slot, self._rows]
        self.values[self.slot, self._rows] = torch.where(counted.unsqueeze(1), row, old)
        self.filled[self.slot, self._rows] |= counted
        self.slot = (self.slot + counted.long()) % self.per_env
        self.shaped = torch.where(done, 0.0, self.shaped)

    def complete(self) -> bool:
        """Every environment holds `per_env` episodes."""
        return bool(self.filled.all().item())

    def metrics(self) -> dict[str, float]:
        """Mean of each task metric (and the shaped return) over the episodes held, with their count
        under `episodes`; only the count when none has ended yet."""
        weight = self.filled.unsqueeze(2).float()
        count = float(weight.sum().item())
        if count == 0:
            return {EPISODES: 0.0}
        means = ((self.values * weight).sum((0, 1)) / count).tolist()
        return {**dict(zip(self.names, means, strict=True)), EPISODES: count}


class TermMeans:
    """Per-step mean of each raw reward term since the last evaluation point (logged, not scored)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        """Add one step's terms, each averaged over the environments."""
        for term, value in terms.items():
            total = value.mean()
            self.sums[term] = self.sums[term] + total if term in self.sums else total
        self.steps += 1

    def pop(self) -> dict[str, float]:
        """The means since the last call, and start over."""
        means = {t: float(v.item()) / max(self.steps, 1) for t, v in self.sums.items()}
        self.sums, self.steps = {}, 0
        return means
