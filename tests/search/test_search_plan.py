"""The search sized to the study: the pruning plan, patient pruning, per-configuration budget
estimates, how much validation fits, equal seeds, resume that keeps the study's overrides, and
constraints on the effective configuration."""

from __future__ import annotations

import optuna
import pytest
import yaml
from search_harness import SPACES, rows, run_search, search_argv, skip_reports, trials, write_behaviour

from automl import paths, reasons
from automl.errors import EXIT_BAD_INPUT, ConfigError
from automl.paths import StudyPaths
from automl.search.optuna_loop.pruning import (
    PatientHyperband,
    PatientPruner,
    RungGate,
    expected_frames,
    first_rung,
    make_pruner,
    plan_pruning,
    rung_correlation,
    size_to_budget,
)
from automl.search.optuna_loop.sizing import PlanSizing
from automl.search.space import parse_space
from automl.search.study import records
from automl.search.study.budget import fit_validation, makespan, median_rate, seconds_for
from automl.search.study.resume import resumed_overrides

optuna.logging.set_verbosity(optuna.logging.WARNING)
NAV = {"frames": 2_000_000, "eval_frequency": 50_000, "grace": 200_000}


@pytest.fixture(autouse=True)
def log_root(tmp_path, monkeypatch):
    root = tmp_path / "log"
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(root))
    skip_reports(monkeypatch)
    return root


# ------------------------------------------------------------------------------------------ plan
@pytest.mark.parametrize("trials, envs, algorithm, brackets, rungs, startup", [
    # 8 trials: one halving bracket, after one 400-step time limit of 2048 envs (850k); one rung,
    # the last, so that about 4 trials run to the end.
    (8, 2048, "asha", 1, (1_700_000,), 3),
    (8, 256, "asha", 1, (1_600_000,), 3),
    # 20 trials: log2(20 / 4) -> 2 rungs, the latest two.
    (20, 256, "asha", 1, (800_000, 1_600_000), 6),
    # 30 trials: Hyperband, but at most one bracket per 15 trials: 2 brackets.
    (30, 256, "hyperband", 2, (600_000, 1_800_000), 5),
    # 200 trials: Hyperband with 3 brackets, start-up per bracket.
    (200, 256, "hyperband", 3, (200_000, 600_000, 1_800_000), 10),
])
def test_pruning_plan_for_the_number_of_trials(trials, envs, algorithm, brackets, rungs, startup):
    plan = plan_pruning("hyperband", trials=trials, episode_frames=400 * envs, **NAV)
    assert (plan.algorithm, plan.brackets, plan.rungs, plan.startup_trials) == (
        algorithm, brackets, rungs, startup)
    assert plan.min_trials_at_rung == plan.reduction_factor
    pruner = make_pruner(plan)
    assert isinstance(pruner, PatientHyperband if algorithm == "hyperband" else PatientPruner)
    # Optuna's TPE samples within a Hyperband bracket only if the pruner is a HyperbandPruner.
    assert isinstance(pruner, optuna.pruners.HyperbandPruner) == (algorithm == "hyperband")


def test_first_rung_waits_for_grace_an_episode_and_an_evaluation_point():
    assert first_rung(grace=20_000, eval_frequency=10_000, episode_frames=6_400) == 20_000
    assert first_rung(grace=20_000, eval_frequency=10_000, episode_frames=25_600) == 30_000
    assert first_rung(grace=1, eval_frequency=10_000, episode_frames=None) == 10_000


def test_no_pruning_when_the_first_rung_is_not_below_the_trial():
    plan = plan_pruning("hyperband", trials=8, frames=500_000, eval_frequency=50_000, grace=50_000,
                        episode_frames=400 * 2048)
    assert plan.algorithm == "none" and "not below train.frames" in plan.note
    assert isinstance(make_pruner(plan), optuna.pruners.NopPruner)


def report(study: optuna.Study, pruner: optuna.pruners.BasePruner, curve: dict[int, float]) -> int | None:
    """Run one scripted trial through the pruner; the step it was pruned at, or None."""
    trial = study.ask()
    for step, value in sorted(curve.items()):
        trial.report(value, step)
        if pruner.prune(study, study._storage.get_trial(trial._trial_id)):  # noqa: SLF001
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return step
    study.tell(trial, value)
    return None


