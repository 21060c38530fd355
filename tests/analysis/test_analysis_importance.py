"""hyperparameter_importance.yaml: the navigation AutoML pipeline's shape, a driving parameter
ranks first, fallbacks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from fake_study import FakeTrial, lr_driven_trials, make_study

from automl import paths
from automl.analysis import importance
from automl.analysis.importance import write_importance

NAMES = {"learning_rate", "lambda_param", "learning_epochs", "policy_hidden_layer_sizes",
         "torques", "termination"}


@pytest.fixture
def log_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path))
    return tmp_path


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_learning_rate_drives_the_score_and_ranks_first(log_root: Path) -> None:
    trials = lr_driven_trials(30)
    study_paths = make_study("lr", trials)
    path = write_importance(study_paths)
    assert path == study_paths.importance_yaml
    report = load(path)
    ranking = report["importance_ranking"]
    assert [r["parameter"] for r in ranking][0] == "learning_rate"
    assert {r["parameter"] for r in ranking} == NAMES  # PPO, network and reward together
    assert sum(r["importance"] for r in ranking) == pytest.approx(1.0, abs=1e-3)
    assert [r["importance"] for r in ranking] == sorted((r["importance"] for r in ranking),
                                                        reverse=True)
    assert ranking[0]["importance"] > 0.5
    best = max(trials, key=lambda t: t.score or 0.0)
    by_name = {r["parameter"]: r for r in ranking}
    assert by_name["learning_rate"]["best_value"] == pytest.approx(best.params["learning_rate"],
                                                                   rel=1e-3)
    assert by_name["torques"]["best_value"] < 0  # signed native value
    assert by_name["policy_hidden_layer_sizes"]["best_value"] == \
        best.params["policy_hidden_layer_sizes"]
    assert {r["group"] for r in ranking} == {"ppo", "network", "reward"}
    # The copy for the latest study is the same file.
    assert paths.latest_importance_yaml().read_text() == path.read_text()


def test_a_study_without_a_result_never_replaces_the_shared_report(log_root: Path) -> None:
    done = write_importance(make_study("done", lr_driven_trials(12)))
    empty = write_importance(make_study("empty", []))
    assert load(empty)["chosen"] is None  # the empty study's own report is still written
    assert paths.latest_importance_yaml().read_text() == done.read_text()
    later = write_importance(make_study("later", lr_driven_trials(12, seed=3)))
    assert paths.latest_importance_yaml().read_text() == later.read_text()


def test_report_fields_and_top_configs(log_root: Path) -> None:
    trials = lr_driven_trials(12, seed=1)
    study_paths = make_study("fields", trials)
    report = load(write_importance(study_paths))
    assert report["evaluator"] == "PedAnovaImportanceEvaluator"
    assert report["completed_trials"] == 12
    assert report["study_name"] == "fields"
    assert report["scoring"] == {"weights": {"success_rate": 1.0, "termination_rate": -0.5},
                                 "min_episodes": 100}
    assert report["score_definition"] == ("1 * success_rate - 0.5 * termination_rate over the most "
                                          "recent 100 finished episodes (at least one per env)")
    assert "generated_at" in report and "note" not in report
    top = report["top_5_configs"]
    assert len(top) == 5
    scores = [c["score"] for c in top]
    assert scores == sorted(scores, reverse=True)
    ranked = sorted(range(12), key=lambda i: -(trials[i].score or 0.0))
    assert [c["config_id"] for c in top] == [f"trial_{i:04d}" for i in ranked[:5]]
    first = top[0]
    assert set(first) >= NAMES | {"config_id", "score", "episode_reward_mean", "success_rate"}
    assert first["episode_reward_mean"] == pytest.approx(10 * scores[0], rel=1e-3)


def test_fewer_than_two_trials_still_writes_a_file(log_root: Path) -> None:
    params = lr_driven_trials(2)[0].params
    study_paths = make_study("one", [FakeTrial(params, score=0.5),
                                     FakeTrial(params, score=None, state="fail", points=0)])
    report = load(write_importance(study_paths))
    assert report["importance_ranking"] == []
    assert "1 trial(s) with a finite score" in report["note"] and "at least 2" in report["note"]
    assert report["completed_trials"] == 1
    assert len(report["top_5_configs"]) == 1


def test_empty_study_writes_a_note(log_root: Path) -> None:
    report = load(write_importance(make_study("empty", [])))
    assert report["importance_ranking"] == [] and report["top_5_configs"] == []
    assert report["completed_trials"] == 0 and "no ranking" in report["note"]
    assert report["score_definition"].startswith("unknown")


def test_evaluator_failure_falls_back_to_a_note(log_root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    study_paths = make_study("fails", lr_driven_trials(6))

    def boom(*_args: object, **_kwargs: object) -> dict:
        raise ValueError("all values identical")

    monkeypatch.setattr(importance.optuna.importance, "get_param_importances", boom)
    report = load(write_importance(study_paths))
    assert report["importance_ranking"] == []
    assert "failed" in report["note"] and "all values identical" in report["note"]


def test_fanova_ranks_the_driving_parameter_first(log_root: Path) -> None:
    # scikit-learn is a dev dependency: the fANOVA path runs here, not its fallback.
    report = load(write_importance(make_study("fanova_real", lr_driven_trials(30)),
                                   evaluator="fanova"))
    assert report["evaluator"] == "FanovaImportanceEvaluator"
    assert "evaluator_note" not in report
    ranking = report["importance_ranking"]
    assert ranking[0]["parameter"] == "learning_rate" and ranking[0]["importance"] > 0.5
    assert {r["parameter"] for r in ranking} == NAMES
    assert sum(r["importance"] for r in ranking) == pytest.approx(1.0, abs=1e-3)


def test_fanova_without_sklearn_falls_back_to_ped_anova(log_root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    assert real("sklearn") is not None, "scikit-learn (a dev dependency) is missing"
    monkeypatch.setattr(importance.importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real(name, *a))
    report = load(write_importance(make_study("fanova", lr_driven_trials(8)), evaluator="fanova"))
    assert report["evaluator"] == "PedAnovaImportanceEvaluator"
    assert "scikit-learn is not installed" in report["evaluator_note"]
    assert report["importance_ranking"]


def test_round_sig() -> None:
    assert importance.round_sig(0.000123456) == 0.0001235
    assert importance.round_sig([1.23456, 2]) == [1.235, 2]
    assert importance.round_sig(float("nan")) is None
    assert importance.round_sig(-200) == -200


def test_a_small_study_ranks_on_pruned_trials_too_and_says_so(log_root: Path) -> None:
    # 3 completed and 6 pruned trials (pruned after 2 of 5 points): the ranking rests on the score
    # of all 9 at the second point, and warns that 9 trials are few.
    trials = lr_driven_trials(9, seed=4)
    scripted = [FakeTrial(t.params, score=t.score, state="complete" if i < 3 else "pruned",
                          points=5 if i < 3 else 2) for i, t in enumerate(trials)]
    report = load(write_importance(make_study("small", scripted)))
    assert report["trials_used"] == 9 and report["completed_trials"] == 3
    assert "completed and pruned trials (only 3 completed)" in report["basis"]
    assert report["importance_ranking"] and "rests on 9 trials" in report["warning"]


def test_a_study_of_enough_completed_trials_ranks_on_their_final_scores(log_root: Path) -> None:
    report = load(write_importance(make_study("enough", lr_driven_trials(12, seed=2))))
    assert report["trials_used"] == 12 and report["basis"] == "the final score of each completed trial"
    assert "warning" not in report
