"""MuJoCo locomotion tasks with split reward terms: the terms rebuild gymnasium's reward, the task
metrics match the simulator, the presets hold gymnasium's defaults, bad scales are exit 2, and the
score does not move with the reward weights. Real MuJoCo throughout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch
import yaml
from gymnasium.vector import AutoresetMode
from train_harness import train_one, train_one_here

from automl import paths, tags
from automl.config import load_run_config
from automl.envs.base import FELL, FORWARD_DISTANCE, FORWARD_VELOCITY, LENGTH, RETURN, BatchedEnv
from automl.envs.gym_adapter import GymVectorEnv, sub_env_seeds
from automl.envs.mujoco_tasks import TASK_TERMS, constructor_defaults, split_for
from automl.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError
from automl.search.space import load_space
from automl.search.trials.tb_reader import read_scalars
from automl.typed import to_plain

CPU = torch.device("cpu")
CONF = paths.repo_root() / "conf"
TASKS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5",
         "ant": "Ant-v5", "humanoid": "Humanoid-v5"}
"""conf/env option -> gymnasium id."""
EPISODE_STEPS = 120
"""A short time limit, so that HalfCheetah (which never falls) finishes episodes in the test too."""


def test_every_split_task_has_its_presets() -> None:
    assert set(TASKS.values()) == set(TASK_TERMS)
    for option, gym_id in TASKS.items():
        cfg = load_run_config([f"env={option}"])
        assert cfg.env.gym_id == gym_id and cfg.env.name == option
        assert cfg.scoring.weights == {"return": 1.0}


def _reference_vec(gym_id: str, num_envs: int) -> gymnasium.vector.VectorEnv:
    """gymnasium's own task, default reward weights, stepped like the adapter steps it."""
    return gymnasium.make_vec(gym_id, num_envs=num_envs, vectorization_mode="sync",
                              vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                              max_episode_steps=EPISODE_STEPS)


def _paired_rollout(option: str, steps: int = 300) -> dict[str, Any]:
    """Same seed, same random actions through the adapter and through gymnasium's own task."""
    gym_id, num_envs = TASKS[option], 3
    env = GymVectorEnv(gym_id=gym_id, num_envs=num_envs, device=CPU, seed=0,
                       max_episode_steps=EPISODE_STEPS)
    reference = _reference_vec(gym_id, num_envs)
    weights = yaml.safe_load((CONF / "reward" / f"{option}.yaml").read_text())["scales"]
    env.reset(seed=0)
    _, info = reference.reset(seed=sub_env_seeds(0, num_envs))  # seeded as the adapter seeds
    start_x = np.asarray(info["x_position"], dtype=np.float64)
    gen = torch.Generator().manual_seed(1)
    out: dict[str, Any] = {"env": env, "weights": weights, "max_error": 0.0, "episodes": [],
                           "term_seen": dict.fromkeys(env.reward_terms, False)}
    own_return = np.zeros(num_envs)
    for _ in range(steps):
        actions = 2.0 * torch.randn(num_envs, *env.action_space.shape, generator=gen)
        result = env.step(actions)
        clipped = np.clip(actions.numpy(), env.action_space.low, env.action_space.high)
        _, reward, terminated, truncated, info = reference.step(clipped)
        weighted = sum(weights[name] * result.terms[name].double().numpy() for name in weights)
        out["max_error"] = max(out["max_error"], float(np.max(np.abs(weighted - reward))))
        for name, value in result.terms.items():
            out["term_seen"][name] |= bool(torch.any(value != 0))
        own_return += reward
        for i in np.flatnonzero(terminated | truncated):
            out["episodes"].append({
                "return": result.episode[RETURN][i].item(), "own_return": own_return[i],
                "fell": result.episode[FELL][i].item(), "terminated": bool(terminated[i]),
                "length": result.episode[LENGTH][i].item(),
                "distance": result.episode[FORWARD_DISTANCE][i].item(),
                "velocity": result.episode[FORWARD_VELOCITY][i].item(),
                "moved": info["final_info"]["x_position"][i] - start_x[i]})
            start_x[i] = info["x_position"][i]  # the reset position of its next episode
            own_return[i] = 0.0
    env.close()
    reference.close()
    return out


