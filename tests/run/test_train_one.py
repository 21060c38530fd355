"""train_one end to end: tiny real runs on CartPole and the navigation task, their outputs, eval mode,
repeatability, bad input (exit 2, one message), divergence and SIGTERM.

The real runs are shared between tests (module-scoped fixtures) to keep the file's runtime modest.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from train_harness import REPO, train_one, train_one_here

from automl import paths, reasons, tags
from automl.config import load_run_config
from automl.envs.navigation import TERMS, NavigationEnv
from automl.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK
from automl.run.episodes import EPISODE_METRICS
from automl.schema import run_config_from_plain
from automl.search.trials.tb_reader import Series, read_scalars

SUMMARY_KEYS = {"status", "score", "frames", "wall_s", "seed", "git_sha", "packages", "metrics"}
SKRL_TAGS = ("Loss / Policy loss", "Loss / Value loss", "Policy / Standard deviation")
"""Some of the tags skrl's PPO writes itself, at our evaluation points."""

# One CPU thread, few mini-batches: tiny runs that still go through every part of the real loop.
TINY = ["train.threads=1", "ppo.mini_batches=4"]
CARTPOLE = ["env=cartpole", "train.frames=3000", "train.eval_frequency=1000", *TINY]
# Episodes of at most 48 steps: every 32-step window between evaluation points sees some end.
NAVIGATION = ["env=navigation", "env.num_envs=32", "env.device=cpu", "+env.params.max_steps=48",
              "train.frames=4096", "train.eval_frequency=1024", *TINY]
NAVIGATION_EVAL_POINTS = [1024, 2048, 3072, 4096]
CUSTOM = ["env=custom", "+reward.scales.progress=1.0", "+reward.scales.effort=-0.01",
          "env.num_envs=16", "env.device=cpu", *TINY]


@dataclass
class Run:
    root: Path
    args: list[str]
    process: subprocess.CompletedProcess[str]

    @property
    def files(self) -> paths.RunPaths:
        return paths.RunPaths(self.root)

    def summary(self) -> dict[str, Any]:
        return json.loads(self.files.summary.read_text())

    def scalars(self) -> Series:
        return read_scalars(self.files.tb)

    def explain(self) -> str:
        return f"exit {self.process.returncode}\nstdout:\n{self.process.stdout}\nstderr:\n{self.process.stderr}"


def real_run(tmp_path_factory: pytest.TempPathFactory, name: str, args: list[str]) -> Run:
    folder = tmp_path_factory.mktemp(name)
    root = folder / "run"
    full = [*args, f"run_dir={root}"]
    return Run(root=root, args=full, process=train_one(full, log_root=folder / "log"))


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return real_run(tmp_path_factory, "cartpole", CARTPOLE)