def test_patient_pruner_never_prunes_at_a_rung_fewer_trials_reached():
    # Optuna's successive halving alone prunes the second trial for trailing the first.
    plain = optuna.create_study(direction="maximize")
    sha = optuna.pruners.SuccessiveHalvingPruner(min_resource=10, reduction_factor=2,
                                                 min_early_stopping_rate=0)
    assert report(plain, sha, {10: 1.0, 20: 1.0, 40: 1.0}) is None
    assert report(plain, sha, {10: 0.9, 20: 0.9, 40: 0.9}) == 10
    # Patient, with 3 needed: the second trial continues; the third, worst of three, is pruned at
    # the first rung; a later good one runs through; none is pruned before step 10.
    study = optuna.create_study(direction="maximize")
    patient = PatientPruner(optuna.pruners.SuccessiveHalvingPruner(
        min_resource=10, reduction_factor=2, min_early_stopping_rate=0), min_trials=3,
        gate=RungGate(min_pairs=0))  # patience alone (the gate: next test)
    assert report(study, patient, {5: 0.0, 10: 1.0, 20: 1.0, 40: 1.0}) is None
    assert report(study, patient, {5: 0.0, 10: 0.9, 20: 0.9, 40: 0.9}) is None
    assert report(study, patient, {5: 0.0, 10: 0.1, 20: 0.1, 40: 0.1}) == 10
    assert report(study, patient, {5: 0.0, 10: 2.0, 20: 2.0, 40: 2.0}) is None


def halving(gate: RungGate) -> PatientPruner:
    return PatientPruner(optuna.pruners.SuccessiveHalvingPruner(
        min_resource=10, reduction_factor=2, min_early_stopping_rate=0), min_trials=2, gate=gate)


@pytest.mark.parametrize("predictive, pruned", [(True, 10), (False, None)])
def test_a_rung_prunes_only_once_its_values_predict_the_final_scores(predictive, pruned):
    study = optuna.create_study(direction="maximize")
    pruner = halving(RungGate(min_pairs=6, min_correlation=0.5))
    # Six trials run to the end (a rung never prunes before six completed trials show it predicts);
    # their values at step 10 rank their final scores the same way, or the opposite way.
    for final in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        at_rung = final if predictive else 7.0 - final
        assert report(study, pruner, {10: at_rung, 20: final}) is None
    assert rung_correlation(study, 10) == (pytest.approx(1.0 if predictive else -1.0), 6)
    # A trial worse than all of them at step 10: pruned there only where step 10 predicts.
    assert report(study, pruner, {10: -1.0, 20: 10.0}) == pruned


def test_a_rung_waits_for_enough_completed_trials():
    study = optuna.create_study(direction="maximize")
    pruner = halving(RungGate(min_pairs=6, min_correlation=0.5))
    for final in (1.0, 2.0, 3.0, 4.0, 5.0):
        assert report(study, pruner, {10: final, 20: final}) is None
    assert rung_correlation(study, 10) == (pytest.approx(1.0), 5)
    assert report(study, pruner, {10: -1.0, 20: -1.0}) is None  # 5 of 6: it runs on
    assert report(study, pruner, {10: -2.0, 20: -2.0}) == 10  # 6 completed now


