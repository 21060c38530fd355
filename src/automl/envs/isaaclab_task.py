"""A registered Isaac Lab 3.0 task (`env=isaaclab env.task=Isaac-...`) as a BatchedEnv, kit-less.

- Physics: on `cpu`, Newton with the MuJoCo-Warp solver (the task's `newton_mjwarp` preset); on CUDA,
  the task's default or the preset named by `env.params.physics`. `env.num_envs`, `env.device` and
  the seed are automl's; the rest of the task's config is Isaac Lab's own.
- Reward: a manager-based task is built with every reward term's weight set to 1, and each term
  function is wrapped (through the manager's `get_term_cfg`/`set_term_cfg`) to keep the value it
  returned. A raw term is that value x `step_dt`, as Isaac Lab counts it, so under Isaac Lab's own
  weights (`default_scales`) the shaped reward is Isaac Lab's reward. A direct task has one term,
  `reward`, its own reward.
- Task metrics: RETURN is the episodic reward under Isaac Lab's own weights, whatever the run's
  weights; LENGTH the steps of the episode; FELL a termination other than the time limit, and
  `terminated/<term>` the termination term that ended it; SUCCESS, where the task logs
  `Metrics/success_rate` in `extras["log"]` (a mean over the environments that just reset, given to
  each of them, so the episode-weighted mean over a window is exact).
- Time-limit ends bootstrap from the episode's own last observation (`extras["final_obs"]`, which
  Isaac Lab computes before its same-step reset when `compute_final_obs` is on).
- Episode starts are spread over the time limit at the first reset, as Isaac Lab's RL scripts do
  (random `episode_length_buf`); those first, shortened episodes are flagged WARMUP.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch

from automl.envs.base import FELL, LENGTH, RETURN, SUCCESS, TERMINATED_BY, WARMUP, StepResult
from automl.errors import ConfigError

CPU_PHYSICS = "newton_mjwarp"
"""The physics preset of a task on CPU: Newton with MuJoCo-Warp, the one Isaac Lab backend that runs
without a GPU."""
SUCCESS_LOG = "Metrics/success_rate"
"""Isaac Lab's per-reset success mean in `extras["log"]`."""
DIRECT_TERM = "reward"
"""The one raw term of a direct-workflow task: its own reward."""
_SOURCE = "conf/env/isaaclab.yaml or the command line"


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


def unit_weights(rewards_cfg: Any) -> dict[str, float]:
    """Set every reward term's weight to 1 in the cfg; returns Isaac Lab's own weights by term."""
    reference = {}
    for name in rewards_cfg.__dataclass_fields__:
        term = getattr(rewards_cfg, name, None)
        if term is None or not hasattr(term, "weight"):
            continue  # a term switched off in a derived cfg
        reference[name] = float(term.weight)
        term.weight = 1.0
    return reference


TASK_PREFIXES = ("Isaac-", "IsaacContrib-")
"""The gymnasium ids Isaac Lab's task packages register."""


def unknown_task(task: str, known: list[str]) -> ConfigError:
    """The error for a task id Isaac Lab does not register: the closest of the `known` ids (case
    and separators ignored), else a few of them."""
    def plain(name: str) -> str:
        return name.lower().replace("-", "").replace("_", "")

    by_plain = {plain(k): k for k in sorted(known)}
    close = [by_plain[c] for c in difflib.get_close_matches(plain(task), by_plain, n=4, cutoff=0.6)]
    return ConfigError(
        file=_SOURCE, key="env.task", value=task,
        rule=f"Isaac Lab registers no such task ({len(known)} ids start with "
             f"{' or '.join(TASK_PREFIXES)})",
        fix=(f"the closest registered: {', '.join(close)}" if close else
             f"use a registered id, e.g. {', '.join(sorted(known)[:4])}"))


def load_task_cfg(task: str, *, num_envs: int, device: torch.device, seed: int,
                  physics: str | None) -> Any:
    """The task's registered env config with automl's size, device, seed and physics preset."""
    import isaaclab_tasks  # noqa: F401  (registers the Isaac-* gymnasium ids)
    from isaaclab_tasks.utils import load_cfg_from_registry
    from isaaclab_tasks.utils.hydra import resolve_presets

    if task not in gymnasium.registry:
        raise unknown_task(task, [k for k in gymnasium.registry if str(k).startswith(TASK_PREFIXES)])
    cfg = load_cfg_from_registry(task, "env_cfg_entry_point")
    preset = physics or (CPU_PHYSICS if device.type == "cpu" else None)
    cfg = resolve_presets(cfg, selected=(preset,) if preset else ())
    cfg.sim.device = str(device)
    cfg.scene.num_envs = num_envs
    cfg.seed = seed
    cfg.compute_final_obs = True
    return cfg


