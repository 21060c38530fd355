"""The search orchestrator over the stand-in worker: pruning, stoppers, asynchronous slots,
constraints, priors, grid search and the files a study leaves behind."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from optuna.trial import TrialState
from search_harness import (
    SPACES,
    header,
    read_csv,
    reason_of,
    rows,
    run_search,
    search_argv,
    skip_reports,
    trials,
    write_behaviour,
)

from automl import paths, reasons
from automl.paths import StudyPaths
from automl.search.study import records
from automl.search.study.confirm import configurations

TARGET_LR = 3e-4
LR_SCORE = {"param": "ppo.learning_rate", "target": TARGET_LR, "log": True, "width": 0.5}
"""Score 1 at the target learning rate, about 0.01 two decades away."""


@pytest.fixture(autouse=True)
def log_root(tmp_path, monkeypatch):
    root = tmp_path / "log"
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(root))
    skip_reports(monkeypatch)
    return root


def by_number(study_paths: StudyPaths) -> dict[int, dict[str, str]]:
    return {int(r["trial"]): r for r in rows(study_paths)}


def test_hyperband_prunes_bad_trials_at_its_rungs_before_they_finish(tmp_path):
    # End to end with real processes; tests/search/optuna_loop/test_pruning.py checks every decision against the
    # pruner. 7 trials: one halving bracket, rungs at 20k, 40k and 80k frames: a trial pruned at
    # the last rung has 20k frames (0.8 s) left to be stopped in before it finishes by itself.
    # --confirm-seeds 1: which of the first two trials ends first decides which is confirmed, and
    # two confirmations leave too few distinct completed trials for the rung gate to open.
    behaviour = write_behaviour(tmp_path, "lr", seconds_per_point=0.4, score=LR_SCORE)
    argv = search_argv(study="prune", space="lr_prior.yaml", behaviour=behaviour, hp_trials=7,
                       flags=["--search-method", "random", "--seed", "3",
                              "--grace-frames", "20000", "--confirm-seeds", "1"])
    assert run_search(argv) == 0
    sp = StudyPaths.for_study("prune")
    table = rows(sp)
    pruned = [r for r in table if r["stop_reason"] == reasons.PRUNED]
    completed = [r for r in table if r["stop_reason"] == reasons.COMPLETED]
    assert pruned, f"nothing was pruned: {[(r['trial'], r['score']) for r in table]}"
    assert {int(r["frames"]) for r in completed} == {100_000}
    assert all(int(r["frames"]) < 100_000 for r in pruned)
    study_trials = {t.number: t for t in trials(sp)}
    assert study_trials[0].state == TrialState.COMPLETE  # the prior, at the target rate
    for r in pruned:
        t = study_trials[int(r["trial"])]
        assert t.state == TrialState.PRUNED
        # Decided at a rung (never before the grace frames), and nothing reported after it.
        assert t.last_step in (20_000, 40_000, 80_000), t.intermediate_values
    assert any(abs(math.log10(float(r["learning_rate"]) / TARGET_LR)) > 1 for r in pruned)
    assert {study_trials[int(r["trial"])].state for r in completed} == {TrialState.COMPLETE}


def test_plateau_and_drop_stoppers_end_flat_and_falling_curves(tmp_path):
    # rollouts 24: plateau curve 0.4 0.8 1 1 1 1 ...; rollouts 48: drop curve 0.2 0.4 .. 1 0 ...
    # With patience 3 and drop 0.3 both fire at the 6th point (60k frames) of 10.
    # 0.1 s per point: the verdict at 60k has 0.4 s to reach the trial before it would finish.
    behaviour = write_behaviour(tmp_path, "curves", seconds_per_point=0.1, curve="plateau",
                                rules=[{"when": {"ppo.rollouts": 48}, "curve": "drop"}])
    argv = search_argv(study="stoppers", space="two_by_two.yaml", behaviour=behaviour,
                       hp_trials=4, flags=["--pruner", "none", "--search-method", "grid"],
                       overrides=["scoring.plateau_patience=3", "scoring.drop=0.3"])
    assert run_search(argv) == 0
    sp = StudyPaths.for_study("stoppers")
    expected = {"24": reasons.PLATEAU, "48": reasons.DROP}
    table = rows(sp)
    assert len(table) == 4
    for r in table:
        assert r["stop_reason"] == expected[r["rollouts"]]
    for t in trials(sp):
        assert t.state == TrialState.COMPLETE  # a stopped trial keeps its score
        assert reason_of(t) == expected[str(t.params["rollouts"])]
        assert t.last_step == 60_000, "decided at the 6th point, and nothing reported after"
        assert t.value == pytest.approx(1.0 if reason_of(t) == reasons.PLATEAU else 0.0)
        assert t.user_attrs[records.FRAMES] >= 60_000


def test_slots_are_asynchronous_fast_trials_pass_a_slow_one(tmp_path, log_root):
    # The first trial (the prior, lr = 3e-4 exactly) cannot finish before trial 2 has: its last
    # point waits for trial 2's summary. Slots that waited for their slowest trial (batches of
    # two) would never start trial 2, and the search would stall until its budget cut both.
    sp = StudyPaths(log_root / "automl" / "slots")
    behaviour = write_behaviour(tmp_path, "slow_first", seconds_per_point=0.02, rules=[
        {"when": {"ppo.learning_rate": TARGET_LR},
         "hold_until": str(sp.trial_run(2).summary)}])
    argv = search_argv(study="slots", space="lr_prior.yaml", behaviour=behaviour, hp_trials=4,
                       workers=2, flags=["--pruner", "none", "--search-method", "random"])
    assert run_search(argv) == 0
    order = [int(r["trial"]) for r in rows(sp)]
    assert sorted(order) == [0, 1, 2, 3]
    assert {r["stop_reason"] for r in rows(sp)} == {reasons.COMPLETED}
    # Trials 1 and 2 ran one after the other in the second slot while trial 0 held the first.
    assert order.index(1) < order.index(0), f"trials ended in the order {order}"
    launched_2 = (sp.trial_dir(2) / "config.yaml").stat().st_mtime
    assert launched_2 <= sp.trial_run(0).summary.stat().st_mtime


def test_constraint_rejections_are_recorded_and_not_counted(tmp_path):
    behaviour = write_behaviour(tmp_path, "fast", seconds_per_point=0.02)
    argv = search_argv(study="constrained", space="constrained.yaml", behaviour=behaviour,
                       hp_trials=2, flags=["--search-method", "random", "--seed", "0"])
    assert run_search(argv) == 0
    sp = StudyPaths.for_study("constrained")
    table = rows(sp)
    rejected = [r for r in table if r["stop_reason"] == reasons.CONSTRAINT]
    trained = [r for r in table if r["stop_reason"] != reasons.CONSTRAINT]
    assert rejected, "the sampler seed should give an excluded learning rate"
    assert len(trained) == 2
    assert all(float(r["learning_rate"]) > 5e-4 for r in rejected)
    assert all(float(r["learning_rate"]) < 5e-4 for r in trained)
    assert all("learning_rate > 5e-4" in r["error_tail"] and r["frames"] == "0" for r in rejected)
    for t in trials(sp):
        if reason_of(t) == reasons.CONSTRAINT:
            assert t.state == TrialState.PRUNED
            assert not sp.trial_dir(t.number).exists()  # never launched
            config = json.loads(sp.trial_config(t.number).read_text())  # but its config is kept
            assert config["params"]["learning_rate"] > 5e-4 and config["overrides"] == []
    state = yaml.safe_load(sp.state.read_text())
    assert state["trained"] == 2
    assert state["finished"][reasons.CONSTRAINT] == len(rejected)


def test_grid_search_visits_every_combination_once(tmp_path, capsys):
    # One slow combination keeps a slot busy while the other frees up: a grid with every
    # point started must not start a copy of a running one.
    behaviour = write_behaviour(tmp_path, "grid", seconds_per_point=0.02, rules=[
        {"when": {"ppo.learning_rate": 1e-4, "ppo.rollouts": 48}, "seconds_per_point": 0.3}])
    argv = search_argv(study="grid", space="two_by_two.yaml", behaviour=behaviour, hp_trials=10,
                       flags=["--search-method", "grid", "--pruner", "none"])
    assert run_search(argv) == 0
    sp = StudyPaths.for_study("grid")
    combos = sorted((float(r["learning_rate"]), int(r["rollouts"])) for r in rows(sp))
    assert combos == [(1e-4, 24), (1e-4, 48), (3e-4, 24), (3e-4, 48)]
    assert len(trials(sp)) == 4
    assert "search ended (grid)" in capsys.readouterr().out



def test_grid_search_with_priors_visits_every_combination_once(tmp_path):
    behaviour = write_behaviour(tmp_path, "fast", seconds_per_point=0.02)
    argv = search_argv(study="grid_priors", space="two_by_two_priors.yaml", behaviour=behaviour,
                       hp_trials=4, flags=["--search-method", "grid", "--pruner", "none"])
    assert run_search(argv) == 0
    combos = sorted((float(r["learning_rate"]), int(r["rollouts"]))
                    for r in rows(StudyPaths.for_study("grid_priors")))
    assert combos == [(1e-4, 24), (1e-4, 48), (3e-4, 24), (3e-4, 48)]

# ------------------------------------------------------------------------------------- outputs
PRIORS = {"learning_rate": 3e-4, "rollouts": 48, "learning_epochs": 6,
          "policy_hidden_layer_sizes": [128, 64], "torques": -1e-5}


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A small finished study over tests/spaces/all_priors.yaml, with --target-score 0.5."""
    tmp = tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp / "log"))
        skip_reports(monkeypatch)
        behaviour = write_behaviour(tmp, "lr", seconds_per_point=0.02, score=LR_SCORE)
        argv = search_argv(study="outputs", space="all_priors.yaml", behaviour=behaviour,
                           hp_trials=3, flags=["--search-method", "random", "--seed", "1",
                                               "--target-score", "0.5"])
        assert run_search(argv) == 0
        return StudyPaths.for_study("outputs")


