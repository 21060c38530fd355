"""Real Isaac Lab 3.0 tasks, kit-less on CPU (Newton, MuJoCo-Warp): Isaac-Cartpole is built with 16
environments, its reward terms rebuild Isaac Lab's own reward step by step, and a search of 2 trials, each
trained by train_one through the fork server, weighs its reward terms. Assets come from automl's offline folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from train_harness import REPO, train_one_here
from xdist_groups import WARP_KERNELS

from automl import cli, paths, tags
from automl.envs.base import FELL, LENGTH, RETURN, SUCCESS, TERMINATED_BY, WARMUP
from automl.envs.isaaclab_assets import ASSET_ROOT_ENV, BUNDLED, build_offline_root, check_assets
from automl.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError
from automl.search.trials.tb_reader import read_scalars

TASK = "Isaac-Cartpole"
CPU = torch.device("cpu")
NUM_ENVS = 16
STEPS = 60
"""Steps of the reward check: enough for the odd envs to leave the track (8 ends by 60) before every
episode still running is made to time out."""
CARTPOLE_WEIGHTS = {"alive": 1.0, "terminating": -2.0, "pole_pos": -1.0, "cart_vel": -0.01,
                    "pole_vel": -0.005, "success_rate": 0.0}
"""Isaac-Cartpole's RewardsCfg weights (isaaclab_tasks/core/cartpole/cartpole_manager_env_cfg.py)."""


@WARP_KERNELS
def test_cartpole_terms_rebuild_isaac_labs_reward_step_by_step() -> None:
    """Isaac Lab's own RewardManager, given back its own weights, computes the reward that env.step
    returns; on the same steps, automl's raw terms weighted by the defaults must equal it."""
    from automl.envs.isaaclab_task import make_isaaclab_env

    env = make_isaaclab_env(task=TASK, num_envs=NUM_ENVS, device=CPU, seed=3, params={})
    assert env.default_scales == CARTPOLE_WEIGHTS
    assert env.reward_terms == tuple(CARTPOLE_WEIGHTS)
    assert env.observation_space.shape == (4,) and env.num_envs == NUM_ENVS
    assert {RETURN, LENGTH, FELL, WARMUP, SUCCESS, TERMINATED_BY + "cart_out_of_bounds"} <= set(
        env.episode_metrics)
    manager = env._base.reward_manager
    stock: list[torch.Tensor] = []
    original_step = env._env.step

    def step_keeping_reward(action: torch.Tensor) -> Any:
        # automl puts its MARK back after each step: Isaac Lab's own weights again, for this step
        # (a live weight equal to the starting one: a factor of 1 on each term)
        for name, weight in CARTPOLE_WEIGHTS.items():
            if weight != 0.0:  # Isaac Lab skips a zero-weight term; success_rate's value is 0 anyway
                manager.get_term_cfg(name).weight = weight
        result = original_step(action)
        stock.append(result[1].clone())  # Isaac Lab's reward, its own weights
        return result

    env._env.step = step_keeping_reward
    env.reset(seed=3)
    generator = torch.Generator().manual_seed(7)
    push = (torch.arange(NUM_ENVS) % 2).float().unsqueeze(1)  # odd envs drive the cart out of bounds
    returns, ends = torch.zeros(NUM_ENVS), {"terminated": 0, "truncated": 0}
    for t in range(STEPS):
        if t == STEPS - 20:  # every episode still running times out 2 steps later (5 s is 300 steps)
            env._base.episode_length_buf[:] = int(env._base.max_episode_length) - 2
        step = env.step(torch.rand(NUM_ENVS, 1, generator=generator) * 2 - 1 + push)
        shaped = sum(CARTPOLE_WEIGHTS[k] * v for k, v in step.terms.items())
        torch.testing.assert_close(shaped, stock[-1], msg=lambda m, t=t: f"step {t}: {m}")
        returns += shaped
        done = step.terminated | step.truncated
        # RETURN is the episode's sum under Isaac Lab's own weights
        torch.testing.assert_close(step.episode[RETURN][done], returns[done])
        returns[done] = 0.0
        ends["terminated"] += int(step.terminated.sum())
        ends["truncated"] += int(step.truncated.sum())
    env.close()
    assert ends["terminated"] >= 4 and ends["truncated"] >= 4, ends  # resets were compared too


