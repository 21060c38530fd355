"""Plots: four readable PNGs for a real-looking study; empty and one-trial studies do not crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_study import FakeTrial, lr_driven_trials, make_study

from automl import paths
from automl.analysis.folder import open_view
from automl.analysis.plots import (
    EXPERIMENT_VARIABLES,
    IMPORTANCE,
    MULTI_TRIAL,
    OPTIMIZATION_HISTORY,
    make_plots,
    score_curve,
)

PNG = b"\x89PNG\r\n\x1a\n"
ALL = [MULTI_TRIAL, EXPERIMENT_VARIABLES, IMPORTANCE, OPTIMIZATION_HISTORY]


@pytest.fixture
def log_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path))
    return tmp_path


def test_four_plots_of_a_study(log_root: Path) -> None:
    trials = lr_driven_trials(16)
    trials[2].state, trials[2].points = "pruned", 2
    trials[5].state, trials[5].points, trials[5].metrics_attr = "running", 3, False
    study_paths = make_study("plots", trials)
    written = make_plots(study_paths)
    assert [p.name for p in written] == ALL
    for path in written:
        assert path.parent == study_paths.plots_dir
        assert path.read_bytes()[:8] == PNG
        assert path.stat().st_size > 15_000, path.name  # drawn content, not an empty canvas
    assert not list(study_paths.plots_dir.glob(".*"))


def test_curves_come_from_event_files_and_stop_where_the_trial_stopped(log_root: Path) -> None:
    trials = lr_driven_trials(2)
    trials[1].state, trials[1].points = "pruned", 2
    trials[1].run_folder = False  # no events: the values reported to Optuna are used
    view = open_view(make_study("curves", trials))
    full, pruned = (score_curve(view, t) for t in view.trials)
    assert [frames for frames, _ in full] == [10_000, 20_000, 30_000, 40_000, 50_000]
    assert full[-1][1] == pytest.approx(trials[0].score)
    assert [frames for frames, _ in pruned] == [10_000, 20_000]


@pytest.mark.parametrize("count", [0, 1])
def test_empty_and_one_trial_studies(log_root: Path, count: int) -> None:
    trials = [FakeTrial(lr_driven_trials(1)[0].params, score=0.3)][:count]
    written = make_plots(make_study(f"tiny{count}", trials))
    assert [p.name for p in written] == ALL
    assert all(p.stat().st_size > 3_000 for p in written)
