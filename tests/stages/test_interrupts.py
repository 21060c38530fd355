"""Ctrl-C (SIGINT) and SIGTERM stop every stage of `automl.py --mode stage` on the first signal:
what finished is recorded, no trial process is left, the exit code is 1, and the message names
the command that continues."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml
from search_harness import (
    REPO,
    WORKER,
    kill_leftovers,
    read_csv,
    rows,
    skip_reports,
    standin_pids,
    start_orchestrator,
    wait_for,
    write_behaviour,
)

from automl import cli, paths, reasons
from automl.paths import StudyPaths
from automl.stages.candidates import VALIDATION_SEED_BASE

START_TIMEOUT_S = 90
"""automl.py's start-up plus the stages before the one under test, on a loaded machine."""
STOP_TIMEOUT_S = 60
SLOW = 1.0
"""Seconds per evaluation point of the run the signal interrupts: 10 s or more per run."""
FINAL_FRAMES = 200_000
"""train.frames=100000 x --final-frames-multiplier 2: only the final run has it."""


def stage_argv(study: str, behaviour, *extra: str) -> list[str]:
    return ["--mode", "stage", "--quiet", "--budget-hours", "0.2", "--workers", "2",
            "--space", str(REPO / "tests" / "spaces" / "two_by_two.yaml"),
            "--worker", f"{sys.executable} {WORKER} --behaviour {behaviour}",
            "--study-name", study, "--search-method", "grid", "--pruner", "none",
            "--hp-trials", "2", "--validate-top", "1", "--validate-seeds", "2", *extra,
            "train.frames=100000", "train.eval_frequency=10000"]


def slow_stage(tmp_path, stage: str):
    """A stand-in script whose runs of `stage` take long; every other run is fast."""
    when = {"search": {},
            "validation": {"train.seed": VALIDATION_SEED_BASE},
            "final": {"train.frames": FINAL_FRAMES}}[stage]
    return write_behaviour(tmp_path, f"slow_{stage}", seconds_per_point=0.01,
                           rules=[{"when": when, "seconds_per_point": SLOW}])


def running_in(sp: StudyPaths, stage: str) -> bool:
    """The stand-in of `stage` runs (it writes config.yaml once its signal handlers are set)."""
    if stage == "search":
        return (sp.trial_dir(0) / "config.yaml").exists()
    if stage == "validation":
        seeds = [f"_seed{VALIDATION_SEED_BASE}", f"_seed{VALIDATION_SEED_BASE + 1}"]
        folders = {s: list(sp.validation_dir.glob(f"*{s}")) for s in seeds}
        # The fast seed has finished and exited (something to record), the slow one runs.
        return (any((f / "config.yaml").exists() for f in folders[seeds[0]])
                and any((f / "summary.json").exists() and not standin_pids(str(f))
                        for f in folders[seeds[1]]))
    return (sp.root / "final" / "config.yaml").exists()


def interrupt(tmp_path, study: str, stage: str, signum: int) -> tuple[int, str, StudyPaths]:
    """Run the stage pipeline, send `signum` once `stage` runs; returns (code, stderr, paths)."""
    log = tmp_path / "log"
    sp = StudyPaths(log / "automl" / study)
    proc = start_orchestrator(stage_argv(study, slow_stage(tmp_path, stage)), log, tmp_path)
    try:
        wait_for(lambda: running_in(sp, stage) or proc.poll() is not None,
                 timeout=START_TIMEOUT_S, what=f"the {stage} stage to run")
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        os.killpg(proc.pid, signum)  # one signal: what Ctrl-C in its terminal sends is SIGINT
        code = proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_leftovers(str(sp.root))
    err = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in err, err
    assert standin_pids(str(sp.root)) == [], "a run outlived the interrupted stage"
    return code, err, sp


SIGNALS = pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])


@SIGNALS
def test_a_signal_in_the_search_stops_the_search_and_records_its_trials(tmp_path, signum):
    code, err, sp = interrupt(tmp_path, "cut_search", "search", signum)
    assert code == 1, err
    assert "search stopped (interrupted); continue with: uv run automl.py --mode stage --resume" in err
    assert f"--study-name {sp.name} --budget-hours " in err  # the continuation has a budget
    table = rows(sp)
    assert table and {r["stop_reason"] for r in table} == {reasons.BUDGET}
    assert not sp.validation_dir.exists()
    assert not (sp.root / "final").exists()


@SIGNALS
def test_a_signal_in_validation_stops_the_stage_and_keeps_the_finished_runs(tmp_path, signum):
    code, err, sp = interrupt(tmp_path, "cut_validation", "validation", signum)
    assert code == 1, err
    assert (f"validation interrupted; continue with: uv run automl.py --mode validate "
            f"--study-name {sp.name}") in err
    # The run that finished is recorded; the one the signal stopped is not a result.
    [row] = read_csv(sp.validation_csv)
    assert row["seeds"] == str(VALIDATION_SEED_BASE + 1) and row["n_seeds"] == "1"
    state = yaml.safe_load(sp.state.read_text())
    assert state["phase"] == "interrupted"
    assert any("validation interrupted: of this look's 2 runs 1 completed, 0 failed, 1 stopped "
               "unfinished, 0 not started" in n for n in state["stage_notes"]), state["stage_notes"]
    # Not taken for a budget cut: nothing was chosen, exported or trained after it.
    assert not sp.best_config.exists()
    assert not (sp.root / "final").exists()


def test_the_printed_command_continues_an_interrupted_validation(tmp_path, monkeypatch, capsys):
    code, err, sp = interrupt(tmp_path, "go_on", "validation", signal.SIGINT)
    assert code == 1, err
    command = err.split("continue with: ")[1].splitlines()[0].split()
    assert command[:3] == ["uv", "run", "automl.py"]
    kept = next(sp.validation_dir.glob(f"*_seed{VALIDATION_SEED_BASE + 1}")) / "summary.json"
    before = kept.read_bytes()
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    monkeypatch.setenv(paths.PRESETS_ROOT_ENV, str(tmp_path / "presets"))
    skip_reports(monkeypatch)
    fast = write_behaviour(tmp_path, "fast", seconds_per_point=0.01)
    worker = ["--worker", f"{sys.executable} {WORKER} --behaviour {fast}", "--quiet"]
    assert cli.main([*command[3:], *worker]) == 0
    assert "1 run(s) completed in an earlier session are kept" in capsys.readouterr().out
    assert kept.read_bytes() == before, "a completed validation run was run again"
    [row] = read_csv(sp.validation_csv)
    assert row["n_seeds"] == "2"
    assert sp.best_config.exists()


@SIGNALS
def test_a_signal_in_the_final_run_stops_it_and_names_the_command_that_trains_it(tmp_path, signum):
    code, err, sp = interrupt(tmp_path, "cut_final", "final", signum)
    assert code == 1, err
    assert "final run interrupted; continue with: uv run train_one.py" in err
    assert f"train.frames={FINAL_FRAMES}" in err and f"run_dir={sp.root / 'final'}" in err
    # Search and validation had finished: their results and the exported choice stay.
    assert read_csv(sp.validation_csv)
    assert sp.best_config.exists()
    state = yaml.safe_load(sp.state.read_text())
    assert state["phase"] == "interrupted"
    assert any("final run interrupted at" in n for n in state["stage_notes"])
    summary = yaml.safe_load((sp.root / "final" / "summary.json").read_text())
    assert summary["status"] == reasons.STATUS_STOPPED
