"""One choice, read the same in every file: configurations (their seeds grouped), not trials, wherever
a user reads a ranking, and the starting configuration kept unless validation shows a gain.

The study is synthetic (fake_study.py); `--mode report` runs the same closing step as search and
stage (export, reports, state), so every file is written by the product's own code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import yaml
from fake_study import FakeTrial, make_study

from automl import cli, paths
from automl.analysis.validation import summarize_validation, write_validation_csv
from automl.paths import StudyPaths
from automl.search.study import records
from automl.search.study.storage import open_storage


@pytest.fixture
def log_root(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    monkeypatch.setattr("automl.analysis.reports.make_plots", lambda *a, **k: [])
    return tmp_path / "log"


def params(lr: float, termination: int = -200) -> dict:
    return {"learning_rate": lr, "lambda_param": 0.95, "learning_epochs": 4,
            "policy_hidden_layer_sizes": [64, 64], "torques": -1e-5, "termination": termination}


A, B, C = params(3e-4), params(1e-3), params(1e-4)


def confirmed_and_lucky_study(name: str) -> StudyPaths:
    """A confirmed on 2 seeds (0.5, 0.7: mean 0.6); B's one run scored 0.9, its confirmation never
    ran (the budget ended); C scored 0.4. The study confirms on 2 seeds."""
    trials = [FakeTrial(A, score=0.5), FakeTrial(A, score=0.7, extra_attrs={records.CONFIRMS: 0}),
              FakeTrial(B, score=0.9), FakeTrial(C, score=0.4)]
    sp = make_study(name, trials)
    study = optuna.load_study(study_name=name, storage=open_storage(sp, None))
    study.set_user_attr(records.STUDY_CONFIRM_SEEDS, 2)
    for t in study.get_trials():
        sp.trial_config(t.number).parent.mkdir(parents=True, exist_ok=True)
        sp.trial_config(t.number).write_text(json.dumps({
            "trial": t.number, "params": {}, "user_overrides": [], "base_overrides": [],
            "config_values": t.user_attrs[records.CONFIG_VALUES]}))
    return sp


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def every_file(sp: StudyPaths) -> dict[str, object]:
    """The configuration each output names as the study's choice."""
    importance = yaml.safe_load(sp.importance_yaml.read_text())
    best = yaml.safe_load(sp.best_config.read_text())
    state = yaml.safe_load(sp.state.read_text())
    return {"best_config.yaml": best["source"].get("config_id") or f"trial_{best['source']['trial']:04d}",
            "importance chosen": importance["chosen"]["config_id"],
            "importance top_5_configs[0]": importance["top_5_configs"][0]["config_id"],
            "configurations.csv": read_csv(sp.configurations_csv)[0]["config_id"],
            "automl_state.yaml": state["best"]["config_id"],
            "experiment_df.csv": read_csv(sp.experiment_df_csv)[0]["configuration"]}


def test_an_unconfirmed_lucky_run_never_ranks_above_the_confirmed_configuration(log_root):
    sp = confirmed_and_lucky_study("lucky_last")
    assert cli.main(["--mode", "report", "--study-name", "lucky_last"]) == 0
    assert set(every_file(sp).values()) == {"trial_0000"}, every_file(sp)
    rows = read_csv(sp.experiment_df_csv)
    # A's two seeds together, then B (0.9 on one seed), then C; B's 0.9 is not first.
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["configuration"] for r in rows] == ["trial_0000", "trial_0000", "trial_0002",
                                                  "trial_0003"]
    configs = read_csv(sp.configurations_csv)
    assert [(c["config_id"], c["confirmed"], c["search_seeds"]) for c in configs] == [
        ("trial_0000", "1", "2"), ("trial_0002", "0", "1"), ("trial_0003", "0", "1")]
    assert float(configs[0]["search_mean"]) == pytest.approx(0.6)
    top = yaml.safe_load(sp.importance_yaml.read_text())["top_5_configs"]
    assert [t["config_id"] for t in top] == ["trial_0000", "trial_0002", "trial_0003"]  # once each
    assert top[0]["seeds"] == 2 and top[0]["score"] == pytest.approx(0.6)
    ranking = yaml.safe_load(sp.importance_yaml.read_text())["importance_ranking"]
    by_name = {r["parameter"]: r["best_value"] for r in ranking}
    assert not ranking or by_name["learning_rate"] == pytest.approx(3e-4)  # A's, not B's 1e-3