def test_a_search_prunes_only_at_or_after_the_first_rung(tmp_path):
    # Rising curves of different heights; first rung = grace 30k (16 envs x 400 steps = 6,400).
    behaviour = write_behaviour(tmp_path, "lr", seconds_per_point=0.05,
                                score={"param": "ppo.learning_rate", "target": 3e-4, "log": True,
                                       "width": 0.5})
    # 12 trials: the rung prunes nothing before 6 completed trials show that it predicts.
    argv = search_argv(study="rungs", space="lr_prior.yaml", behaviour=behaviour, hp_trials=12,
                       flags=["--search-method", "random", "--seed", "5", "--grace-frames", "30000"])
    assert run_search(argv) == 0
    sp = StudyPaths.for_study("rungs")
    meta = yaml.safe_load(sp.meta.read_text())
    plan = meta["sessions"][0]["pruning"]
    # Rungs from the first at 30k: 30k, 60k; 12 trials keep the last one only.
    assert plan["algorithm"] == "asha" and plan["rungs"] == [60_000]
    pruned = [t for t in trials(sp) if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, [t.value for t in trials(sp)]
    assert all(t.last_step == 60_000 for t in pruned), [t.last_step for t in pruned]


def test_pruned_trials_count_as_shorter():
    plan = plan_pruning("hyperband", trials=20, frames=100_000, eval_frequency=10_000,
                        grace=10_000, episode_frames=None)
    assert plan.rungs == (40_000, 80_000) and plan.reduction_factor == 2
    # Half stop at 40k, a quarter at 80k, a quarter run to 100k.
    assert expected_frames(plan) == 0.5 * 40_000 + 0.25 * 80_000 + 0.25 * 100_000
    none = plan_pruning("none", trials=20, frames=100_000, eval_frequency=10_000, grace=10_000,
                        episode_frames=None)
    assert expected_frames(none) == 100_000


def test_the_budget_sizes_the_plan_when_it_holds_fewer_trials():
    def plan_for(trials: int):
        return plan_pruning("hyperband", trials=trials, episode_frames=400 * 256, **NAV)

    # 1 h, 2 slots, 300 s a full trial: 24 full-length trials. Sized to 24 (ASHA, rungs 0.8M and
    # 1.6M), a trial averages 0.5 x 0.8M + 0.25 x 1.6M + 0.25 x 2M = 1.3M frames: 36 trials fit.
    plan, fit = size_to_budget(plan_for, hp_trials=10_000, budget_s=3600, slots=2, trial_s=300)
    assert expected_frames(plan_for(24)) == 1_300_000
    assert fit == 36 and plan == plan_for(36) and plan.algorithm == "hyperband"
    # Half an hour: 12 full trials; one rung at 1.6M, 1.8M frames a trial: 13 trials, ASHA.
    plan, fit = size_to_budget(plan_for, hp_trials=10_000, budget_s=1800, slots=2, trial_s=300)
    assert fit == 13 and plan == plan_for(13) and plan.algorithm == "asha"
    # A larger budget: Hyperband's brackets; --hp-trials smaller than the budget: it sizes the plan.
    assert size_to_budget(plan_for, hp_trials=10_000, budget_s=36_000, slots=2,
                          trial_s=300)[0].algorithm == "hyperband"
    assert size_to_budget(plan_for, hp_trials=8, budget_s=36_000, slots=2,
                          trial_s=300)[0] == plan_for(8)


def test_a_search_settles_its_plan_on_the_budget_before_any_pruning(tmp_path, capsys):
    behaviour = write_behaviour(tmp_path, "lr", seconds_per_point=0.05,
                                score={"param": "ppo.learning_rate", "target": 3e-4, "log": True,
                                       "width": 0.5})
    argv = search_argv(study="sized", space="lr_prior.yaml", behaviour=behaviour, hp_trials=10_000,
                       budget_hours=0.003, flags=["--seed", "3"])
    assert run_search(argv) == 0
    sp = StudyPaths.for_study("sized")
    session = yaml.safe_load(sp.meta.read_text())["sessions"][0]
    plan = session["pruning"]
    # Sized to what ~11 s on 2 slots holds, not to 10,000 trials (Hyperband of 3+ brackets).
    assert session["pruning_sized_by"].startswith("budget; the budget holds about")
    assert plan["trials"] < 200 and plan["trials"] == optuna.load_study(
        study_name="sized", storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(sp.journal)))
    ).user_attrs["pruning_plan_inputs"]["trials"]
    assert "fewer than --hp-trials 10000" in capsys.readouterr().out
    pruned = [t for t in trials(sp) if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.last_step in plan["rungs"] for t in pruned), [t.last_step for t in pruned]
    # A resumed study keeps the settled plan.
    again = search_argv(study="sized", space=None, behaviour=behaviour, hp_trials=10_000,
                        budget_hours=0.001, flags=["--resume"])
    assert run_search(again) == 0
    resumed = yaml.safe_load(sp.meta.read_text())["sessions"][1]
    assert resumed["pruning"]["trials"] == plan["trials"]
    assert resumed["pruning_sized_by"] == "an earlier session"