def test_reach_frankas_curricula_are_found_and_one_on_a_zero_weight_is_refused() -> None:
    """Isaac-Reach-Franka raises its action_rate and joint_vel weights after 4,500 steps
    (modify_reward_weight); Isaac-Lift-Franka changes the same two by address (modify_term_cfg).
    Configurations only: no asset is read."""
    from automl.envs.isaaclab_cfg import check_curricula, curriculum_targets, load_task_cfg, unit_weights

    reach = load_task_cfg("Isaac-Reach-Franka", num_envs=1, device=CPU, seed=0)
    assert curriculum_targets(reach) == {"action_rate": "action_rate", "joint_vel": "joint_vel"}
    lift = load_task_cfg("Isaac-Lift-Franka", num_envs=1, device=CPU, seed=0)
    assert curriculum_targets(lift) == {"action_rate": "action_rate", "joint_vel": "joint_vel"}
    reference = unit_weights(reach.rewards)
    assert reference["action_rate"] == -1.0e-4 and reference["joint_vel"] == -1.0e-4
    check_curricula(reach, reference, "Isaac-Reach-Franka")  # both start non-zero: followed
    with pytest.raises(ConfigError) as err:
        check_curricula(reach, {**reference, "joint_vel": 0.0}, "Isaac-Reach-Franka")
    assert err.value.key == "env.task" and "`joint_vel`" in err.value.rule


@WARP_KERNELS
def test_a_curriculum_changes_the_weight_under_automls_scale() -> None:
    """Isaac-Cartpole given Reach-Franka's kind of curriculum: after 3 steps `pole_pos` goes from -1
    to -3 and `cart_vel` from -0.01 to 0. automl's term is the raw value x dt x live / starting
    weight, so its default scale gives Isaac Lab's live weight; a term at live weight 0 is still
    computed; and a term the manager leaves out of a step is an error, not its last value."""
    from isaaclab.envs.mdp.curriculums import modify_reward_weight
    from isaaclab.managers import CurriculumTermCfg
    from isaaclab.utils import configclass

    from automl.envs.isaaclab_assets import use_asset_root
    from automl.envs.isaaclab_cfg import load_task_cfg
    from automl.envs.isaaclab_task import build_isaaclab_env

    use_asset_root()
    cfg = load_task_cfg(TASK, num_envs=NUM_ENVS, device=CPU, seed=2)

    @configclass
    class Curricula:
        pole_pos = CurriculumTermCfg(func=modify_reward_weight,
                                     params={"term_name": "pole_pos", "weight": -3.0, "num_steps": 3})
        cart_vel = CurriculumTermCfg(func=modify_reward_weight,
                                     params={"term_name": "cart_vel", "weight": 0.0, "num_steps": 3})

    assert cfg.curriculum is None
    cfg.curriculum = Curricula()
    env = build_isaaclab_env(TASK, cfg)
    raw: dict[str, torch.Tensor] = {}
    for name, recorder in env._recorders.items():
        inner = recorder.func
        recorder.func = lambda e, inner=inner, name=name, **p: raw.setdefault(name, inner(e, **p))
    env.reset(seed=2)
    # Every env times out at step 5; the curriculum runs at resets, and fires from step 4 on.
    env._base.episode_length_buf[:] = int(env._base.max_episode_length) - 5
    dt, followed = env._step_dt, []
    for t in range(8):
        raw.clear()
        live = dict(env.live)  # the weights this step's reward is computed under
        step = env.step(torch.zeros(NUM_ENVS, 1))
        for name in ("pole_pos", "cart_vel", "alive"):
            want = raw[name].float() * dt * live[name] / env.default_scales[name]
            torch.testing.assert_close(step.terms[name], want, msg=lambda m, t=t, n=name: f"{n} {t}: {m}")
        followed.append(live["pole_pos"] == -3.0 and live["cart_vel"] == 0.0)
    assert followed == [False] * 5 + [True] * 3  # from the step after the resets of step 5
    assert env.live["alive"] == 1.0 and env.default_scales["pole_pos"] == -1.0
    env._base.reward_manager.get_term_cfg("pole_pos").weight = 0.0  # the manager skips it now
    with pytest.raises(RuntimeError, match="pole_pos was not computed this step"):
        env.step(torch.zeros(NUM_ENVS, 1))
    env.close()


@WARP_KERNELS
def test_time_limit_ends_carry_their_own_final_observation() -> None:
    from automl.envs.isaaclab_task import make_isaaclab_env

    env = make_isaaclab_env(task=TASK, num_envs=NUM_ENVS, device=CPU, seed=1, params={})
    env.reset(seed=1)
    env._base.episode_length_buf[:] = int(env._base.max_episode_length) - 2  # all time out soon
    seen = False
    for _ in range(3):
        step = env.step(torch.zeros(NUM_ENVS, 1))
        done = step.terminated | step.truncated
        if step.truncated.any():
            seen = True
            # the reset observation is the new episode's; the final one is the old episode's last
            assert not torch.allclose(step.final_observations[done], step.observations[done])
            assert bool(step.episode[WARMUP][done].eq(1.0).all())  # first episodes were shortened
        keep = ~done
        torch.testing.assert_close(step.final_observations[keep], step.observations[keep])
    env.close()
    assert seen


