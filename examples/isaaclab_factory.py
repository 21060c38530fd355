"""An Isaac Lab manager-based task as an automl environment: its reward manager's terms become raw
reward terms (`reward.scales.<term>`), its episode statistics task metrics.

**It cannot run on a machine without Isaac Sim and an NVIDIA GPU**, so automl's own machines do
not run it; tests/test_isaaclab_example.py imports and steps it with the Isaac Lab modules
replaced by stand-ins, so the code stays complete and in step with automl's interface. Written for
Isaac Lab 2.x (packages `isaaclab` and `isaaclab_tasks`; `ManagerBasedRLEnv`, whose `step` returns
observations, reward, terminated, time_outs, extras; `RewardManager.get_term_cfg`/`set_term_cfg`).

On a GPU machine with Isaac Lab installed in this project's environment, from the repository root:

    uv run train_one.py env=custom env.factory=examples.isaaclab_factory:make env.device=cuda \\
        env.num_envs=4096 +env.params.task=Isaac-Velocity-Flat-Anymal-C-v0 \\
        +reward.scales.track_lin_vel_xy_exp=1.0 +reward.scales.track_ang_vel_z_exp=0.5 ...

with one `reward.scales.<term>` per term of the task's `RewardsCfg` (a missing one is weighted 0;
an unknown one is exit 2 naming the task's terms). How it works:
- every term's weight is set to 1 in the env cfg before the env is built, and each term function
  is wrapped (through `get_term_cfg`/`set_term_cfg`) to keep its last value; the raw term of a
  step is that value x the env's `step_dt`, as Isaac Lab's own reward counts it;
- RETURN is the episodic sum under the task's own weights (read from the cfg before they were set
  to 1), so a searched weighting cannot inflate the score; FELL is a termination other than the
  time limit, LENGTH the steps of the episode;
- `log_metrics` maps entries of `extras["log"]` (Isaac Lab's per-reset means over the environments
  that just ended, e.g. "Episode_Termination/base_contact") to automl metric names; each ending
  environment is given that mean, so the episode-weighted average over a window is exact.
Isaac Lab computes a step's observations after its resets, so the last observation of an ending
episode is not kept: `final_observations` are the observations (as in Isaac Lab's own RL wrappers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch

from automl.envs.base import FELL, LENGTH, RETURN, StepResult

_APP: Any = None
"""Isaac Sim's application, started once per process before any Isaac Lab module is imported."""


@dataclass
class TermRecorder:
    """Stands in for one reward term's function and keeps the value it last returned."""

    func: Callable[..., torch.Tensor]
    value: torch.Tensor | None = None

    def __call__(self, env: Any, **params: Any) -> torch.Tensor:
        self.value = self.func(env, **params)
        return self.value

    def reset(self, env_ids: Any = None) -> None:
        """Class-based terms (ManagerTermBase) keep state the manager resets at episode ends."""
        reset = getattr(self.func, "reset", None)
        if callable(reset):
            reset(env_ids=env_ids)


def unit_weights(rewards_cfg: Any) -> dict[str, float]:
    """Set every reward term's weight to 1 in the cfg; returns the task's own weights by term."""
    reference = {}
    for name, term in vars(rewards_cfg).items():
        if term is None or not hasattr(term, "weight"):
            continue  # a term switched off in a derived cfg, or a non-term attribute
        reference[name] = float(term.weight)
        term.weight = 1.0
    return reference


class IsaacLabEnv:
    """A manager-based Isaac Lab env behind automl's BatchedEnv interface (see the module doc)."""

    def __init__(self, env: Any, reference: dict[str, float],
                 log_metrics: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._base = env.unwrapped
        self.num_envs = int(self._base.num_envs)
        self.device = torch.device(self._base.device)
        self.reference = dict(reference)
        self.reward_terms = tuple(reference)
        self.log_metrics = dict(log_metrics or {})
        self.episode_metrics = (RETURN, LENGTH, FELL, *self.log_metrics.values())
        policy = self._base.single_observation_space["policy"]
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, policy.shape, np.float32)
        self.action_space = self._base.single_action_space
        self._step_dt = float(self._base.step_dt)
        self._recorders = self._wrap_terms()
        self._return = torch.zeros(self.num_envs, device=self.device)
        self._length = torch.zeros(self.num_envs, device=self.device)

    def _wrap_terms(self) -> dict[str, TermRecorder]:
        manager = self._base.reward_manager
        recorders = {}
        for name in self.reward_terms:
            cfg = manager.get_term_cfg(name)
            if cfg.weight != 1.0:
                raise RuntimeError(f"reward term {name} has weight {cfg.weight}: build the env from "
                                   "a cfg passed through unit_weights()")
            recorders[name] = TermRecorder(cfg.func)
            cfg.func = recorders[name]
            manager.set_term_cfg(name, cfg)
        return recorders

    def reset(self, seed: int | None = None) -> torch.Tensor:
        observations, _ = self._env.reset(seed=seed)
        self._return.zero_()
        self._length.zero_()
        return observations["policy"].float()

    def step(self, actions: torch.Tensor) -> StepResult:
        observations, _, terminated, time_outs, extras = self._env.step(actions.to(self.device))
        terms = {name: self._raw(name) for name in self.reward_terms}
        self._return += sum(self.reference[name] * value for name, value in terms.items())
        self._length += 1
        terminated, time_outs = terminated.bool(), time_outs.bool()
        done = terminated | time_outs
        episode = {RETURN: torch.where(done, self._return, 0.0),
                   LENGTH: torch.where(done, self._length, 0.0), FELL: terminated.float()}
        episode |= self._logged(extras.get("log", {}), done)
        self._return = torch.where(done, 0.0, self._return)
        self._length = torch.where(done, 0.0, self._length)
        policy = observations["policy"].float()
        return StepResult(observations=policy, final_observations=policy, terms=terms,
                          terminated=terminated, truncated=time_outs & ~terminated, episode=episode)

    def _raw(self, name: str) -> torch.Tensor:
        value = self._recorders[name].value
        if value is None:
            raise RuntimeError(f"reward term {name} was not computed this step")
        return value.float() * self._step_dt

    def _logged(self, log: Mapping[str, Any], done: torch.Tensor) -> dict[str, torch.Tensor]:
        """extras["log"] means (present on steps where some environment ended) per ending env."""
        out = {}
        for key, metric in self.log_metrics.items():
            value = float(log[key]) if key in log else 0.0
            out[metric] = torch.where(done, value, 0.0)
        return out

    def close(self) -> None:
        self._env.close()


def make(num_envs: int, device: torch.device, seed: int, *, task: str,
         log_metrics: Mapping[str, str] | None = None, headless: bool = True) -> IsaacLabEnv:
    """The factory automl calls (`env.factory=examples.isaaclab_factory:make`)."""
    global _APP
    if _APP is None:
        from isaaclab.app import AppLauncher  # starts Isaac Sim: before any other isaaclab import

        _APP = AppLauncher(headless=headless, device=str(device)).app
    import isaaclab_tasks  # noqa: F401  (registers the Isaac-* gymnasium ids)
    from isaaclab_tasks.utils import parse_env_cfg

    env_cfg = parse_env_cfg(task, device=str(device), num_envs=num_envs)
    env_cfg.seed = seed
    reference = unit_weights(env_cfg.rewards)
    env = gymnasium.make(task, cfg=env_cfg)
    return IsaacLabEnv(env, reference, log_metrics)