def test_a_study_stopped_before_its_plan_settled_settles_it_when_resumed(tmp_path, capsys):
    slow = write_behaviour(tmp_path, "slow", seconds_per_point=5.0)
    argv = search_argv(study="unsettled", space="lr_prior.yaml", behaviour=slow, hp_trials=10_000,
                       budget_hours=0.0008, flags=["--seed", "3"])
    assert run_search(argv) == 0  # the budget ends before any trial reported a point
    sp = StudyPaths.for_study("unsettled")
    first = yaml.safe_load(sp.meta.read_text())["sessions"][0]
    assert first["pruning_sized_by"] == "--hp-trials" and first["pruning"]["trials"] == 10_000
    fast = write_behaviour(tmp_path, "fast", seconds_per_point=0.05)
    again = search_argv(study="unsettled", space=None, behaviour=fast, hp_trials=10_000,
                        budget_hours=0.004, flags=["--resume"])
    assert run_search(again) == 0
    resumed = yaml.safe_load(sp.meta.read_text())["sessions"][1]
    assert resumed["pruning_sized_by"].startswith("budget; the budget holds about")
    assert resumed["pruning"]["trials"] < 200
    assert "fewer than --hp-trials 10000" in capsys.readouterr().out
    # Settled now: a third session keeps that plan (a short one: the plan is settled at its start).
    assert run_search([*again[:again.index("--budget-hours") + 1], "0.001",
                       *again[again.index("--budget-hours") + 2:]]) == 0
    third = yaml.safe_load(sp.meta.read_text())["sessions"][2]
    assert third["pruning"] == resumed["pruning"] and third["pruning_sized_by"] == "an earlier session"


def test_a_plan_that_pruned_a_trial_stays_as_it_is(tmp_path):
    def plan_for(trials: int):
        return plan_pruning("hyperband", trials=trials, episode_frames=None, **NAV)

    study = optuna.create_study(direction="maximize")
    for reason in (reasons.BUDGET, reasons.PRUNED):  # a trial cut by the budget decided nothing
        trial = study.ask()
        trial.report(0.1, 200_000)
        trial.set_user_attr(records.STOP_REASON, reason)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    sizing = PlanSizing(plan=plan_for(10_000), plan_for=plan_for, hp_trials=10_000, budget_s=600,
                        slots=2, grace_frames=200_000, study_paths=StudyPaths.for_study("kept"))
    line = sizing.settle(study, trial_s=60.0)  # 20 trials fit: a much smaller plan, were it free
    assert sizing.plan == plan_for(10_000) and sizing.settled
    assert line is not None and "trial 1 was pruned under it" in line
    assert study.user_attrs["pruning_plan_inputs"] == {"trials": 10_000, "grace_frames": 200_000,
                                                       "settled": True}


# ---------------------------------------------------------------------------------------- budget
def test_estimates_come_from_the_configurations_own_rate():
    assert seconds_for(1_000_000, trained_frames=250_000, wall_s=50.0) == 200.0
    assert seconds_for(1_000, trained_frames=0, wall_s=5.0) is None
    assert median_rate([100.0, 5000.0, 300.0]) == 300.0  # a slow outlier does not set the pace
    assert median_rate([]) is None


def test_makespan_fills_free_slots_in_order():
    assert makespan([10, 10, 10, 10], 2) == 20
    assert makespan([30, 10, 10, 10], 2) == 30
    assert makespan([5], 4) == 5