@pytest.fixture(scope="module")
def navigation(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return real_run(tmp_path_factory, "navigation", NAVIGATION)


@pytest.fixture(params=["cartpole", "navigation"])
def run(request: pytest.FixtureRequest, cartpole: Run, navigation: Run) -> Run:
    # Both named here, not looked up by name: the tests using them then stay on one worker with
    # the module's other runs (tests/xdist_groups.py), and each run is trained once.
    return {"cartpole": cartpole, "navigation": navigation}[request.param]


# --------------------------------------------------------------------------------------------------
# A real run and what it leaves behind


@pytest.mark.slow
def test_a_tiny_run_completes_and_writes_every_output(run: Run) -> None:
    assert run.process.returncode == EXIT_OK, run.explain()
    assert "Traceback" not in run.process.stderr
    files = run.files
    assert list(files.tb.glob("events.out.tfevents.*"))
    for path in (files.config, files.summary, files.model, files.stdout_log):
        assert path.is_file(), f"{path.name} missing"
    log = files.stdout_log.read_text()
    assert "train_one: completed" in log and str(run.root) in log


@pytest.mark.slow
def test_skrl_logs_each_line_once(run: Run) -> None:
    both = run.process.stdout + run.process.stderr
    assert both.count("Seed: 42") == 1, both


@pytest.mark.slow
def test_navigation_writes_task_reward_term_and_skrl_tags(navigation: Run) -> None:
    assert navigation.process.returncode == EXIT_OK, navigation.explain()
    series = navigation.scalars()
    # The task tags of the metrics the navigation env reports (other envs report others).
    reported = [tags.TASK_METRIC_TAGS[EPISODE_METRICS[m]] for m in NavigationEnv.episode_metrics
                if m in EPISODE_METRICS]
    every_point = [tags.EPISODES, tags.FRAMES_PER_SECOND, *(tags.reward_term_tag(t) for t in TERMS)]
    with_episodes = [*reported, tags.SCORE, tags.EPISODE_REWARD_MEAN]
    missing = [tag for tag in every_point + with_episodes if tag not in series]
    assert not missing, f"missing tags {missing}; written: {sorted(series)}"
    for tag in every_point:  # one point per evaluation point, at step = frames, none skipped
        assert [step for step, _ in series[tag]] == NAVIGATION_EVAL_POINTS, tag
    # Task metrics and the score stand where the point rests on finished episodes: from the first
    # such point on (the first, shortened episodes of the spread starts are not counted).
    counted = [step for step, count in series[tags.EPISODES] if count > 0]
    assert counted and counted == NAVIGATION_EVAL_POINTS[-len(counted):]
    for tag in with_episodes:
        assert [step for step, _ in series[tag]] == counted, tag
        assert all(math.isfinite(value) for _, value in series[tag]), tag
    for tag in SKRL_TAGS:
        assert tag in series, f"skrl tag {tag} missing; written: {sorted(series)}"
    for tag in (tags.SUCCESS_RATE, tags.TERMINATION_RATE):
        assert all(0.0 <= value <= 1.0 for _, value in series[tag])
    assert all(0 < value <= 48 for _, value in series[tags.EPISODE_LENGTH])
    # A fall costs the termination term 1 on its step: its per-step mean is a fall frequency.
    assert all(0.0 <= value <= 1.0 for _, value in series[tags.reward_term_tag("termination")])


@pytest.mark.slow
def test_cartpole_writes_task_and_reward_tags(cartpole: Run) -> None:
    assert cartpole.process.returncode == EXIT_OK, cartpole.explain()
    series = cartpole.scalars()
    frames = cartpole.summary()["frames"]
    # CartPole (gymnasium) reports no success; its task metrics are falls, length and return.
    for tag in (tags.TERMINATION_RATE, tags.EPISODE_LENGTH, tags.RETURN, tags.SCORE,
                tags.EPISODE_REWARD_MEAN, tags.reward_term_tag("env_reward"), *SKRL_TAGS):
        assert tag in series, f"missing {tag}; written: {sorted(series)}"
    steps = [step for step, _ in series[tags.SCORE]]
    assert len(steps) == 3 and steps == sorted(steps) and steps[-1] == frames
    # CartPole pays 1 per step: the episodic return is the episode length.
    assert series[tags.RETURN] == series[tags.EPISODE_LENGTH]
    assert all(value == 1.0 for _, value in series[tags.reward_term_tag("env_reward")])


@pytest.mark.slow
def test_score_is_the_weighted_sum_of_the_points_task_metrics(run: Run) -> None:
    # conf/scoring/return.yaml and navigation.yaml, written out by hand.
    by_hand = {"cartpole": lambda m: m["return"],
               "navigation": lambda m: m["success_rate"] - 0.5 * m["termination_rate"]
               - 0.1 * m["final_distance"]}[next(a[4:] for a in run.args if a.startswith("env="))]
    series = run.scalars()
    metric_at = {name: dict(series[tag]) for name, tag in tags.TASK_METRIC_TAGS.items() if tag in series}
    assert series[tags.SCORE]
    for step, logged in series[tags.SCORE]:
        assert logged == pytest.approx(by_hand({k: v[step] for k, v in metric_at.items()}),
                                       rel=1e-5, abs=1e-6)
    assert run.summary()["score"] == pytest.approx(series[tags.SCORE][-1][1], rel=1e-6, abs=1e-6)


@pytest.mark.slow
def test_config_yaml_is_the_resolved_config_and_loads_back(run: Run) -> None:
    data = yaml.safe_load(run.files.config.read_text())
    assert set(data) == {"env", "ppo", "network", "reward", "scoring", "train", "run_dir", "mode",
                         "checkpoint", "episodes", "experiment"}
    assert data["run_dir"] == str(run.root) and data["mode"] == "train"
    assert data["ppo"]["mini_batches"] == 4 and data["train"]["threads"] == 1
    loaded = run_config_from_plain(data, source=str(run.files.config))
    assert loaded == load_run_config(run.args)  # exactly what the command line composed to


@pytest.mark.slow
def test_navigation_config_yaml_keeps_env_params_and_all_weights(navigation: Run) -> None:
    data = yaml.safe_load(navigation.files.config.read_text())
    assert data["env"]["num_envs"] == 32 and data["env"]["params"] == {"stage": 1, "max_steps": 48}
    assert tuple(data["reward"]["scales"]) == TERMS


def git_head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.slow
def test_summary_json(run: Run) -> None:
    summary = run.summary()
    cfg = load_run_config(run.args)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["status"] == reasons.STATUS_COMPLETED
    # Whole steps of num_envs frames, at least train.frames.
    num_envs = cfg.env.num_envs
    assert num_envs is not None
    assert summary["frames"] == math.ceil(cfg.train.frames / num_envs) * num_envs
    assert summary["seed"] == cfg.train.seed == 42
    assert 0 < summary["wall_s"] < 300
    # The run's phases in Unix time: trainer start, first env step, end (summary written).
    assert summary["started_at"] <= summary["first_step_at"] <= run.files.summary.stat().st_mtime
    assert summary["started_at"] + summary["wall_s"] <= run.files.summary.stat().st_mtime + 1
    assert summary["git_sha"] == git_head()
    assert summary["packages"]["torch"] == metadata.version("torch")
    assert summary["packages"]["skrl"] == metadata.version("skrl")
    assert isinstance(summary["score"], float) and math.isfinite(summary["score"])
    metrics = summary["metrics"]
    assert metrics["frames_per_second"] > 0 and metrics["episodes"] >= 1
    # The metrics are those of the last evaluation point in TensorBoard.
    series = run.scalars()
    for name, tag in tags.TASK_METRIC_TAGS.items():
        if tag in series:
            assert metrics[name] == pytest.approx(series[tag][-1][1], rel=1e-6, abs=1e-6), name


@pytest.mark.slow
def test_navigation_summary_has_every_task_metric(navigation: Run) -> None:
    metrics = navigation.summary()["metrics"]
    for name in ("success_rate", "termination_rate", "episode_length", "final_distance", "return",
                 "episode_reward_mean"):
        assert isinstance(metrics[name], float), name


@pytest.mark.slow
def test_model_pt_loads_with_weights_only(run: Run) -> None:
    state = torch.load(run.files.model, map_location="cpu", weights_only=True)
    cfg = load_run_config(run.args)
    assert state["env"] == cfg.env.name
    assert state["network"]["policy_hidden_layer_sizes"] == cfg.network.policy_hidden_layer_sizes
    assert state["policy"] and state["value"]
    assert all(torch.isfinite(t).all() for t in state["policy"].values())
    assert state["observation_preprocessor"]  # normalize_observations is on by default
    assert state["discrete"] == (cfg.env.name == "cartpole")


@pytest.mark.slow
def test_eval_mode_prints_metrics_json(run: Run, tmp_path: Path) -> None:
    env_args = [a for a in run.args if a.startswith(("env", "+env"))]
    process = train_one([*env_args, "mode=eval", f"checkpoint={run.files.model}", "episodes=8",
                         "train.threads=1"], log_root=tmp_path)
    assert process.returncode == EXIT_OK, process.stderr
    metrics = json.loads(process.stdout)  # stdout is the JSON and nothing else
    assert metrics["episodes"] == 8  # one episode of each of 8 environments
    assert metrics["checkpoint"] == str(run.files.model)
    assert isinstance(metrics["score"], float) and math.isfinite(metrics["score"])
    assert 0.0 <= metrics["termination_rate"] <= 1.0
    assert not list(tmp_path.iterdir())  # eval writes no run folder


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_run(navigation: Run, tmp_path_factory: pytest.TempPathFactory
                                                ) -> None:
    again = real_run(tmp_path_factory, "navigation_again", NAVIGATION)
    assert again.process.returncode == EXIT_OK, again.explain()
    first, second = navigation.summary(), again.summary()
    first["metrics"].pop("frames_per_second")
    second["metrics"].pop("frames_per_second")
    assert first["metrics"] == second["metrics"]
    assert first["score"] == second["score"] and first["frames"] == second["frames"]
    a = torch.load(navigation.files.model, weights_only=True)
    b = torch.load(again.files.model, weights_only=True)
    for part in ("policy", "value", "observation_preprocessor"):
        for key, tensor in a[part].items():
            assert torch.equal(tensor, b[part][key]), f"{part}.{key} differs"


# --------------------------------------------------------------------------------------------------
# Bad input: exit 2, one message naming key, value and rule, no traceback


BAD_INPUT = [
    (["ppo.foo=1"], ["`ppo.foo`", "not a known key", "learning_rate"]),
    (["ppo.learning_rate=abc"], ["`ppo.learning_rate` is 'abc'", "must be a number"]),
    (["network=huge"], ["`network` is 'huge'", "options: deep, isaaclab_task, large, medium, small"]),
    (["env.num_envs=0"], ["`env.num_envs` is 0", "positive integer"]),
    (["train.frames=0"], ["`train.frames` is 0", "positive number of frames"]),
    (["train.frames=-100"], ["`train.frames` is -100", "positive number of frames"]),
    (["env=cartpole", "+reward.scales.bogus=1.0"],
     ["`reward.scales.bogus`", "exposes no term `bogus`", "its terms: env_reward"]),
    (["env=navigation", "env.num_envs=8", "ppo.mini_batches=4", "+reward.scales.bogus=1.0"],
     ["`reward.scales.bogus`", "exposes no term `bogus`", f"its terms: {', '.join(TERMS)}"]),
    (["env=navigation", "env.num_envs=8", "ppo.mini_batches=4", "+env.params.max_step=10"],
     ["`env.params`", "Unknown navigation parameter(s) ['max_step']"]),
    (["env=custom"], ["`env.factory`", "has no value"]),
    (["mode=eval", "checkpoint=MISSING"], ["`checkpoint`", "does not exist"]),
    (["+scoring.weights.episode_reward_mean=1"],
     ["`scoring.weights.episode_reward_mean`", "is not a task metric", "never scored"]),
    (["+scoring.weights.sucess_rate=1"], ["`scoring.weights.sucess_rate`", "is not a task metric",
                                          "success_rate, termination_rate"]),
    (["env=cartpole", "scoring=navigation"],
     ["`scoring.weights.success_rate`", "env `cartpole` does not report `success_rate`",
      "it reports: termination_rate, episode_length, return"]),
]


@pytest.mark.parametrize("args, says", BAD_INPUT, ids=[" ".join(args) for args, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_message(args: list[str], says: list[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # In this process (a fresh interpreter per case would import torch 14 times); the hydra test
    # below and the real runs above go through `python train_one.py`.
    args = [a.replace("MISSING", str(tmp_path / "no_run" / "model.pt")) for a in args]
    code, out, err = train_one_here([*args, f"run_dir={tmp_path / 'run'}", "train.threads=1"],
                                    log_root=tmp_path / "log", monkeypatch=monkeypatch, capsys=capsys)
    assert code == EXIT_BAD_INPUT, out + err
    assert "Traceback" not in out + err and "HYDRA_FULL_ERROR" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("train_one: error:")]
    assert len(errors) == 1, err
    for text in says:
        assert text in errors[0]
    assert "Fix:" in errors[0]
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("args", [["ppo.learning_rate=abc"], ["ppo.foo=1"], ["network=huge"]],
                         ids=lambda a: a[0])
def test_bad_input_through_hydras_own_start_exits_2_too(args: list[str], tmp_path: Path) -> None:
    # A `hydra.*` override takes the run through Hydra's main instead of the plain compose.
    process = train_one([*args, "hydra.verbose=false", f"run_dir={tmp_path / 'run'}"],
                        log_root=tmp_path / "log")
    output = process.stdout + process.stderr
    assert process.returncode == EXIT_BAD_INPUT, output
    assert "Traceback" not in output
    assert len([x for x in process.stderr.splitlines() if x.startswith("train_one: error:")]) == 1


def test_a_plain_run_composes_its_config_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Trial start latency: no second compose for a bad-input check, no Hydra app start-up.
    import automl.config
    import automl.run.train
    import automl.run.train_one
    from automl.summary import RunSummary

    composed: list[list[str]] = []
    real = automl.config._compose

    def counting(overrides: list[str], **kwargs: Any) -> Any:
        composed.append(list(overrides))
        return real(overrides, **kwargs)

    def fake_train(cfg: Any, run: paths.RunPaths) -> RunSummary:
        assert cfg.ppo.learning_rate == 0.0042 and run.root == tmp_path / "run"
        return RunSummary(status="completed", score=0.5, frames=0, wall_s=0.0, seed=0, git_sha=None)

    def no_hydra() -> None:
        raise AssertionError("Hydra's main was started for a plain run")

    monkeypatch.setattr(automl.config, "_compose", counting)
    monkeypatch.setattr(automl.run.train, "train", fake_train)
    monkeypatch.setattr(automl.run.train_one, "main", no_hydra)
    args = ["env=cartpole", "ppo.learning_rate=0.0042", f"run_dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", ["train_one.py", *args])
    automl.run.train_one.run()
    assert composed == [args]


def test_hydra_flags_still_work(tmp_path: Path) -> None:
    process = train_one(["--cfg", "job", "env=cartpole", "ppo.learning_rate=0.0042"], log_root=tmp_path)
    assert process.returncode == EXIT_OK, process.stderr
    printed = yaml.safe_load(process.stdout)
    assert printed["ppo"]["learning_rate"] == 0.0042 and printed["env"]["name"] == "cartpole"
    assert not list(tmp_path.rglob("summary.json"))


@pytest.mark.slow
def test_hydra_multirun_trains_each_job_in_its_own_folder(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    process = train_one(["--multirun", *CARTPOLE, "train.seed=1,2", f"hydra.sweep.dir={sweep}"],
                        log_root=tmp_path / "log")
    assert process.returncode == EXIT_OK, process.stdout + process.stderr
    seeds = sorted(json.loads((sweep / str(job) / "summary.json").read_text())["seed"] for job in (0, 1))
    assert seeds == [1, 2]


# --------------------------------------------------------------------------------------------------
# Runs that end early: divergence and SIGTERM


@pytest.mark.slow
def test_nan_observations_end_the_run_as_diverged(tmp_path: Path) -> None:
    root = tmp_path / "run"
    process = train_one([*CUSTOM, "env.factory=tests.nan_env_factory:make", "+env.params.nan_after=30",
                         "train.frames=20000", "train.eval_frequency=4000", f"run_dir={root}"],
                        log_root=tmp_path / "log")
    assert process.returncode == EXIT_FAILURE, process.stderr
    assert "Traceback" not in process.stderr
    summary = json.loads((root / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["status"] == reasons.STATUS_DIVERGED
    assert "NaN" in summary["message"]
    # Caught at the first update after step 30 (rollouts=24): long before the budget ran out.
    assert 30 * 16 <= summary["frames"] <= 2 * 24 * 16
    assert "diverged" in (root / "stdout.log").read_text()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_stops_the_run_and_writes_its_summary(tmp_path: Path) -> None:
    root = tmp_path / "run"
    log = paths.RunPaths(root).stdout_log
    env = {**os.environ, paths.LOG_ROOT_ENV: str(tmp_path / "log")}
    process = subprocess.Popen(
        [sys.executable, "train_one.py", *CUSTOM, "env.factory=tests.custom_env_factory:make",
         "train.frames=100000000", "train.progress_seconds=0.5", f"run_dir={root}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Training has started once a progress line with frames > 0 is in stdout.log.
        wait_for(lambda: log.is_file() and re.search(r"frames [1-9][\d,]*/", log.read_text()),
                 timeout=120, what="the first progress line")
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        stdout, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert took < 10, f"train_one took {took:.1f} s to stop after SIGTERM"
    assert process.returncode == EXIT_FAILURE, stderr
    assert "Traceback" not in stderr
    summary = json.loads((root / "summary.json").read_text())
    assert summary["status"] == reasons.STATUS_STOPPED
    assert 0 < summary["frames"] < 100_000_000
    assert (root / "model.pt").is_file()  # a stopped run keeps what it learned
    torch.load(root / "model.pt", weights_only=True)