def validate(sp: StudyPaths, scores: dict[tuple[str, int], list[float]]) -> None:
    """validation.csv as a stage writes it, with its decision (one look at every seed): (config_id,
    source trial) -> scores on seeds 1000..."""
    from automl.stages.decision import decided
    from automl.stages.selection import RacePlan

    rows = [(cid, trial, 1000 + k, s) for k in range(3) for (cid, trial), values in scores.items()
            for s in values[k:k + 1]]
    plan = RacePlan(candidates=len(scores) - 1, first=3, most=3)
    write_validation_csv(sp, rows, decided(rows, plan, looked_at=3, search_scores={0: 0.6, 2: 0.9}))


def test_validation_picks_a_configuration_only_when_it_beats_the_start_on_the_same_seeds(log_root):
    sp = confirmed_and_lucky_study("beaten")
    # Trial 3 (C) was the starting configuration; B beats it on every seed, A on none.
    validate(sp, {("trial_0000", 0): [0.50, 0.52, 0.48], ("trial_0002", 2): [0.80, 0.75, 0.85],
                  ("baseline", 3): [0.55, 0.50, 0.60]})
    assert cli.main(["--mode", "report", "--study-name", "beaten"]) == 0
    assert set(every_file(sp).values()) == {"trial_0002"}, every_file(sp)
    best = sp.best_config.read_text()
    assert "over the starting configuration on 3 fresh seeds" in best
    source = yaml.safe_load(best)["source"]
    assert source["improvement"] == pytest.approx(0.25)
    assert source["improvement_ci_low"] > 0
    configs = read_csv(sp.configurations_csv)
    assert [c["config_id"] for c in configs] == ["trial_0002", "baseline", "trial_0000"]
    assert configs[1]["trials"] == "3"  # the start is the search's trial 3, listed once
    state = yaml.safe_load(sp.state.read_text())
    assert state["chosen"]["beats_starting_configuration"] is True


def test_a_validation_csv_from_before_recorded_decisions_is_decided_when_reported(log_root):
    sp = confirmed_and_lucky_study("legacy")
    rows = [(cid, trial, 1000 + k, s) for k in range(3) for cid, trial, values in (
        ("trial_0000", 0, [0.50, 0.52, 0.48]), ("trial_0002", 2, [0.80, 0.75, 0.85]),
        ("baseline", 3, [0.55, 0.50, 0.60])) for s in values[k:k + 1]]
    write_validation_csv(sp, rows, summarize_validation(rows))  # as written before decisions
    assert {r["decision"] for r in read_csv(sp.validation_csv)} == {""}
    assert cli.main(["--mode", "report", "--study-name", "legacy"]) == 0
    decisions = {r["config_id"]: r["decision"] for r in read_csv(sp.validation_csv)}
    assert decisions == {"trial_0002": "chosen", "baseline": "start", "trial_0000": "dropped"}
    assert len(read_csv(sp.validation_csv)) == 3  # decided, no row dropped
    assert set(every_file(sp).values()) == {"trial_0002"}
    state = yaml.safe_load(sp.state.read_text())
    assert any("predates recorded decisions" in note for note in state["stage_notes"])


