"""The stand-in worker, run as the orchestrator runs it: a subprocess with Hydra-style overrides."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import standin_worker
import yaml

from automl import reasons, tags
from automl.paths import RunPaths
from automl.search.trials.tb_reader import EventTail, read_scalars

WORKER = Path(__file__).with_name("standin_worker.py")
TARGET = 3e-4
BEHAVIOUR = {
    "seconds_per_point": 0.0,
    "score": {"param": "ppo.learning_rate", "target": TARGET, "log": True, "scale": 2.0},
    "rules": [
        {"when": {"ppo.learning_epochs": 7}, "crash_at": 30000},
        {"when": {"ppo.learning_epochs": 8}, "nan_at": 20000},
        {"when": {"ppo.learning_epochs": 9}, "die_at": 20000},
        {"when": {"ppo.learning_epochs": 11}, "hang_at": 20000, "seconds_per_point": 0.05},
        {"when": {"ppo.learning_epochs": 12}, "seconds_per_point": 5.0},
    ],
}
# Overrides the real worker takes and the stand-in must accept without using them.
IGNORED = ["env.device=cpu", "train.quiet=true", "train.threads=1", "+experiment.x=y", "~mode",
           "network.policy_hidden_layer_sizes=[64,64]", "reward.scales.torques=-1e-05"]


def launch(tmp: Path, name: str, epochs: int, lr: float) -> tuple[subprocess.Popen, Path]:
    behaviour = tmp / "behaviour.json"
    if not behaviour.exists():
        behaviour.write_text(json.dumps(BEHAVIOUR))
    run_dir = tmp / name
    args = [sys.executable, str(WORKER), "--behaviour", str(behaviour), f"run_dir={run_dir}",
            # "slow" must still be running when its test sends SIGTERM, however late that is.
            f"train.frames={10_000_000 if name == 'slow' else 50_000}",
            "train.eval_frequency=10000", "train.seed=3",
            f"ppo.learning_rate={lr}", f"ppo.learning_epochs={epochs}", *IGNORED]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, run_dir


CASES = {"good": (5, TARGET * 10), "crash": (7, TARGET), "nan": (8, TARGET), "die": (9, TARGET),
         "hang": (11, TARGET), "slow": (12, TARGET)}
"""Run name -> (ppo.learning_epochs, which picks the rule; ppo.learning_rate)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every scripted run, started together so their start-up costs overlap: name -> (proc, dir)."""
    tmp = tmp_path_factory.mktemp("standin")
    started = {name: launch(tmp, name, epochs, lr) for name, (epochs, lr) in CASES.items()}
    yield started
    for proc, _ in started.values():
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def finished(runs) -> dict[str, tuple[int, str, RunPaths]]:
    """The runs that end by themselves: name -> (exit code, stderr, paths)."""
    results = {}
    for name in ("good", "crash", "nan", "die"):
        proc, run_dir = runs[name]
        _, stderr = proc.communicate(timeout=30)
        results[name] = (proc.returncode, stderr, RunPaths(run_dir))
    return results


def summary(run: RunPaths) -> dict:
    return json.loads(run.summary.read_text())


def test_completed_run_writes_tags_summary_and_config(finished) -> None:
    code, stderr, run = finished["good"]
    assert code == 0, stderr
    series = read_scalars(run.tb)
    expected_tags = {tags.SCORE, tags.SUCCESS_RATE, tags.TERMINATION_RATE, tags.EPISODE_LENGTH,
                     tags.EPISODE_REWARD_MEAN}
    assert set(series) == expected_tags
    assert all([s for s, _ in series[tag]] == [10000, 20000, 30000, 40000, 50000]
               for tag in expected_tags)
    quality = 2.0 * math.exp(-1.0)  # learning rate one decade off its target
    assert [v for _, v in series[tags.SCORE]] == pytest.approx(
        [quality * f for f in (0.2, 0.4, 0.6, 0.8, 1.0)], rel=1e-6)
    result = summary(run)
    assert result["status"] == reasons.STATUS_COMPLETED
    assert result["score"] == pytest.approx(quality)
    assert result["frames"] == 50000 and result["seed"] == 3 and result["git_sha"] is None
    assert set(result["metrics"]) >= {"success_rate", "termination_rate", "episode_length"}
    assert result["wall_s"] >= 0
    config = yaml.safe_load(run.config.read_text())
    assert config["ppo"] == {"learning_rate": TARGET * 10, "learning_epochs": 5}
    assert config["network"]["policy_hidden_layer_sizes"] == [64, 64]
    assert config["reward"]["scales"]["torques"] == -1e-05
    assert config["experiment"] == {"x": "y"}


def test_crash_reports_error(finished) -> None:
    code, stderr, run = finished["crash"]
    assert code == 1
    assert "scripted crash at 30000" in stderr
    result = summary(run)
    assert result["status"] == reasons.STATUS_ERROR and result["frames"] == 20000
    assert "scripted crash" in result["message"] and result["score"] is None
    assert [s for s, _ in read_scalars(run.tb)[tags.SCORE]] == [10000, 20000]


def test_nan_diverges(finished) -> None:
    code, _, run = finished["nan"]
    assert code == 1
    assert summary(run)["status"] == reasons.STATUS_DIVERGED and summary(run)["score"] is None
    (step, value) = read_scalars(run.tb)[tags.SCORE][-1]
    assert step == 20000 and math.isnan(value)


def test_die_leaves_no_summary(finished) -> None:
    code, _, run = finished["die"]
    assert code == -signal.SIGKILL
    assert not run.summary.exists()
    assert [s for s, _ in read_scalars(run.tb)[tags.SCORE]] == [10000]


def test_exit_code_writes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    behaviour = tmp_path / "b.json"
    behaviour.write_text(json.dumps({"exit_code": 3}))
    argv = ["standin_worker.py", "--behaviour", str(behaviour), f"run_dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", argv)
    assert standin_worker.main() == 3  # in-process: this path returns before touching signals
    assert "scripted exit 3" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_run_dir_is_required(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["standin_worker.py", "train.frames=10"])
    with pytest.raises(SystemExit, match="run_dir=PATH is required"):
        standin_worker.main()


def wait_for_a_point(run_dir: Path, proc: subprocess.Popen) -> EventTail:
    tail, deadline = EventTail(run_dir / "tb"), time.monotonic() + 60
    while not tail.poll().get(tags.SCORE):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    return tail


def test_sigterm_stops_quickly_with_a_summary(runs) -> None:
    proc, run_dir = runs["slow"]
    tail = wait_for_a_point(run_dir, proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=5)
    # Points are 5 s apart: it did not wait for the next (a loaded machine may take a second
    # or two to write the summary and exit).
    assert time.monotonic() - sent < 4.0
    assert proc.returncode == 0
    tail.poll()
    result = summary(RunPaths(run_dir))
    assert result["status"] == reasons.STATUS_STOPPED
    assert result["frames"] == tail.last(tags.SCORE)[0] < 10_000_000


def test_hang_ignores_sigterm_until_killed(runs) -> None:
    proc, run_dir = runs["hang"]
    assert proc.stderr is not None
    assert "hanging at 20000 frames" in proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)
    proc.kill()
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ("rise", [0.2, 0.4, 0.6, 0.8, 1.0]),
        ("plateau", [0.8, 1.0, 1.0, 1.0, 1.0]),
        ("drop", [0.4, 0.8, 0.0, 0.0, 0.0]),
    ],
)
def test_curves(curve: str, expected: list[float]) -> None:
    shape = standin_worker.CURVES[curve]
    assert [shape(f) for f in (0.2, 0.4, 0.6, 0.8, 1.0)] == pytest.approx(expected)


def test_quality_is_best_at_the_target() -> None:
    spec = {"param": "p", "target": 1e-3, "log": True}
    values = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    qualities = [standin_worker.quality(spec, {"p": v}) for v in values]
    assert qualities == pytest.approx([math.exp(-2), math.exp(-1), 1.0, math.exp(-1), math.exp(-2)])
    linear = {"param": "p", "target": 0.5, "scale": 3.0, "width": 0.25}
    assert standin_worker.quality(linear, {"p": 0.75}) == pytest.approx(3.0 * math.exp(-1))


def test_rules_apply_in_order(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"curve": "plateau", "rules": [
        {"when": {"a": 1}, "curve": "drop", "noise": 0.1},
        {"when": {"a": 1, "b": "x"}, "curve": "rise"},
        {"when": {"a": 2}, "crash_at": 5},
    ]}))
    picked = standin_worker.load_behaviour(str(path), {"a": 1, "b": "x"})
    assert (picked["curve"], picked["noise"], picked["crash_at"]) == ("rise", 0.1, None)
    assert standin_worker.load_behaviour(str(path), {"a": 3})["curve"] == "plateau"


def test_unknown_behaviour_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"rules": [{"when": {}, "crash_after": 5}]}))
    with pytest.raises(SystemExit, match="crash_after"):
        standin_worker.load_behaviour(str(path), {})


@pytest.mark.parametrize(
    ("text", "value"),
    [("3", 3), ("1e-05", 1e-05), ("-0.5", -0.5), ("true", True), ("null", None),
     ("[64,64]", [64, 64]), ("cpu", "cpu")],
)
def test_parse_value(text: str, value: object) -> None:
    assert standin_worker.parse_value(text) == value


def test_hold_until_keeps_the_last_point_back_until_the_file_exists(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    behaviour = tmp_path / "hold.json"
    behaviour.write_text(json.dumps({"seconds_per_point": 0.0, "hold_until": str(gate)}))
    run = RunPaths(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, str(WORKER), "--behaviour", str(behaviour),
                             f"run_dir={run.root}", "train.frames=30000",
                             "train.eval_frequency=10000"], stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        while len(read_scalars(run.tb).get(tags.SCORE, [])) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.3)
        assert proc.poll() is None and not run.summary.exists()  # held before its last point
        assert [f for f, _ in read_scalars(run.tb)[tags.SCORE]] == [10000, 20000]
        gate.touch()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads(run.summary.read_text())
    assert summary["status"] == reasons.STATUS_COMPLETED and summary["frames"] == 30000


@pytest.mark.parametrize("fields", [
    {"file_version": "brain.Event:2"},
    {"step": 100_000, "tag": tags.SCORE, "value": 0.25},
    {"step": 1, "tag": tags.EPISODE_REWARD_MEAN, "value": -1e30},
    {"step": 2**40, "tag": "termination_rate/cart_out_of_bounds", "value": float("nan")},
], ids=["version", "score", "negative", "nan"])
def test_the_stand_ins_events_are_the_bytes_protobuf_writes(fields: dict) -> None:
    """The stand-in writes its events without protobuf (its import costs each run 0.1 s): byte for
    byte what tensorboard's Event serialises to."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    wall = time.time()
    summary = ({"summary": Summary(value=[Summary.Value(tag=fields["tag"], simple_value=fields["value"])])}
               if "tag" in fields else {})
    reference = Event(wall_time=wall, step=fields.get("step", 0),
                      file_version=fields.get("file_version", ""), **summary)
    assert standin_worker.event_bytes(wall_time=wall, **fields) == reference.SerializeToString()
