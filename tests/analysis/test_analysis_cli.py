"""analyze.py: table, --compare, --plots, --importance; every bad input exits 2 with one message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_study import FakeTrial, lr_driven_trials, make_study

from automl import paths
from automl.analysis import plots
from automl.analysis.cli import main
from automl.errors import EXIT_BAD_INPUT
from automl.paths import StudyPaths


@pytest.fixture
def log_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture
def study(log_root: Path) -> StudyPaths:
    trials = lr_driven_trials(8, seed=4)
    trials[6].state, trials[6].points, trials[6].metrics_attr = "running", 2, False
    trials[7].state, trials[7].points = "pruned", 1
    return make_study("cli", trials)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_table_of_a_running_study(study: StudyPaths, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--study", "cli")
    assert code == 0 and err == ""
    assert "study cli: 8 search trials" in out
    assert "running" in out and "pruned" in out and "learning_rate" in out
    assert "6 complete, 1 running, 1 pruned" in out
    assert study.experiment_df_csv.exists()


def test_top_metric_and_sort(study: StudyPaths, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--study", str(study.root), "--top", "2",
                       "--metric", "success_rate", "--sort", "ascending")
    assert code == 0
    body = [line for line in out.splitlines() if line.startswith("│")]
    assert len(body) == 2
    assert "first 2" in out and "success_rate, ascending" in out


def test_latest_is_the_most_recently_changed_study(study: StudyPaths, log_root: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    other = make_study("older", lr_driven_trials(2))
    past = time.time() - 3600
    for path in (other.root, other.journal, other.search_space):
        os.utime(path, (past, past))
    code, out, _ = run(capsys)
    assert code == 0 and "study cli:" in out


def test_compare_marks_differences(study: StudyPaths, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--study", "cli", "--compare", "0", "trial_0006")
    assert code == 0
    assert "trial_0000 vs trial_0006" in out
    lr_line = next(line for line in out.splitlines() if "learning_rate" in line)
    assert lr_line.rstrip(" │").endswith("*")
    state_line = next(line for line in out.splitlines() if "│ state" in line)
    assert "complete" in state_line and "running" in state_line


def test_plots_and_importance(study: StudyPaths, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The plots themselves are tested in test_analysis_plots.py; here only that --plots runs them.
    calls: list[StudyPaths] = []

    def fake_make_plots(study_paths: StudyPaths, **_: object) -> list[Path]:
        calls.append(study_paths)
        return [study_paths.plots_dir / "multi_trial.png"]

    monkeypatch.setattr(plots, "make_plots", fake_make_plots)
    code, out, _ = run(capsys, "--study", "cli", "--importance", "--plots")
    assert code == 0
    assert study.importance_yaml.exists() and paths.latest_importance_yaml().exists()
    assert calls == [study] and "multi_trial.png" in out
    assert str(study.importance_yaml) in out


def expect_bad(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == EXIT_BAD_INPUT, (argv, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("analyze.py: ") and "Fix:" in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_bad_inputs_exit_2_with_one_message(study: StudyPaths, log_root: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    expect_bad(capsys, ["--study", "nope"], "'nope'", "no study folder", "cli")
    expect_bad(capsys, ["--study", str(log_root / "no" / "where")], "no study folder")
    expect_bad(capsys, ["--study", "cli", "--metric", "reward"], "'reward'", "success_rate")
    expect_bad(capsys, ["--study", "cli", "--sort", "up"], "'up'", "ascending")
    expect_bad(capsys, ["--study", "cli", "--top", "0"], "--top")
    expect_bad(capsys, ["--study", "cli", "--compare", "0", "99"], "'99'", "trials 0..7")
    expect_bad(capsys, ["--study", "cli", "--compare", "x", "1"], "'x'")
    expect_bad(capsys, ["--study", "cli", "--importance", "--evaluator", "shap"], "'shap'")
    make_study("empty", [])
    expect_bad(capsys, ["--study", "empty"], "no search trials yet", "empty")
    make_study("unfinished", [FakeTrial(lr_driven_trials(1)[0].params, score=0.1,
                                        state="running", points=1)])
    expect_bad(capsys, ["--study", "unfinished", "--importance"], "none complete")
    (log_root / "automl" / "bare").mkdir()
    (log_root / "automl" / "bare" / "meta.yaml").write_text("{}\n")
    expect_bad(capsys, ["--study", "bare"], "study.journal")


def test_no_study_at_all(log_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect_bad(capsys, [], "'latest'", "no study folder there yet")


def test_script_runs_as_a_file(study: StudyPaths) -> None:
    script = paths.repo_root() / "analyze.py"
    env = {**os.environ, paths.LOG_ROOT_ENV: str(study.root.parent.parent)}
    done = subprocess.run([sys.executable, str(script), "--study", "nope"], env=env,
                          capture_output=True, text=True, cwd=paths.repo_root(), timeout=60)
    assert done.returncode == EXIT_BAD_INPUT
    assert done.stderr.startswith("analyze.py: ") and "Traceback" not in done.stderr