def test_nothing_beat_the_start_so_it_is_exported_and_every_file_says_so(log_root, capsys):
    sp = confirmed_and_lucky_study("kept")
    # A is higher on average (0.62 vs 0.55) but loses to the start on one seed of three: its
    # paired interval reaches below 0, so the start is kept. No search trial ran the start.
    start = {"config_id": "baseline", "source_trial": -1, "params": {},
             "config_values": {"train.seed": 42, "ppo.learning_rate": 5e-5, "ppo.lambda": 0.95,
                               "ppo.learning_epochs": 4,
                               "network.policy_hidden_layer_sizes": [64, 64],
                               "reward.scales.torques": -1e-5, "reward.scales.termination": -200},
             "base_overrides": [], "user_overrides": []}
    sp.config_file("baseline").write_text(json.dumps(start))
    validate(sp, {("trial_0000", 0): [0.70, 0.66, 0.50], ("baseline", -1): [0.55, 0.50, 0.60]})
    assert cli.main(["--mode", "report", "--study-name", "kept"]) == 0
    assert set(every_file(sp).values()) == {"baseline"}
    text = sp.best_config.read_text()
    assert "nothing of the search beat it" in text and "nothing beat the starting configuration" in text
    assert yaml.safe_load(text)["ppo"]["learning_rate"] == 5e-5
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("automl: result: baseline chosen: nothing beat the starting "
                              "configuration on 3 fresh")
    assert "trial_0000: +0.07" in out[-1]
    rows = read_csv(sp.experiment_df_csv)
    # The start ran no search trial: its three validation runs come first, then the search's.
    assert [(r["trial"], r["state"], r["stop_reason"], r["configuration"]) for r in rows[:4]] == [
        ("", "validation", "validation seed 1000", "baseline"),
        ("", "validation", "validation seed 1001", "baseline"),
        ("", "validation", "validation seed 1002", "baseline"), ("0", "complete", "completed", "trial_0000")]
    assert [float(r["score"]) for r in rows[:3]] == [0.55, 0.50, 0.60]
    assert rows[0]["learning_rate"] == "5e-05" and rows[0]["config_rank"] == "1"
    assert read_csv(sp.configurations_csv)[0]["trials"] == ""
    importance = yaml.safe_load(sp.importance_yaml.read_text())
    assert importance["chosen"]["beats_starting_configuration"] is False


def test_the_export_holds_what_trained_the_command_line_over_the_space():
    from automl.analysis.export import command_line_values

    assert command_line_values(["env=navigation", "env.num_envs=256", "++reward.scales.x=2.5",
                                "train.frames=600000", "network.policy_hidden_layer_sizes=[64,64]",
                                "~ppo.kl_threshold"]) == {
        "env.num_envs": 256, "reward.scales.x": 2.5, "train.frames": 600000,
        "network.policy_hidden_layer_sizes": [64, 64]}


def test_a_top_configuration_with_the_starting_values_is_the_baseline_and_runs_second(
        log_root, monkeypatch):
    from automl.stages import candidates as validate
    from automl.stages.context import StageLog, Stages

    sp = confirmed_and_lucky_study("dupes")
    study = optuna.load_study(study_name="dupes", storage=open_storage(sp, None))
    trials = {t.number: t for t in study.get_trials()}
    start = {"source_trial": 0, "config_values": trials[0].user_attrs[records.CONFIG_VALUES],
             "base_overrides": ["ppo.learning_rate=0.0003"]}
    monkeypatch.setattr(validate, "starting_configuration", lambda *a: start)
    twin = optuna.trial.create_trial(params=trials[0].params, distributions=trials[0].distributions,
                                     value=0.55, user_attrs=dict(trials[0].user_attrs))
    top = [validate.Candidate(f"trial_{n:04d}", n, [], t) for n, t in
           ((2, trials[2]), (3, trials[3]), (0, trials[0]), (4, twin))]
    st = Stages(paths=sp, study=study, log=StageLog(), resources=None)  # type: ignore[arg-type]
    chosen = validate.with_baseline(st, top)
    # Trials 0 and 4 hold the start's values: one baseline, second, never run twice.
    assert [c.config_id for c in chosen] == ["trial_0002", "baseline", "trial_0003"]
    assert chosen[1].source_trial == 0 and chosen[1].overrides == ["ppo.learning_rate=0.0003"]
    assert json.loads(sp.config_file("baseline").read_text())["source_trial"] == 0
