"""experiment_df.csv: every search trial, best first, with signed native parameters and metrics."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from fake_study import FakeTrial, fake_space, lr_driven_trials, make_study

from automl import paths
from automl.analysis.folder import open_view
from automl.analysis.table import sort_rows, trial_rows, write_experiment_df
from automl.analysis.validation import summarize_validation, write_validation_csv
from automl.search.study import records

PARAMS = ["learning_rate", "lambda_param", "learning_epochs", "policy_hidden_layer_sizes",
          "torques", "termination"]


@pytest.fixture
def log_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path))
    return tmp_path


def params(lr: float, **extra: object) -> dict:
    return {"learning_rate": lr, "lambda_param": 0.95, "learning_epochs": 4,
            "policy_hidden_layer_sizes": [256, 128, 64], "torques": -1e-5, "termination": -200,
            **extra}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_rows_best_first_with_every_column(log_root: Path) -> None:
    trials = [
        FakeTrial(params(1e-4), score=0.2),
        FakeTrial(params(2e-4), score=0.9, state="pruned", points=2),
        FakeTrial(params(3e-4), score=0.7),
        FakeTrial(params(4e-4), score=None, state="fail", points=0),
        FakeTrial(params(5e-4, policy_hidden_layer_sizes=[64, 64]), score=0.5),
        FakeTrial(params(6e-4), score=0.1, state="running", metrics_attr=False, points=3),
        FakeTrial(params(3e-4), score=0.3, extra_attrs={records.CONFIRMS: 2}),
    ]
    study_paths = make_study("table", trials)
    path = write_experiment_df(study_paths)
    assert path == study_paths.experiment_df_csv
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["trial", "state", "stop_reason", "score", "frames", "wall_s", *PARAMS,
                      "success_rate", "termination_rate", "episode_length",
                      "episode_reward_mean", "validated_score", "confirms", "configuration",
                      "config_rank", "config_mean", "config_seeds"]
    rows = read_csv(path)
    # Configurations by their mean over seeds (trial 2 with its confirmation 6: 0.5, ahead of
    # trial 4's 0.5 by number), each configuration's trials together; then the pruned trial (its
    # 0.9 is a partial score), the running one, the failed one.
    assert [int(r["trial"]) for r in rows] == [2, 6, 4, 0, 1, 5, 3]
    assert [r["state"] for r in rows] == ["complete"] * 4 + ["pruned", "running", "failed"]
    assert [r["stop_reason"] for r in rows][4:] == ["pruned", "running", "error"]
    assert [r["confirms"] for r in rows] == ["", "2", "", "", "", "", ""]  # 6 trains 2 again
    assert [r["configuration"] for r in rows] == ["trial_0002", "trial_0002", "trial_0004",
                                                  "trial_0000", "", "", ""]
    assert [r["config_rank"] for r in rows][:4] == ["1", "1", "2", "3"]
    assert float(rows[1]["config_mean"]) == pytest.approx(0.5) and rows[1]["config_seeds"] == "2"
    best = rows[0]
    assert float(best["score"]) == pytest.approx(0.7)
    assert float(best["learning_rate"]) == pytest.approx(3e-4)
    assert float(best["torques"]) == pytest.approx(-1e-5)  # signed native, not the magnitude
    assert int(best["termination"]) == -200
    assert json.loads(rows[2]["policy_hidden_layer_sizes"]) == [64, 64]
    assert float(best["frames"]) == 50_000 and float(best["wall_s"]) == 12.0
    assert float(best["success_rate"]) == pytest.approx(0.5 + 0.7 / 4)
    assert float(best["episode_reward_mean"]) == pytest.approx(7.0)
    assert rows[6]["score"] == "" and rows[6]["success_rate"] == ""
    assert not list(study_paths.root.glob(".*.tmp"))


def test_running_trial_reads_its_event_files(log_root: Path) -> None:
    running = FakeTrial(params(3e-4), score=0.4, state="running", metrics_attr=False, points=3)
    study_paths = make_study("running", [FakeTrial(params(1e-4), score=0.1), running])
    rows = {r.number: r for r in trial_rows(open_view(study_paths))}
    row = rows[1]
    assert (row.state, row.stop_reason) == ("running", "running")
    assert row.score == pytest.approx(0.4)  # last score it reported
    assert row.frames == 30_000
    assert row.metrics["success_rate"] == pytest.approx(0.5 + 0.4 / 4)


def test_a_trial_cut_by_the_budget_is_shown_cut_not_failed(log_root: Path) -> None:
    cut = FakeTrial(params(3e-4), score=0.4, state="fail", stop_reason="budget", points=3)
    failed = FakeTrial(params(1e-3), score=None, state="fail", points=1)
    study_paths = make_study("cut", [FakeTrial(params(1e-4), score=0.1), cut, failed])
    rows = {r.number: r for r in trial_rows(open_view(study_paths))}
    assert (rows[1].state, rows[1].stop_reason) == ("cut", "budget")
    assert (rows[2].state, rows[2].stop_reason) == ("failed", "error")
    assert [r.number for r in sort_rows(list(rows.values()))] == [0, 1, 2]


def test_validated_score_comes_from_validation_csv(log_root: Path) -> None:
    study_paths = make_study("validated", [FakeTrial(params(1e-4), score=0.2),
                                           FakeTrial(params(3e-4), score=0.8)])
    rows = [("trial_0001", 1, seed, score) for seed, score in ((1, 0.5), (2, 0.7))]
    write_validation_csv(study_paths, rows, summarize_validation(rows))
    by_trial = {int(r["trial"]): r for r in read_csv(write_experiment_df(study_paths))}
    assert float(by_trial[1]["validated_score"]) == pytest.approx(0.6)
    assert by_trial[0]["validated_score"] == ""


def test_sort_by_another_metric_and_direction(log_root: Path) -> None:
    study_paths = make_study("sorting", lr_driven_trials(6, seed=3))
    rows = trial_rows(open_view(study_paths))
    up = sort_rows(rows, metric="episode_length", descending=False)
    lengths = [r.metrics["episode_length"] for r in up]
    assert lengths == sorted(lengths)
    down = sort_rows(rows, metric="score")
    assert [r.score for r in down] == sorted((r.score for r in rows), reverse=True)
    assert all(math.isfinite(r.score) for r in down)


def test_fake_space_matches_the_csv_columns() -> None:
    assert fake_space().names == PARAMS
