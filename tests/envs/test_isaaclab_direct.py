"""A direct task's reward fields are reward terms: on Isaac-Cartpole-Direct (real, 16 envs) the terms
under the task's own weights rebuild Isaac Lab's reward step by step; the rules for tasks whose
reward cannot be taken apart are checked on stand-in envs."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from xdist_groups import WARP_KERNELS

from automl.envs.isaaclab_direct import DirectTerms, changed_by_rewards, reward_fields

CARTPOLE_DIRECT = {"reward": 1.0, "rew_scale_alive": 1.0, "rew_scale_terminated": -2.0,
                   "rew_scale_pole_pos": -1.0, "rew_scale_cart_vel": -0.01, "rew_scale_pole_vel": -0.005}
"""Isaac-Cartpole-Direct's terms: the part no field weighs, then its config's rew_scale_* fields."""


@WARP_KERNELS
def test_cartpole_direct_fields_rebuild_isaac_labs_reward_step_by_step() -> None:
    from automl.envs.isaaclab_cfg import task_reward_weights
    from automl.envs.isaaclab_task import make_isaaclab_env

    assert task_reward_weights("Isaac-Cartpole-Direct") == CARTPOLE_DIRECT  # the orchestrator's view
    env = make_isaaclab_env(task="Isaac-Cartpole-Direct", num_envs=16, device=torch.device("cpu"),
                            seed=4, params={})
    assert env.default_scales == CARTPOLE_DIRECT and env.reward_terms == tuple(CARTPOLE_DIRECT)
    stock: list[torch.Tensor] = []
    original_step = env._env.step

    def step_keeping_reward(action: torch.Tensor) -> Any:
        result = original_step(action)
        stock.append(result[1].clone())  # Isaac Lab's own reward
        return result

    env._env.step = step_keeping_reward
    env.reset(seed=4)
    generator = torch.Generator().manual_seed(5)
    push = (torch.arange(16) % 2).float().unsqueeze(1) * 3  # odd envs leave the track: terminations
    terminated = 0
    for t in range(60):
        step = env.step(torch.rand(16, 1, generator=generator) * 2 - 1 + push)
        shaped = sum(CARTPOLE_DIRECT[k] * v for k, v in step.terms.items())
        torch.testing.assert_close(shaped, stock[-1], msg=lambda m, t=t: f"step {t}: {m}")
        assert float(step.terms["reward"].abs().max()) < 1e-6  # every part of it is weighted
        terminated += int(step.terminated.sum())
    assert terminated > 0 and float(step.terms["rew_scale_pole_pos"].abs().max()) > 0
    env.close()


class StandIn:
    """The parts of a direct env DirectTerms uses: cfg fields, tensors, `_get_rewards`."""

    def __init__(self, reward: Any) -> None:
        self.cfg = type("Cfg", (), {"__dataclass_fields__": {"rew_alive": 0, "death_cost": 0, "scale": 0}})()
        self.cfg.rew_alive, self.cfg.death_cost, self.cfg.scale = 2.0, -5.0, 3.0
        self.alive = torch.tensor([1.0, 0.0, 1.0])
        self.sums = {"alive": torch.zeros(3)}
        self._reward = reward

    def _get_rewards(self) -> torch.Tensor:
        return self._reward(self)


def test_reward_fields_are_the_numeric_fields_named_as_weights() -> None:
    assert reward_fields(StandIn(lambda e: e.alive).cfg) == {"rew_alive": 2.0, "death_cost": -5.0}


def test_an_affine_reward_is_taken_apart_and_a_product_of_weights_is_an_error() -> None:
    def affine(e: StandIn) -> torch.Tensor:
        return torch.where(e.alive > 0, e.cfg.rew_alive * e.alive + 0.5, e.cfg.death_cost * torch.ones(3))

    env = StandIn(affine)
    terms = DirectTerms(env, reward_fields(env.cfg))
    torch.testing.assert_close(terms(), affine(env))
    parts = terms.take()
    torch.testing.assert_close(parts["reward"], torch.tensor([0.5, 0.0, 0.5]))
    torch.testing.assert_close(parts["death_cost"], torch.tensor([0.0, 1.0, 0.0]))
    with pytest.raises(RuntimeError, match="not computed this step"):
        terms.take()
    product = StandIn(lambda e: e.cfg.rew_alive * e.cfg.death_cost * e.alive)
    with pytest.raises(RuntimeError, match="not affine"):
        DirectTerms(product, reward_fields(product.cfg))()


def test_a_reward_method_that_changes_the_envs_tensors_is_found() -> None:
    def accumulating(e: StandIn) -> torch.Tensor:
        e.sums["alive"] += e.alive
        return e.alive

    assert changed_by_rewards(StandIn(accumulating)) == ["sums[alive]"]
    assert changed_by_rewards(StandIn(lambda e: e.alive * e.cfg.rew_alive)) == []