@pytest.mark.parametrize("option", list(TASKS))
def test_terms_under_default_weights_sum_to_gymnasiums_reward(option: str) -> None:
    run = _paired_rollout(option)
    env, weights = run["env"], run["weights"]
    assert isinstance(env, BatchedEnv)
    assert set(weights) == set(env.reward_terms) == {t.name for t in TASK_TERMS[TASKS[option]]}
    # The presets are gymnasium's own defaults (read from the constructor), signed.
    assert weights == pytest.approx(split_for(TASKS[option], {}).reference, rel=1e-12)
    assert all(run["term_seen"].values()), run["term_seen"]  # every term was exercised
    assert run["max_error"] < 2e-5  # float32 terms; rewards are O(1)-O(10)
    assert len(run["episodes"]) >= 3
    for e in run["episodes"]:
        assert e["return"] == pytest.approx(e["own_return"], rel=1e-5, abs=1e-3)
        assert e["fell"] == float(e["terminated"])
        assert e["velocity"] == pytest.approx(e["distance"] / (e["length"] * env._dt), rel=1e-5, abs=1e-6)


# Ant measures its torso's body position, which MuJoCo computes before the last physics substep, so
# it lags the root joint's position by one substep. Humanoid's velocity is its centre of mass's,
# not its root's, so it is not compared here.
@pytest.mark.parametrize("option, tolerance", [("hopper", 1e-5), ("walker2d", 1e-5),
                                               ("halfcheetah", 1e-5), ("ant", 5e-3)])
def test_forward_distance_is_how_far_the_body_moved(option: str, tolerance: float) -> None:
    run = _paired_rollout(option, steps=150)
    assert run["episodes"]
    for e in run["episodes"]:
        assert e["distance"] == pytest.approx(e["moved"], abs=tolerance)


def test_humanoid_contact_cap_lies_where_gymnasiums_does() -> None:
    split = split_for("Humanoid-v5", {})
    assert split is not None
    low, high = constructor_defaults("Humanoid-v5")["contact_cost_range"]
    weight = -split.reference["contact_cost"]
    assert split.constructor_params["contact_cost_range"] == (low / weight, high / weight)
    assert split.constructor_params["contact_cost_weight"] == 1.0


def test_a_term_weight_in_env_params_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        GymVectorEnv(gym_id="Hopper-v5", num_envs=1, device=CPU, seed=0, ctrl_cost_weight=0.01)
    assert info.value.key == "env.params.ctrl_cost_weight"
    assert "reward.scales.ctrl_cost" in info.value.fix


def test_other_gymnasium_tasks_keep_their_one_term() -> None:
    assert split_for("Pendulum-v1", {}) is None
    assert split_for("Hopper-v4", {}) is None  # v4's info keys differ: only v5 is split


BAD_INPUT = [
    (["env=hopper", "+reward.scales.contact_cost=-1e-3"],
     ["`reward.scales.contact_cost`", "exposes no term `contact_cost`",
      "its terms: forward_reward, ctrl_cost, healthy_reward"]),
    (["env=halfcheetah", "reward=hopper"],
     ["`reward.scales.healthy_reward`", "its terms: forward_reward, ctrl_cost"]),
    (["env=hopper", "+env.params.forward_reward_weight=2.0"],
     ["`env.params.forward_reward_weight`", "reward.scales.forward_reward"]),
]