@pytest.mark.slow
@WARP_KERNELS  # its trials build the task too
def test_a_search_of_two_trials_over_cartpole_reward_weights(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "search_space_id": "isaaclab_test", "fixed": {"seed": 42, "num_envs": NUM_ENVS},
        "ppo_params": {},
        "reward_weights": {"pole_pos": {"type": "uniform", "low": -3.0, "high": -0.5, "prior": -1.0},
                           "terminating": {"type": "uniform", "low": -5.0, "high": 0.0, "prior": -2.0}}}))
    env = {**os.environ, paths.LOG_ROOT_ENV: str(tmp_path / "log")}
    # tests/orchestrator.py: automl.py's command line and code, its reports the tables only.
    process = subprocess.run(
        [sys.executable, str(REPO / "tests" / "orchestrator.py"), "--mode", "search", "--space",
         str(space), "--hp-trials", "2",
         "--confirm-seeds", "1", "--workers", "2", "--budget-hours", "0.2", "--study-name", "il",
         "--quiet", "env=isaaclab", "train.frames=1600", "train.eval_frequency=800"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert process.returncode == EXIT_OK, process.stdout[-3000:] + process.stderr[-3000:]
    study = paths.StudyPaths(tmp_path / "log" / "automl" / "il")
    rows = study.trial_final_csv.read_text().splitlines()
    assert len(rows) == 3 and all(",completed," in row for row in rows[1:]), rows
    configs = [json.loads(study.trial_config(n).read_text()) for n in (0, 1)]
    weights = [c["params"]["pole_pos"] for c in configs]
    assert weights[0] == -1.0 and -3.0 <= weights[1] <= -0.5  # the prior first, then a draw
    for n, config in enumerate(configs):
        # Each trial trained the task's own weights with the two it drew (what it trained on).
        run = study.trial_run(n)
        trained = yaml.safe_load(run.config.read_text())["reward"]["scales"]
        assert trained == {**CARTPOLE_WEIGHTS, "pole_pos": weights[n],
                           "terminating": config["params"]["terminating"]}
        summary = json.loads(run.summary.read_text())
        assert summary["status"] == "completed" and summary["frames"] >= 1600
        assert summary["packages"]["isaaclab"] == "3.0.0"
        for name in ("return", "episode_length", "termination_rate", "success_rate",
                     "termination_rate/cart_out_of_bounds"):
            assert name in summary["metrics"], summary["metrics"]
        assert summary["score"] == pytest.approx(summary["metrics"]["return"])
        series = read_scalars(run.tb)
        assert tags.SCORE in series and tags.reward_term_tag("pole_pos") in series
        assert tags.task_metric_tag("termination_rate/cart_out_of_bounds") in series


def _search_refused(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> str:
    """The orchestrator in this process (it reads the task's terms in a subprocess, as it does
    when started by hand): exit 2 and nothing written; its message."""
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    assert cli.main(["--mode", "search", *argv]) == EXIT_BAD_INPUT, capsys.readouterr()
    assert not (tmp_path / "log" / "automl").exists() or not any((tmp_path / "log" / "automl").iterdir())
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_space_naming_a_term_the_task_lacks_is_refused_before_any_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"search_space_id": "bad", "fixed": {}, "ppo_params": {},
                                     "reward_weights": {"pole_angle": {"type": "uniform", "low": -2,
                                                                       "high": -1}}}))
    message = _search_refused(["--space", str(space), "env=isaaclab"], tmp_path, monkeypatch, capsys)
    assert "pole_angle" in message and "pole_pos" in message  # names the task's terms


def test_a_scale_for_a_term_the_task_lacks_is_refused_before_any_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    message = _search_refused(["--space", str(paths.templates_dir() / "isaaclab_cartpole.yaml"),
                               "env=isaaclab", "+reward.scales.pole_angle=-1"], tmp_path, monkeypatch, capsys)
    assert "reward.scales.pole_angle" in message and "pole_pos" in message


