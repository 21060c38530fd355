"""A registered Isaac Lab 3.0 task (`env=isaaclab env.task=Isaac-...`) as a BatchedEnv, kit-less.

- Physics: on `cpu`, Newton with the MuJoCo-Warp solver (the task's `newton_mjwarp` preset); on CUDA,
  the task's default or the preset named by `env.params.physics`. `env.num_envs`, `env.device` and
  the seed are automl's; the rest of the task's config is Isaac Lab's own.
- Reward: a manager-based task is built with every reward term's weight set to MARK (about 1), and
  each term function is wrapped (through the manager's `get_term_cfg`/`set_term_cfg`) to keep the
  value it returned, read once per step (a term left out of a step is an error). A raw term is that
  value x `step_dt` x (the term's live weight / its own starting weight), so under Isaac Lab's own
  weights (`default_scales`) the shaped reward is Isaac Lab's reward, and a curriculum that changes
  a weight (Isaac-Reach-Franka's `modify_reward_weight`) changes it under any automl scale, which
  multiplies it. A direct task's reward fields (`rew_scale_*`, ...) are terms, with `reward` the part
  no field weighs, where its reward is affine in them (isaaclab_direct.py); else `reward` is its one
  term, its whole reward.
- Task metrics: RETURN is the episodic reward under Isaac Lab's own live weights, whatever the
  run's weights; LENGTH the steps of the episode; FELL a termination other than the time limit, and
  `terminated/<term>` the termination term that ended it; SUCCESS, where the task logs
  `Metrics/success_rate` in `extras["log"]` (a mean over the environments that just reset, given to
  each of them, so the episode-weighted mean over a window is exact).
- Time-limit ends bootstrap from the episode's own last observation (`extras["final_obs"]`, which
  Isaac Lab computes before its same-step reset when `compute_final_obs` is on).
- Episode starts are spread over the time limit at the first reset, as Isaac Lab's RL scripts do
  (random `episode_length_buf`); those first, shortened episodes are flagged WARMUP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch

from automl.envs.base import FELL, LENGTH, RETURN, SUCCESS, TERMINATED_BY, WARMUP, StepResult
from automl.envs.isaaclab_cfg import (
    DIRECT_TERM,
    MARK,
    check_curricula,
    check_params,
    load_task_cfg,
    unit_weights,
)
from automl.envs.isaaclab_direct import wrap_direct

SUCCESS_LOG = "Metrics/success_rate"
"""Isaac Lab's per-reset success mean in `extras["log"]`."""


@dataclass
class TermRecorder:
    """Stands in for one reward term's function and keeps the value it last returned."""

    func: Callable[..., Any]
    value: torch.Tensor | None = None

    def __call__(self, env: Any, **params: Any) -> Any:
        self.value = self.func(env, **params)
        return self.value

    def reset(self, env_ids: Any = None) -> None:
        """Class-based terms (ManagerTermBase) keep state that the manager resets at episode ends."""
        reset = getattr(self.func, "reset", None)
        if callable(reset):
            reset(env_ids=env_ids)


