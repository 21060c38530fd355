"""examples/isaaclab_factory.py with Isaac Lab's modules replaced by stand-ins that follow its API
(ManagerBasedRLEnv.step's order: terminations, rewards as weight x term x dt, resets, observations;
RewardManager.get_term_cfg/set_term_cfg; extras["log"] on resets): the only way to run it here.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

from automl import paths
from automl.envs.base import FELL, FINAL_DISTANCE, LENGTH, RETURN, BatchedEnv
from automl.envs.custom import make_custom_env

TASK = "Isaac-Stub-v0"
LIMIT = 20
"""Steps before a time-out."""
WEIGHTS = {"progress": 2.0, "effort": -0.1, "alive": 0.0}
"""The stub task's own reward weights (one of them 0, which Isaac Lab skips)."""
LOG_KEY = "Metrics/final_distance"


@dataclass
class TermCfg:
    func: Any
    weight: float
    params: dict[str, Any]


class RewardsCfg:
    def __init__(self) -> None:
        self.progress = TermCfg(lambda env: -env.x.abs(), WEIGHTS["progress"], {})
        self.effort = TermCfg(lambda env: env.action.square(), WEIGHTS["effort"], {})
        self.alive = TermCfg(lambda env: torch.ones_like(env.x), WEIGHTS["alive"], {})
        self.removed = None  # a term a derived cfg switched off


@dataclass
class EnvCfg:
    num_envs: int
    device: str
    seed: int | None = None

    def __post_init__(self) -> None:
        self.rewards = RewardsCfg()


class RewardManager:
    def __init__(self, cfg: RewardsCfg, env: StubEnv) -> None:
        self._env = env
        self._term_names = [n for n, t in vars(cfg).items() if t is not None]
        self._term_cfgs = [getattr(cfg, n) for n in self._term_names]

    def get_term_cfg(self, name: str) -> TermCfg:
        return self._term_cfgs[self._term_names.index(name)]

    def set_term_cfg(self, name: str, cfg: TermCfg) -> None:
        self._term_cfgs[self._term_names.index(name)] = cfg

    def compute(self, dt: float) -> torch.Tensor:
        reward = torch.zeros_like(self._env.x)
        for cfg in self._term_cfgs:
            if cfg.weight != 0.0:
                reward += cfg.func(self._env, **cfg.params) * cfg.weight * dt
        return reward


class StubEnv(gymnasium.Env):
    """A point per env pushed by its action; leaves [-1, 1]: terminated; LIMIT steps: time-out."""

    step_dt = 0.02

    def __init__(self, cfg: EnvCfg, render_mode: str | None = None) -> None:
        self.cfg, self.num_envs, self.device = cfg, cfg.num_envs, torch.device(cfg.device)
        self.single_observation_space = gymnasium.spaces.Dict(
            {"policy": gymnasium.spaces.Box(-np.inf, np.inf, (2,))})
        self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,))
        self.gen = torch.Generator().manual_seed(cfg.seed or 0)
        self.x = torch.zeros(self.num_envs)
        self.action = torch.zeros(self.num_envs)
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long)
        self.reward_manager = RewardManager(cfg.rewards, self)
        self.extras: dict[str, Any] = {}

    def _obs(self) -> dict[str, torch.Tensor]:
        return {"policy": torch.stack([self.x, self.episode_length_buf / LIMIT], dim=1)}

    def _reset_idx(self, ids: torch.Tensor) -> None:
        self.extras["log"] = {LOG_KEY: self.x[ids].abs().mean()}
        self.x[ids] = torch.rand(len(ids), generator=self.gen) - 0.5
        self.episode_length_buf[ids] = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[dict, dict]:
        if seed is not None:
            self.gen.manual_seed(seed)
        self._reset_idx(torch.arange(self.num_envs))
        return self._obs(), {}

    def step(self, action: torch.Tensor) -> tuple:
        self.action = action.reshape(-1)
        self.x = self.x + 0.3 * self.action
        self.episode_length_buf += 1
        terminated = self.x.abs() > 1.0
        time_outs = self.episode_length_buf >= LIMIT
        reward = self.reward_manager.compute(dt=self.step_dt)
        self.extras = {"log": {}}
        ids = (terminated | time_outs).nonzero().squeeze(-1)
        if len(ids):
            self._reset_idx(ids)
        return self._obs(), reward, terminated, time_outs, self.extras


