"""The trainer keys Isaac Lab's agent configurations use, on any task (here Pendulum, continuous):
a shared policy-value trunk, skrl's KL-adaptive learning rate, the rewards shaper's scale and the
log-std bounds. Each is checked on a real agent after real updates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import pytest
import torch

from automl.config import load_run_config
from automl.errors import ConfigError
from automl.paths import RunPaths
from automl.run.models import build_models
from automl.run.train import build_agent, collect_step, open_run, open_window
from automl.typed import to_plain

ENVS, ROLLOUTS, EPOCHS = 8, 16, 3
BASE = ["env=pendulum", f"env.num_envs={ENVS}", f"ppo.rollouts={ROLLOUTS}", "ppo.mini_batches=2",
        f"ppo.learning_epochs={EPOCHS}", "train.threads=1", "train.quiet=true"]


def trained(tmp_path: Path, overrides: list[str], updates: int = 1) -> tuple[Any, list[torch.Tensor]]:
    """An agent after `updates` PPO updates on Pendulum, and the shaped reward of each step."""
    cfg = load_run_config([*BASE, *overrides])
    run = RunPaths(tmp_path / "run")
    env, weights, log, _ = open_run(cfg, run)
    rewards: list[torch.Tensor] = []
    step_env = env.step

    def recording_step(actions: torch.Tensor) -> Any:
        """The env's step, keeping the reward it returned."""
        result = step_env(actions)
        rewards.append(sum(weights[t] * result.terms[t] for t in weights))
        return result

    env.step = recording_step  # type: ignore[method-assign]
    steps = ROLLOUTS * updates
    agent = build_agent(cfg, env, run, steps)
    window, finite = open_window(cfg, env), torch.ones((), dtype=torch.bool)
    observations = env.reset(seed=0)
    for step in range(steps):
        observations = collect_step(agent, env, weights, observations, step, steps, window, finite)
    env.close()
    log.close()
    return agent, rewards


def test_a_shared_trunk_is_one_model_trained_once_per_parameter(tmp_path: Path) -> None:
    agent, _ = trained(tmp_path, ["network.shared=true"])
    assert agent.policy is agent.value
    optimised = [p for group in agent.optimizer.param_groups for p in group["params"]]
    assert len(optimised) == len(list(agent.policy.parameters())) == len({id(p) for p in optimised})
    steps = {float(s["step"]) for s in agent.optimizer.state_dict()["state"].values()}
    assert steps == {EPOCHS * 2}  # every parameter, the value head's included, took each step


def test_a_value_call_after_the_policy_call_is_the_value_of_those_observations() -> None:
    """The trunk output the value call reuses is the one of the very observations it is given."""
    cfg = load_run_config([*BASE, "network.shared=true"])
    space = gymnasium.spaces.Box(-1.0, 1.0, (3,))
    model = build_models(cfg.network, space, gymnasium.spaces.Box(-2.0, 2.0, (1,)),
                         torch.device("cpu"))["value"]
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    model.act({"observations": a}, role="policy")
    reused, _ = model.act({"observations": a}, role="value")
    model.act({"observations": a}, role="policy")
    other, _ = model.act({"observations": b}, role="value")
    assert torch.allclose(reused, model.value_head(model.net(a)))
    assert torch.allclose(other, model.value_head(model.net(b)))
    assert not torch.allclose(reused, other)


def test_a_shared_trunk_needs_continuous_actions() -> None:
    cfg = load_run_config(["env=cartpole", "network.shared=true"])
    with pytest.raises(ConfigError) as err:
        build_models(cfg.network, gymnasium.spaces.Box(-1.0, 1.0, (4,)),
                     gymnasium.spaces.Discrete(2), torch.device("cpu"))
    assert err.value.key == "network.shared"


def test_kl_adaptive_lowers_the_rate_each_epoch_above_twice_its_threshold(tmp_path: Path) -> None:
    # A threshold no update stays under: skrl's schedule divides the rate by 1.5 per epoch.
    agent, _ = trained(tmp_path, ["ppo.learning_rate_scheduler=KLAdaptiveLR",
                                  "ppo.learning_rate_kl_threshold=1e-12", "ppo.learning_rate=1e-3"])
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 1.5 ** EPOCHS)
    fixed, _ = trained(tmp_path / "fixed", ["ppo.learning_rate=1e-3"])
    assert fixed.optimizer.param_groups[0]["lr"] == 1e-3


def test_ppo_learns_from_the_reward_times_the_shaper_scale(tmp_path: Path) -> None:
    agent, rewards = trained(tmp_path, ["ppo.rewards_shaper_scale=0.25"])
    stored = agent.memory.get_tensor_by_name("rewards")  # (rollouts, envs, 1), before bootstrap
    truncated = agent.memory.get_tensor_by_name("truncated")
    assert not bool(truncated.any())  # Pendulum's episodes last 200 steps: no bootstrap added
    assert torch.allclose(stored.squeeze(-1), 0.25 * torch.stack(rewards))


def test_log_std_starts_and_stays_within_its_bounds(tmp_path: Path) -> None:
    bounds = ["network.initial_log_std=-1.0", "network.min_log_std=-1.0", "network.max_log_std=-0.5"]
    cfg = load_run_config([*BASE, *bounds])
    fresh = build_models(cfg.network, gymnasium.spaces.Box(-1.0, 1.0, (3,)),
                         gymnasium.spaces.Box(-2.0, 2.0, (1,)), torch.device("cpu"))["policy"]
    assert fresh.log_std.detach().tolist() == [-1.0]
    agent, _ = trained(tmp_path, bounds)
    _, outputs = agent.policy.act({"observations": torch.zeros(2, 3)}, role="policy")
    assert torch.all(outputs["log_std"] >= -1.0) and torch.all(outputs["log_std"] <= -0.5)
    with pytest.raises(ConfigError) as err:
        load_run_config([*BASE, "network.initial_log_std=2.0"])
    assert err.value.key == "network.initial_log_std"