@pytest.mark.parametrize("args, says", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_scales_exit_2_naming_the_tasks_terms(args: list[str], says: list[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = train_one_here([*args, f"run_dir={tmp_path / 'run'}", "train.threads=1"],
                                    log_root=tmp_path / "log", monkeypatch=monkeypatch, capsys=capsys)
    assert code == EXIT_BAD_INPUT, out + err
    errors = [line for line in err.splitlines() if line.startswith("train_one: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for text in says:
        assert text in errors[0]
    assert not (tmp_path / "run").exists()


# 4 envs x 500 steps, rollouts 2000: no PPO update happens, so the policy acts the same whatever
# the reward weights; only the shaped reward (never scored) may differ between the two runs.
FROZEN = ["env=hopper", "env.num_envs=4", "train.frames=2000", "train.eval_frequency=500",
          "ppo.rollouts=2000", "train.threads=1"]


def _summary(tmp_path: Path, name: str, args: list[str]) -> tuple[dict[str, Any], Path]:
    root = tmp_path / name
    process = train_one([*args, f"run_dir={root}"], log_root=tmp_path / "log")
    assert process.returncode == EXIT_OK, process.stdout + process.stderr
    return json.loads((root / "summary.json").read_text()), root


def test_score_ignores_the_reward_weights_of_a_policy_that_acts_the_same(tmp_path: Path) -> None:
    default, root_a = _summary(tmp_path, "default", FROZEN)
    reweighed, root_b = _summary(tmp_path, "reweighed", [
        *FROZEN, "reward.scales.forward_reward=5.0", "reward.scales.ctrl_cost=-0.5",
        "reward.scales.healthy_reward=0.1"])
    assert default["metrics"]["episode_reward_mean"] != pytest.approx(
        reweighed["metrics"]["episode_reward_mean"], rel=1e-3)  # the weights did change the reward
    assert default["score"] == pytest.approx(reweighed["score"], rel=1e-6)
    for name in ("return", "forward_distance", "forward_velocity", "termination_rate"):
        assert default["metrics"][name] == pytest.approx(reweighed["metrics"][name], rel=1e-6)
    scores_a = [value for _, value in read_scalars(root_a / "tb")[tags.SCORE]]
    scores_b = [value for _, value in read_scalars(root_b / "tb")[tags.SCORE]]
    assert len(scores_a) >= 3 and scores_a == pytest.approx(scores_b, rel=1e-6)


@pytest.mark.slow
def test_a_tiny_hopper_training_run(tmp_path: Path) -> None:
    summary, root = _summary(tmp_path, "hopper", [
        "env=hopper", "env.num_envs=4", "train.frames=6144", "train.eval_frequency=2048",
        "ppo.rollouts=256", "ppo.mini_batches=8", "ppo.learning_epochs=2", "train.threads=1"])
    assert summary["status"] == "completed" and summary["frames"] >= 6144
    metrics = summary["metrics"]
    assert 0.0 <= metrics["termination_rate"] <= 1.0
    assert metrics["episode_length"] > 0 and np.isfinite(metrics["forward_velocity"])
    scalars = read_scalars(root / "tb")
    for tag in (tags.RETURN, tags.FORWARD_DISTANCE, tags.FORWARD_VELOCITY, tags.TERMINATION_RATE,
                *(tags.reward_term_tag(t) for t in ("forward_reward", "ctrl_cost", "healthy_reward"))):
        assert tag in scalars, sorted(scalars)
    # The score is the return (conf/scoring/locomotion.yaml) of the last point's recent episodes.
    returns = [value for _, value in scalars[tags.RETURN]]
    assert summary["score"] == pytest.approx(returns[-1], rel=1e-5)


MUJOCO_TEMPLATES = ["hopper", "walker2d", "halfcheetah", "ant", "humanoid", "hopper_ppo_only"]


@pytest.mark.parametrize("name", MUJOCO_TEMPLATES)
def test_template_priors_are_the_task_defaults(name: str) -> None:
    option = name.split("_")[0]
    cfg = load_run_config([f"env={option}"])
    space = load_space(paths.templates_dir() / f"{name}.yaml", reward_terms=list(cfg.reward.scales))
    priors = space.from_optuna(space.prior_params())
    plain = {"reward.scales": cfg.reward.scales, "ppo": to_plain(cfg.ppo), "network": to_plain(cfg.network)}
    for p in space.params:
        section, _, leaf = p.key.rpartition(".")
        assert priors[p.name] == pytest.approx(plain[section][leaf]), p.name
    searched = {p.name for p in space.params if p.section == "reward_weights"}
    # The joint spaces search every term of their task; the PPO-only baseline none.
    assert searched == (set() if name.endswith("ppo_only") else set(cfg.reward.scales))
    assert space.fixed["env.num_envs"] == cfg.env.num_envs