class IsaacLabEnv:
    """An Isaac Lab task behind automl's BatchedEnv interface (see the module doc)."""

    def __init__(self, env: Any, reference: dict[str, float] | None, task: str = "") -> None:
        self._env = env
        self._base = env.unwrapped
        self.num_envs = int(self._base.num_envs)
        self.device = torch.device(self._base.device)
        self.manager_based = reference is not None
        self._recorders = self._wrap_terms(reference) if reference is not None else {}
        policy = self._base.single_observation_space["policy"]
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, policy.shape, np.float32)
        self.action_space = self._base.single_action_space
        self._step_dt = float(self._base.step_dt)
        self._causes = self._termination_terms()
        self._return = torch.zeros(self.num_envs, device=self.device)
        self._length = torch.zeros(self.num_envs, device=self.device)
        self._first = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._env.reset()
        self._direct = None if self.manager_based else wrap_direct(self._base, task)
        self.default_scales = dict(reference) if reference is not None else {DIRECT_TERM: 1.0}
        if self._direct is not None:  # its reward fields, at the task's own values
            self.default_scales.update(self._direct.fields)
        self.live = dict(self.default_scales)
        """Isaac Lab's weight of each term now: its own, or the last a curriculum wrote."""
        self.reward_terms = tuple(self.default_scales)
        self.reports_success = SUCCESS_LOG in self._base.extras.get("log", {})
        self.episode_metrics = (RETURN, LENGTH, FELL, *(TERMINATED_BY + c for c in self._causes),
                                WARMUP, *((SUCCESS,) if self.reports_success else ()))

    def _wrap_terms(self, reference: dict[str, float]) -> dict[str, TermRecorder]:
        manager = self._base.reward_manager
        recorders = {}
        for name in reference:
            cfg = manager.get_term_cfg(name)
            recorders[name] = TermRecorder(cfg.func)
            cfg.func = recorders[name]
            manager.set_term_cfg(name, cfg)
        return recorders

    def _termination_terms(self) -> tuple[str, ...]:
        manager = getattr(self._base, "termination_manager", None)
        if manager is None:
            return ()
        return tuple(n for n in manager.active_terms if not manager.get_term_cfg(n).time_out)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every environment, then spread the episode starts over the time limit."""
        observations, _ = self._env.reset(seed=seed)
        buf = self._base.episode_length_buf
        buf[:] = torch.randint_like(buf, high=int(self._base.max_episode_length))
        self._return.zero_()
        self._length.zero_()
        self._first.fill_(True)
        self._follow_curricula()
        return observations["policy"].float()

    def step(self, actions: torch.Tensor) -> StepResult:
        """One step of every environment; finished ones are already reset by Isaac Lab."""
        observations, reward, terminated, time_outs, extras = self._env.step(actions.to(self.device))
        terms = self._terms(reward)  # under the live weights the step's reward was computed with
        self._follow_curricula()  # a curriculum at this step's resets weighs the next step
        own = sum((self.default_scales[name] * value for name, value in terms.items()),
                  torch.zeros(self.num_envs, device=self.device))
        self._return += own
        self._length += 1
        terminated, time_outs = terminated.bool(), time_outs.bool()
        done = terminated | time_outs
        episode = {RETURN: torch.where(done, self._return, 0.0),
                   LENGTH: torch.where(done, self._length, 0.0),
                   FELL: (terminated & done).float(), WARMUP: (done & self._first).float()}
        episode |= self._causes_of(done)
        if self.reports_success:
            # A stale log (no reset this step) is masked out by `done`: no host sync per step.
            success = torch.as_tensor(extras.get("log", {}).get(SUCCESS_LOG, 0.0), device=self.device)
            episode[SUCCESS] = torch.where(done, success.float(), 0.0)
        self._return = torch.where(done, 0.0, self._return)
        self._length = torch.where(done, 0.0, self._length)
        self._first &= ~done
        policy = observations["policy"].float()
        final = policy
        if "final_obs" in extras:  # stale where nothing ended this step, and then masked out
            final = torch.where(done.unsqueeze(1), extras["final_obs"]["policy"].float(), policy)
        return StepResult(observations=policy, final_observations=final, terms=terms,
                          terminated=terminated, truncated=time_outs & ~terminated, episode=episode)

    def _terms(self, reward: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._direct is not None:
            return self._direct.take()
        if not self.manager_based:
            return {DIRECT_TERM: reward.float()}
        terms = {}
        for name, recorder in self._recorders.items():
            if recorder.value is None:
                raise RuntimeError(f"reward term {name} was not computed this step")
            value = torch.as_tensor(recorder.value, device=self.device).float()
            recorder.value = None  # never read twice: a term left out of a step is an error
            start = self.default_scales[name]
            follow = self.live[name] / start if start else 1.0
            terms[name] = value.expand(self.num_envs) * (self._step_dt * follow)
        return terms

    def _follow_curricula(self) -> None:
        """A weight other than MARK in the manager was written by a curriculum since the last look:
        it is Isaac Lab's live weight of that term from now on. MARK goes back, so the manager still
        computes the term when its live weight is 0."""
        if not self.manager_based:
            return
        manager = self._base.reward_manager
        for name in self._recorders:
            cfg = manager.get_term_cfg(name)
            if cfg.weight == MARK:
                continue
            weight = float(cfg.weight)
            if self.default_scales[name] == 0.0 and weight != 0.0:
                raise RuntimeError(f"a curriculum set reward term {name}'s weight to {weight}; it "
                                   "starts at 0, so no scale of it can follow")
            self.live[name] = weight
            cfg.weight = MARK

    def _causes_of(self, done: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self._causes:
            return {}
        manager = self._base.termination_manager
        return {TERMINATED_BY + cause: (done & manager.get_term(cause).bool()).float()
                for cause in self._causes}

    def close(self) -> None:
        """Close the Isaac Lab environment."""
        self._env.close()


def make_isaaclab_env(*, task: str, num_envs: int, device: torch.device, seed: int,
                      params: dict[str, Any], overrides: dict[str, Any] | None = None) -> IsaacLabEnv:
    """Build `task` with local assets under the physics and presets of `params` and the settings of
    `overrides` (env.cfg), its reward terms at MARK (manager-based tasks)."""
    from automl.envs.isaaclab_assets import check_assets, use_asset_root

    check_params(params)  # bad input: nothing imported or built yet
    root = use_asset_root()  # before Isaac Lab reads its asset root, at import
    cfg = load_task_cfg(task, num_envs=num_envs, device=device, seed=seed, params=params,
                        overrides=overrides)
    check_assets(cfg, task=task, root=root)
    return build_isaaclab_env(task, cfg)


def build_isaaclab_env(task: str, cfg: Any) -> IsaacLabEnv:
    """The task built from its loaded (and possibly edited) config, reward terms at MARK."""
    rewards = getattr(cfg, "rewards", None)
    reference = unit_weights(rewards) if rewards is not None else None
    if reference is not None:
        check_curricula(cfg, reference, task)
    env = gymnasium.make(task, cfg=cfg)
    return IsaacLabEnv(env, reference, task)