@pytest.mark.parametrize("durations, seeds, slots, left, expected", [
    ([100, 100, 100], 3, 3, 300, (3, 3)),      # everything fits
    ([100, 100, 100], 3, 3, 250, (3, 2)),      # one seed fewer for every configuration
    ([100, 100, 100], 3, 1, 450, (2, 2)),      # fewer configurations, 2 seeds each
    ([100, 400, 400], 3, 1, 350, (1, 3)),      # only the (fast) top one, on 3 seeds
    ([100, 100, 100], 3, 1, 150, (1, 1)),      # the top one on one seed
    ([100, 100, 100], 3, 1, 50, None),         # nothing fits: skipped
    ([100, 100], 1, 2, 100, (2, 1)),           # one seed asked: all configurations on it
])
def test_validation_fits_what_it_can(durations, seeds, slots, left, expected):
    fit = fit_validation(durations, seeds=seeds, slots=slots, time_left=left)
    assert ((fit.configs, fit.seeds) if fit else None) == expected
    if fit and expected != (len(durations), seeds):
        assert f"fits {expected[0]} of {len(durations)}" in fit.note


# ---------------------------------------------------------------------------------------- resume
def write_meta(sp: StudyPaths, overrides: list[str]) -> None:
    sp.root.mkdir(parents=True, exist_ok=True)
    sp.meta.write_text(yaml.safe_dump({"study_name": sp.name, "sessions": [{"overrides": overrides}]}))


@pytest.mark.parametrize("given, expected", [
    ([], ["train.frames=100000", "env.num_envs=16"]),
    (["train.frames=100000"], ["train.frames=100000", "env.num_envs=16"]),
    (["train.threads=2"], ["train.frames=100000", "env.num_envs=16", "train.threads=2"]),
])
def test_resume_trains_with_the_studys_overrides(given, expected):
    sp = StudyPaths.for_study("kept")
    write_meta(sp, ["train.frames=100000", "env.num_envs=16"])
    assert resumed_overrides(sp, given) == expected


@pytest.mark.parametrize("given, says", [
    (["train.frames=50000"], "started with train.frames=100000"),
    (["env.num_envs=64"], "started with env.num_envs=16"),
    (["env=cartpole"], "started with env=(not set"),
    (["scoring.min_episodes=5"], "started with scoring.min_episodes=(not set"),
])
def test_resume_refuses_a_conflicting_override(given, says):
    sp = StudyPaths.for_study("conflict")
    write_meta(sp, ["train.frames=100000", "env.num_envs=16"])
    with pytest.raises(ConfigError) as info:
        resumed_overrides(sp, given)
    assert says in str(info.value) and given[0].split("=")[1] in str(info.value)


def test_resume_with_another_frame_count_exits_2_and_trains_nothing(tmp_path, capsys):
    behaviour = write_behaviour(tmp_path, "flat", seconds_per_point=0.01)
    first = search_argv(study="frames", space="lr_prior.yaml", behaviour=behaviour, hp_trials=1)
    assert run_search(first) == 0
    before = len(rows(StudyPaths.for_study("frames")))
    again = search_argv(study="frames", space=None, behaviour=behaviour, hp_trials=2,
                        flags=["--resume"])
    again = [a for a in again if a != "train.frames=100000"] + ["train.frames=50000"]
    assert run_search(again) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "train.frames" in err and "100000" in err and "50000" in err
    assert len(rows(StudyPaths.for_study("frames"))) == before
    # Without the override it resumes, with the study's own 100,000 frames.
    plain = [a for a in again if a != "train.frames=50000"]
    plain = [a for a in plain if not a.startswith("train.frames")]
    assert run_search(plain) == 0
    table = rows(StudyPaths.for_study("frames"))
    assert len(table) == 2 and {int(r["frames"]) for r in table} == {100_000}


def test_resume_keeps_the_pruning_plan_the_study_started_with(tmp_path):
    behaviour = write_behaviour(tmp_path, "flat", seconds_per_point=0.01)
    first = search_argv(study="replan", space="lr_prior.yaml", behaviour=behaviour, hp_trials=2,
                        flags=["--grace-frames", "20000"])
    assert run_search(first) == 0
    again = search_argv(study="replan", space=None, behaviour=behaviour, hp_trials=24,
                        flags=["--resume"])
    assert run_search(again) == 0
    sessions = yaml.safe_load(StudyPaths.for_study("replan").meta.read_text())["sessions"]
    assert len(sessions) == 2
    started, resumed = sessions[0]["pruning"], sessions[1]["pruning"]
    # 24 trials and the default grace would have given other rungs (and a 10k grace).
    assert plan_pruning("hyperband", trials=24, frames=100_000, eval_frequency=10_000, grace=10_000,
                        episode_frames=None).rungs != tuple(started["rungs"])
    assert resumed["trials"] == started["trials"] == 2 and resumed["rungs"] == started["rungs"]
    assert sessions[1]["grace_frames"] == 20_000