class IsaacLabEnv:
    """An Isaac Lab task behind automl's BatchedEnv interface (see the module doc)."""

    def __init__(self, env: Any, reference: dict[str, float] | None) -> None:
        self._env = env
        self._base = env.unwrapped
        self.num_envs = int(self._base.num_envs)
        self.device = torch.device(self._base.device)
        self.manager_based = reference is not None
        self.default_scales = dict(reference) if reference is not None else {DIRECT_TERM: 1.0}
        self.reward_terms = tuple(self.default_scales)
        self._recorders = self._wrap_terms() if self.manager_based else {}
        policy = self._base.single_observation_space["policy"]
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, policy.shape, np.float32)
        self.action_space = self._base.single_action_space
        self._step_dt = float(self._base.step_dt)
        self._causes = self._termination_terms()
        self._return = torch.zeros(self.num_envs, device=self.device)
        self._length = torch.zeros(self.num_envs, device=self.device)
        self._first = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._env.reset()
        self.reports_success = SUCCESS_LOG in self._base.extras.get("log", {})
        self.episode_metrics = (RETURN, LENGTH, FELL, *(TERMINATED_BY + c for c in self._causes),
                                WARMUP, *((SUCCESS,) if self.reports_success else ()))

    def _wrap_terms(self) -> dict[str, TermRecorder]:
        manager = self._base.reward_manager
        recorders = {}
        for name in self.reward_terms:
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
        return observations["policy"].float()

    def step(self, actions: torch.Tensor) -> StepResult:
        """One step of every environment; finished ones are already reset by Isaac Lab."""
        observations, reward, terminated, time_outs, extras = self._env.step(actions.to(self.device))
        terms = self._terms(reward)
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
        if not self.manager_based:
            return {DIRECT_TERM: reward.float()}
        terms = {}
        for name, recorder in self._recorders.items():
            if recorder.value is None:
                raise RuntimeError(f"reward term {name} was not computed this step")
            value = torch.as_tensor(recorder.value, device=self.device).float()
            terms[name] = value.expand(self.num_envs) * self._step_dt
        return terms

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
                      params: dict[str, Any]) -> IsaacLabEnv:
    """Build `task` with local assets, its reward terms at weight 1 (manager-based tasks)."""
    unknown = sorted(set(params) - {"physics"})
    if unknown:
        raise ConfigError(file=_SOURCE, key=f"env.params.{unknown[0]}", value=params[unknown[0]],
                          rule="an Isaac Lab task takes only env.params.physics (a physics preset "
                               "such as newton_mjwarp or physx); the task's config is Isaac Lab's own",
                          fix=f"remove env.params.{unknown[0]}")
    from automl.envs.isaaclab_assets import check_assets, use_asset_root

    root = use_asset_root()  # before Isaac Lab reads its asset root, at import
    cfg = load_task_cfg(task, num_envs=num_envs, device=device, seed=seed, physics=params.get("physics"))
    check_assets(cfg, task=task, root=root)
    rewards = getattr(cfg, "rewards", None)
    reference = unit_weights(rewards) if rewards is not None else None
    env = gymnasium.make(task, cfg=cfg)
    return IsaacLabEnv(env, reference)


def task_reward_weights(task: str) -> dict[str, float]:
    """Isaac Lab's own weight of each reward term of `task` (a direct task: {"reward": 1.0}), read
    from its registered config without building it."""
    from automl.envs.isaaclab_assets import use_asset_root

    use_asset_root()
    cfg = load_task_cfg(task, num_envs=1, device=torch.device("cpu"), seed=0, physics=None)
    rewards = getattr(cfg, "rewards", None)
    return unit_weights(rewards) if rewards is not None else {DIRECT_TERM: 1.0}


def main(argv: list[str] | None = None) -> int:
    """`python -m automl.envs.isaaclab_task TASK`: the task's reward weights as JSON on stdout, for
    the orchestrator, which never imports Isaac Lab (or torch) itself; exit 2 for an unknown task."""
    import contextlib
    import io
    import json
    import sys

    from automl.errors import EXIT_BAD_INPUT

    (task,) = argv if argv is not None else sys.argv[1:]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Isaac Lab's own start-up lines
            weights = task_reward_weights(task)
    except ConfigError as err:  # its parts, for the orchestrator to raise the same error
        print(json.dumps({"file": err.file, "key": err.key, "value": err.value, "rule": err.rule,
                          "fix": err.fix}), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(weights))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