def test_an_unknown_task_is_exit_2_naming_registered_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = train_one_here(["env=isaaclab", "env.task=Isaac-Cartpol", f"run_dir={tmp_path / 'run'}"],
                                  log_root=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code == EXIT_BAD_INPUT, err
    assert "Isaac-Cartpol" in err and "Isaac-Cartpole" in err
    assert not (tmp_path / "run").exists()


def test_a_missing_asset_is_exit_2_at_once_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "assets"
    empty.mkdir()
    start = time.monotonic()
    process = subprocess.run([sys.executable, "train_one.py", "env=isaaclab", f"run_dir={tmp_path / 'run'}"],
                             cwd=REPO, env={**os.environ, ASSET_ROOT_ENV: str(empty),
                                            paths.LOG_ROOT_ENV: str(tmp_path)},
                             capture_output=True, text=True, timeout=300, check=False)
    assert process.returncode == EXIT_BAD_INPUT, process.stderr[-2000:]
    assert time.monotonic() - start < 40  # not Isaac Lab's 48 s of download retries
    message = process.stderr.strip().splitlines()[-1]
    assert f"{empty}/Isaac/" in message and "spawn.usd_path" in message  # the file and its config key
    assert ASSET_ROOT_ENV in message and not (tmp_path / "run").exists()


def test_the_offline_root_holds_the_bundled_assets(tmp_path: Path) -> None:
    root = build_offline_root(tmp_path / "root")
    for asset in BUNDLED:
        assert (root / asset.path).is_file()
    cartpole = (root / BUNDLED[0].path).read_text()
    assert 'defaultPrim = "cartpole"' in cartpole and 'def Xform "cartpole"' in cartpole
    (root / BUNDLED[1].path).write_text("kept")  # an existing file is the user's: left as it is
    build_offline_root(root)
    assert (root / BUNDLED[1].path).read_text() == "kept"


def test_check_assets_names_the_config_key_of_a_missing_file(tmp_path: Path) -> None:
    present = tmp_path / "robot.usd"
    present.write_text("#usda 1.0\n")

    class Spawn:
        __dataclass_fields__ = {"usd_path": None}

        def __init__(self, usd_path: str) -> None:
            self.usd_path = usd_path

    cfg = {"scene": {"robot": {"spawn": Spawn(str(present))}, "ground": {"spawn": Spawn(str(tmp_path / "no.usd"))},
                     "remote": {"spawn": Spawn("https://mirror.example/robot.usd")}}}
    with pytest.raises(ConfigError) as err:
        check_assets(cfg, task="T", root=str(tmp_path))
    assert err.value.key == "env_cfg.scene.ground.spawn.usd_path"
    check_assets({"scene": {"robot": {"spawn": Spawn(str(present))}}}, task="T", root=str(tmp_path))
    # A file on a server while the asset root is automl's offline folder: exit 2 now, not after
    # Isaac Lab's download retries (Isaac-Fourbar-Pole-Swingup failed after ~40 s). Where the user
    # set the root (a mirror, a server), a remote file is Isaac Lab's to fetch.
    remote = {"scene": {"remote": {"spawn": Spawn("https://mirror.example/robot.usd")}}}
    with pytest.raises(ConfigError, match="that asset is remote") as err:
        check_assets(remote, task="T", root=str(paths.isaaclab_asset_folder()))
    assert err.value.key == "env_cfg.scene.remote.spawn.usd_path"
    assert ASSET_ROOT_ENV in err.value.fix
    check_assets(remote, task="T", root="https://mirror.example")
    check_assets(remote, task="T", root=str(tmp_path))


def test_an_unknown_task_gets_the_closest_registered_ids() -> None:
    from automl.envs.isaaclab_cfg import unknown_task

    known = ["Isaac-Velocity-Flat-AnymalD", "Isaac-Velocity-Rough-AnymalD", "Isaac-Cartpole",
             "IsaacContrib-Velocity-Flat-AnymalC", "Isaac-Ant", "Isaac-Ant-Direct"]
    err = unknown_task("Isaac-Velocity-Flat-Anymal-C", known)
    close = err.fix.removeprefix("the closest registered: ").split(", ")
    assert set(close[:2]) == {"Isaac-Velocity-Flat-AnymalD", "IsaacContrib-Velocity-Flat-AnymalC"}
    assert "Isaac-Cartpole" not in close and "6 ids start with Isaac- or IsaacContrib-" in err.rule
    assert "e.g." in unknown_task("Humanoid-v5", known).fix  # nothing close: a few ids


def test_unknown_env_params_are_exit_2() -> None:
    from automl.envs.isaaclab_task import make_isaaclab_env

    with pytest.raises(ConfigError) as err:
        make_isaaclab_env(task=TASK, num_envs=2, device=CPU, seed=0, params={"episode_length_s": 3})
    assert err.value.key == "env.params.episode_length_s"