@pytest.fixture
def isaaclab(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stand-ins for isaaclab.app, isaaclab_tasks and isaaclab_tasks.utils, and the stub task."""
    launched: list[dict[str, Any]] = []

    class AppLauncher:
        def __init__(self, **kwargs: Any) -> None:
            launched.append(kwargs)
            self.app = types.SimpleNamespace(close=lambda: None)

    modules = {"isaaclab": types.ModuleType("isaaclab"), "isaaclab.app": types.ModuleType("isaaclab.app"),
               "isaaclab_tasks": types.ModuleType("isaaclab_tasks"),
               "isaaclab_tasks.utils": types.ModuleType("isaaclab_tasks.utils")}
    modules["isaaclab.app"].AppLauncher = AppLauncher  # type: ignore[attr-defined]
    modules["isaaclab_tasks.utils"].parse_env_cfg = (  # type: ignore[attr-defined]
        lambda task, device, num_envs: EnvCfg(num_envs=num_envs, device=device))
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(paths.repo_root()))
    gymnasium.register(TASK, entry_point=StubEnv, disable_env_checker=True, order_enforce=False)
    yield
    gymnasium.registry.pop(TASK)
    sys.modules.pop("examples.isaaclab_factory", None)
    assert launched and launched[0]["headless"] is True  # Isaac Sim was started before the task


def build(num_envs: int = 8, seed: int = 3) -> BatchedEnv:
    return make_custom_env(factory="examples.isaaclab_factory:make", num_envs=num_envs,
                           device=torch.device("cpu"), seed=seed,
                           params={"task": TASK, "log_metrics": {LOG_KEY: FINAL_DISTANCE}})


def test_terms_are_the_reward_managers_with_weights_1_and_the_tasks_as_reference(isaaclab: None) -> None:
    env = build()
    assert isinstance(env, BatchedEnv)
    assert env.reward_terms == ("progress", "effort", "alive")
    assert env.reference == WEIGHTS  # type: ignore[attr-defined]
    assert env.episode_metrics == (RETURN, LENGTH, FELL, FINAL_DISTANCE)
    manager = env._base.reward_manager  # type: ignore[attr-defined]
    assert [manager.get_term_cfg(n).weight for n in env.reward_terms] == [1.0, 1.0, 1.0]


def test_reference_weighted_terms_rebuild_the_tasks_own_reward(isaaclab: None) -> None:
    num_envs, seed = 8, 3
    env = build(num_envs, seed)
    own = StubEnv(EnvCfg(num_envs=num_envs, device="cpu"))  # the task's own weights
    env.reset(seed=seed)
    own.reset(seed=seed)
    gen = torch.Generator().manual_seed(0)
    own_return, ends = torch.zeros(num_envs), {"terminated": 0, "time_out": 0}
    for _ in range(3 * LIMIT):
        actions = 2.0 * torch.rand(num_envs, 1, generator=gen) - 1.0
        result = env.step(actions)
        _, reward, terminated, time_outs, extras = own.step(actions)
        rebuilt = sum(WEIGHTS[n] * result.terms[n] for n in env.reward_terms)
        torch.testing.assert_close(rebuilt, reward)
        own_return += reward
        done = terminated | time_outs
        torch.testing.assert_close(result.episode[RETURN][done], own_return[done])
        assert torch.equal(result.episode[FELL][done].bool(), terminated[done])
        assert torch.equal(result.terminated, terminated)
        if done.any():
            torch.testing.assert_close(result.episode[FINAL_DISTANCE][done],
                                       extras["log"][LOG_KEY].expand(int(done.sum())))
        assert torch.all(result.episode[LENGTH][done] <= LIMIT)
        assert torch.equal(result.final_observations, result.observations)
        ends["terminated"] += int(terminated.sum())
        ends["time_out"] += int((time_outs & ~terminated).sum())
        own_return[done] = 0.0
    assert min(ends.values()) >= num_envs, ends  # both kinds of end, many times