@pytest.mark.parametrize(("resumed_rate", "expected"), [(1e-3, 1e-3 / 1.5 ** EPOCHS), (5e-4, 5e-4)],
                         ids=["same rate: the schedule goes on", "new rate: it restarts"])
def test_a_resumed_run_keeps_the_rate_its_schedule_reached_unless_the_rate_changed(
        tmp_path: Path, resumed_rate: float, expected: float) -> None:
    from dataclasses import replace

    from automl.run import state as training_state

    kl = ["ppo.learning_rate_scheduler=KLAdaptiveLR", "ppo.learning_rate_kl_threshold=1e-12",
          "ppo.learning_rate=1e-3"]
    agent, _ = trained(tmp_path / "a", kl)
    cfg = load_run_config([*BASE, *kl])
    saved = training_state.TrainingState(
        frames=ROLLOUTS * ENVS, updates=1, dropped_frames=0, shape={},
        policy=agent.policy.state_dict(), value=agent.value.state_dict(),
        optimizer=agent.optimizer.state_dict(), observation_preprocessor=None,
        value_preprocessor=None, segments=[{"ppo": to_plain(cfg.ppo)}])
    fresh, _ = trained(tmp_path / "b", kl, updates=0)
    training_state.load_into(fresh, saved, ppo=replace(cfg.ppo, learning_rate=resumed_rate))
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


# ------------------------------------------------------------------------- the critic's refit
def test_a_changed_reward_is_each_weight_or_the_discount_that_differs() -> None:
    from automl.run.refit import changed

    cfg = load_run_config([*BASE, "ppo.discount_factor=0.9"])
    last = {"ppo": {"discount_factor": 0.9}, "reward": {"scales": {"a": 1.0, "b": -2.0}}}
    assert changed([last], cfg, {"a": 1.0, "b": -2.0}) == []
    assert changed([last], cfg, {"a": 1.0, "b": -3.0}) == ["reward.scales.b"]
    assert changed([last], cfg, {"a": 1.0}) == ["reward.scales.b"]  # a weight gone is a change
    other = load_run_config([*BASE, "ppo.discount_factor=0.99"])
    assert changed([last], other, {"a": 1.0, "b": -2.0}) == ["ppo.discount_factor"]
    assert changed([], cfg, {"a": 1.0}) == []


def test_a_value_refit_moves_the_critic_alone_then_ppo_goes_on(tmp_path: Path) -> None:
    from automl.run.refit import ValueRefit

    cfg = load_run_config([*BASE, "ppo.normalize_values=true", "ppo.value_clip=0.2",
                           "ppo.entropy_loss_scale=0.01", "ppo.learning_rate_scheduler=KLAdaptiveLR",
                           "ppo.learning_rate_kl_threshold=1e-9"])
    run = RunPaths(tmp_path / "run")
    env, weights, log, _ = open_run(cfg, run)
    steps = ROLLOUTS * 4
    agent = build_agent(cfg, env, run, steps)
    window, finite = open_window(cfg, env), torch.ones((), dtype=torch.bool)
    observations = env.reset(seed=0)

    def advance(first: int, count: int, fit: ValueRefit | None = None) -> None:
        nonlocal observations
        for step in range(first, first + count):
            observations = collect_step(agent, env, weights, observations, step, steps, window, finite)
            if fit is not None:
                fit.step()

    def snapshot(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
        return [p.detach().clone() for p in params]

    advance(0, ROLLOUTS)  # one PPO update: the normaliser has a history, the rate moved
    scaler = agent.checkpoint_modules["value_preprocessor"]
    assert float(scaler.current_count) > 1
    value_ids = {id(p) for p in agent.value.parameters()}
    policy_only = [p for p in agent.policy.parameters() if id(p) not in value_ids]
    policy, value = snapshot(policy_only), snapshot(list(agent.value.parameters()))
    rate = agent.optimizer.param_groups[0]["lr"]
    fit = ValueRefit(agent, updates=2, rollouts=ROLLOUTS)
    assert float(scaler.current_count) == 1 and float(scaler.running_mean) == 0  # reset
    advance(ROLLOUTS, 2 * ROLLOUTS, fit)
    assert not fit.active
    assert all(torch.equal(a, b) for a, b in zip(policy, policy_only, strict=True))  # policy still
    assert not all(torch.equal(a, b) for a, b in zip(value, agent.value.parameters(), strict=True))
    assert agent.optimizer.param_groups[0]["lr"] == rate  # no KL step while fitting the critic
    assert float(scaler.current_count) > 1  # the new returns' statistics
    assert agent.cfg.value_clip == 0.2 and agent.cfg.entropy_loss_scale == 0.01
    assert agent.scheduler is not None and all(p.requires_grad for p in policy_only)
    advance(3 * ROLLOUTS, ROLLOUTS)  # PPO again: the policy moves, the rate steps
    assert not all(torch.equal(a, b) for a, b in zip(policy, policy_only, strict=True))
    assert agent.optimizer.param_groups[0]["lr"] != rate
    env.close()
    log.close()