def test_the_first_trial_is_the_all_priors_configuration(finished_study):
    first = json.loads(finished_study.trial_config(0).read_text())
    assert first["params"] == PRIORS
    assert first["config_values"] == {
        "train.seed": 7, "ppo.learning_rate": 3e-4, "ppo.rollouts": 48, "ppo.learning_epochs": 6,
        "network.policy_hidden_layer_sizes": [128, 64], "reward.scales.torques": -1e-5}
    assert "++reward.scales.torques=-1e-05" in first["overrides"]
    assert "network.policy_hidden_layer_sizes=[128,64]" in first["overrides"]
    trial0 = trials(finished_study)[0]
    assert trial0.user_attrs.get("prior") is True
    assert finished_study.trial_dir(0).name == "trial_0000"


def test_every_trial_leaves_its_config_run_folder_and_one_row(finished_study):
    study_trials = trials(finished_study)
    numbers = sorted(t.number for t in study_trials)
    assert numbers == [0, 1, 2]
    configs = sorted(p.name for p in finished_study.configs_dir.glob("*.json"))
    assert configs == [f"trial_{n:04d}.json" for n in numbers]
    for n in numbers:
        config = json.loads(finished_study.trial_config(n).read_text())
        assert config["trial"] == n
        assert f"run_dir={finished_study.trial_dir(n)}" in config["command"]
        assert (finished_study.trial_dir(n) / "summary.json").exists()
    assert sorted(int(r["trial"]) for r in rows(finished_study)) == numbers
    for t in study_trials:
        assert t.state.is_finished()
        assert reason_of(t) in reasons.ALL
        assert t.user_attrs[records.RUN_DIR] == f"trials/trial_{t.number:04d}"