# ----------------------------------------------------------------------------------- constraints
TERMS = ("termination", "torques")


def space(constraints: list[str], **sections) -> object:
    data = {"search_space_id": "c", "constraints": constraints, **sections}
    return parse_space(data, source="s.yaml", reward_terms=TERMS)


def test_constraints_name_a_parameter_either_way():
    dotted = space(["learning_rate > 5e-4"],
                   ppo_params={"ppo.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3}})
    assert dotted.check({"ppo.learning_rate": 8e-4}) == ["learning_rate > 5e-4"]
    bare = space(["ppo.learning_rate > 5e-4 and termination < -100"],
                 ppo_params={"learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3}},
                 reward_weights={"termination": {"type": "choice", "values": [-50, -200]}})
    assert bare.check({"learning_rate": 8e-4, "termination": -200}) != []
    assert bare.check({"learning_rate": 8e-4, "termination": -50}) == []


def test_a_truly_ambiguous_name_is_refused():
    with pytest.raises(ConfigError) as info:
        space(["torques < 0"], fixed={"env.params.torques": 2, "reward.scales.torques": -1e-5})
    assert "could mean" in str(info.value)


def test_constraints_read_the_command_lines_overrides():
    s = space(["learning_rate > 5e-4 and learning_epochs > 8"],
              ppo_params={"learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3}},
              fixed={"learning_epochs": 5})
    assert s.check({"learning_rate": 8e-4}) == []
    assert s.check({"learning_rate": 8e-4}, ["ppo.learning_epochs=10"]) != []
    # Numbers as the command line writes them (PyYAML alone reads `1e-4` as a string).
    assert s.check({"learning_rate": 8e-4}, ["ppo.learning_epochs=10", "ppo.learning_rate=1e-4"]) == []


def test_a_constraint_that_cannot_fire_is_found():
    s = space(["learning_epochs > 8", "learning_epochs >= 8"],
              ppo_params={"learning_epochs": {"type": "choice", "values": [4, 8]}})
    assert s.inert_constraints() == ["learning_epochs > 8"]
    assert s.inert_constraints(["ppo.learning_epochs=10"]) == []  # an override that can trip it


def test_the_search_warns_of_a_constraint_that_cannot_fire(tmp_path, capsys):
    data = yaml.safe_load((SPACES / "lr_prior.yaml").read_text())
    data["constraints"] = ["learning_rate > 1.0"]
    inert = tmp_path / "inert.yaml"
    inert.write_text(yaml.safe_dump(data))
    behaviour = write_behaviour(tmp_path, "flat", seconds_per_point=0.01)
    assert run_search(search_argv(study="inert", space=inert, behaviour=behaviour, hp_trials=1)) == 0
    assert "the constraint 'learning_rate > 1.0' can never fire" in capsys.readouterr().err
    assert {r["stop_reason"] for r in rows(StudyPaths.for_study("inert"))} == {reasons.COMPLETED}


def test_a_plan_another_machine_settled_is_adopted(tmp_path):
    def plan_for(trials: int):
        return plan_pruning("hyperband", trials=trials, episode_frames=None, **NAV)

    study = optuna.create_study(direction="maximize")
    study.set_user_attr(records.PLAN_INPUTS, {"trials": 20, "grace_frames": 200_000, "settled": True})
    sizing = PlanSizing(plan=plan_for(10_000), plan_for=plan_for, hp_trials=10_000, budget_s=36_000,
                        slots=2, grace_frames=200_000, study_paths=StudyPaths.for_study("joined"))
    line = sizing.settle(study, trial_s=60.0)  # this machine's budget would hold 1,200 trials
    assert sizing.plan == plan_for(20) and study.pruner.__class__ is make_pruner(plan_for(20)).__class__
    assert line is not None and "settled by another machine" in line
