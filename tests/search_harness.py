"""What the orchestrator's tests share: stand-in behaviour files, the command line of a short
search over the stand-in worker, reading a study's outputs, and finding trial processes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml

from automl import cli
from automl.paths import StudyPaths
from automl.search.study import records
from automl.search.study.loading import load_study

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
WORKER = TESTS / "standin_worker.py"
SPACES = TESTS / "spaces"
SHORT_TRIALS = ("train.frames=100000", "train.eval_frequency=10000", "env.num_envs=16",
                "ppo.mini_batches=4")
"""Ten evaluation points per trial; one time limit of 16 navigation envs (6,400 frames) ends before
the first, so the pruner's first rung is the grace frames."""


def write_behaviour(folder: Path, name: str, **behaviour: Any) -> Path:
    """A stand-in behaviour file (format: tests/standin_worker.py's docstring)."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps(behaviour))
    return path


def search_argv(*, study: str, space: str | Path | None, behaviour: Path, hp_trials: int,
                workers: int = 2, budget_hours: float = 0.05, flags: Sequence[str] = (),
                overrides: Sequence[str] = ()) -> list[str]:
    """`automl.py --mode search` over the stand-in worker, with short trials.

    `space`: a file name in tests/spaces/, a path, or None for no --space (a resumed study's own).
    """
    space_flag = [] if space is None else [
        "--space", str(SPACES / space if isinstance(space, str) else space)]
    return ["--mode", "search", "--quiet", "--budget-hours", str(budget_hours),
            "--hp-trials", str(hp_trials), "--workers", str(workers), *space_flag,
            "--worker", f"{sys.executable} {WORKER} --behaviour {behaviour}",
            "--study-name", study, *flags, *SHORT_TRIALS, *overrides]


def run_search(argv: Sequence[str]) -> int:
    """The orchestrator, in this process; returns its exit code."""
    return cli.main(list(argv))


def skip_reports(monkeypatch: Any) -> None:
    """Stub the end-of-search reports: their plots take seconds per study, and they have tests
    of their own (tests/analysis/; the slow end-to-end test writes them for real)."""
    import automl.analysis.reports as analysis_reports

    monkeypatch.setattr(analysis_reports, "write_reports", lambda *args, **kwargs: [])


def choice_names(sp: StudyPaths, out: str, capsys: Any) -> dict[str, str]:
    """The configuration each output of a study names as its choice: best_config.yaml,
    automl_state.yaml (`best`, and `chosen` where validation decided), configurations.csv's first
    row, the importance file's `chosen`, experiment_df.csv's first row, `analyze.py --study` and
    the last line of the console output `out` (the mode's result line)."""
    from automl.analysis import cli as analyze

    state = yaml.safe_load(sp.state.read_text())
    names = {"best_config.yaml": yaml.safe_load(sp.best_config.read_text())["source"]["config_id"],
             "automl_state.yaml best": state["best"]["config_id"],
             "configurations.csv": read_csv(sp.configurations_csv)[0]["config_id"],
             "importance chosen": yaml.safe_load(sp.importance_yaml.read_text())["chosen"]["config_id"],
             "experiment_df.csv": read_csv(sp.experiment_df_csv)[0]["configuration"]}
    if state.get("chosen"):
        names["automl_state.yaml chosen"] = state["chosen"]["config_id"]
    last = out.strip().splitlines()[-1]
    assert last.startswith("automl: result: "), last
    names["last console line"] = last.removeprefix("automl: result: ").split(" chosen")[0]
    capsys.readouterr()
    assert analyze.main(["--study", sp.name]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("chosen: "))
    names["analyze.py"] = line.removeprefix("chosen: ").split(",")[0]
    return names


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def rows(study_paths: StudyPaths) -> list[dict[str, str]]:
    """trial_final.csv, in the order trials ended."""
    return read_csv(study_paths.trial_final_csv)


def header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle))


def trials(study_paths: StudyPaths) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read back from its storage."""
    return load_study(study_paths).get_trials(deepcopy=False)


def reason_of(trial: optuna.trial.FrozenTrial) -> str | None:
    return trial.user_attrs.get(records.STOP_REASON)


def standin_pids(marker: str) -> list[int]:
    """Live (not zombie) stand-in processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in command and WORKER.name in command and state != "Z":
            found.append(int(entry.name))
    return found


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll `condition` until it is truthy; fail the test after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_orchestrator(argv: Sequence[str], log_root: Path, logs: Path) -> subprocess.Popen:
    """automl.py as its own process (own session: signals sent to it reach nothing else), through
    tests/orchestrator.py: its reports write the tables only."""
    env = {**os.environ, "AUTOML_LOG_ROOT": str(log_root)}
    with (logs / "stdout.txt").open("ab") as out, (logs / "stderr.txt").open("ab") as err:
        return subprocess.Popen([sys.executable, str(TESTS / "orchestrator.py"), *argv], cwd=REPO,
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)


def kill_leftovers(marker: str) -> None:
    """Test clean-up only: SIGKILL stand-ins a failed test may have left behind."""
    for pid in standin_pids(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