def test_trial_final_csv_columns(finished_study):
    assert header(finished_study.trial_final_csv) == [
        "trial", "frames", "score", "stop_reason", "wall_s", "learning_rate", "rollouts",
        "learning_epochs", "policy_hidden_layer_sizes", "torques", "error_tail"]
    first = by_number(finished_study)[0]
    assert first["stop_reason"] == reasons.COMPLETED
    assert float(first["score"]) == pytest.approx(1.0)
    assert json.loads(first["policy_hidden_layer_sizes"]) == [128, 64]
    assert float(first["torques"]) == -1e-5


def test_state_yaml_says_the_search_finished_and_names_the_best(finished_study):
    state = yaml.safe_load(finished_study.state.read_text())
    assert state["phase"] == "search finished"
    assert state["study"] == "outputs"
    assert state["running"] == []
    assert sum(state["finished"].values()) == 3
    assert state["trained"] == state["hp_trials"] == 3
    # The best is the first configuration of the ranking (confirmed on both seeds first): the
    # all-priors trial 0 (the target rate) when it finished first and was confirmed, else the one
    # that was (a single run, however high, never ranks above a confirmed configuration).
    best = configurations(trials(finished_study), 2)[0]
    assert best.confirmed
    assert state["best"]["trial"] == best.number
    assert state["best"]["score"] == pytest.approx(best.mean)
    assert state["best"]["seeds"] == 2
    if best.number == 0:
        assert state["best"]["params"] == PRIORS
    assert 0 < state["budget"]["used_s"] < state["budget"]["total_s"] == 180.0


def test_meta_yaml_and_search_space_copy(finished_study):
    meta = yaml.safe_load(finished_study.meta.read_text())
    assert meta["study_name"] == "outputs"
    [session] = meta["sessions"]
    assert session["mode"] == "search"
    assert session["search_method"] == "random"
    assert session["hp_trials"] == 3
    assert session["slots"] == 2
    assert session["frames_per_trial"] == 100_000
    assert "--target-score 0.5" in session["command_line"]
    copy = finished_study.search_space.read_bytes()
    assert copy == (SPACES / "all_priors.yaml").read_bytes()


def test_threshold_hits_name_each_trial_once_at_its_first_crossing(finished_study):
    assert header(finished_study.threshold_hits_csv) == [
        "trial", "frames", "score", "elapsed_s", "time"]
    hits = {}
    for r in read_csv(finished_study.threshold_hits_csv):
        assert r["trial"] not in hits, "a trial is logged once"
        hits[r["trial"]] = r
    # Trial 0 scores 1.0 x frames / 100k: 0.5 is first reached at 50k frames.
    assert hits["0"]["frames"] == "50000"
    assert float(hits["0"]["score"]) == pytest.approx(0.5)
    for number, r in by_number(finished_study).items():
        reached = r["score"] and float(r["score"]) >= 0.5
        assert (str(number) in hits) == bool(reached)
