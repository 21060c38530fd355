"""A new best is confirmed on more seeds inside the search (automl.search.study.confirm): which trials
are queued again, on which seed, that a confirmation is never pruned, and that the search's best
and validation's candidates are configurations ranked by their mean over seeds."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from pruning_harness import FRAMES, GRACE, ScriptedProcess, pruner_for
from search_harness import SPACES, rows, run_search, search_argv, skip_reports, trials, write_behaviour

from automl import paths, reasons
from automl.paths import StudyPaths
from automl.search.optuna_loop.console import QuietConsole
from automl.search.optuna_loop.scheduler import Scheduler
from automl.search.optuna_loop.settings import SearchSettings
from automl.search.space import load_space
from automl.search.study import records
from automl.search.study.confirm import (
    CONFIRM_SEED_BASE,
    configurations,
    group_of,
    next_to_confirm,
    ranked,
)
from automl.search.study.loading import load_study
from automl.search.study.recovery import enqueue_retry
from automl.search.trials.stoppers import StopperSet
from automl.search.trials.watch import Running

LR = {"learning_rate": FloatDistribution(1e-5, 1e-2, log=True)}


def done(number: int, value: float, lr: float = 3e-4, **attrs: object) -> optuna.trial.FrozenTrial:
    trial = create_trial(value=value, params={"learning_rate": lr}, distributions=LR,
                         user_attrs={records.PHASE: "search", **attrs})
    trial.number = number
    return trial


def failed(number: int, confirms: int) -> optuna.trial.FrozenTrial:
    trial = create_trial(state=TrialState.FAIL, params={"learning_rate": 3e-4}, distributions=LR,
                         user_attrs={records.PHASE: "search", records.CONFIRMS: confirms})
    trial.number = number
    return trial


def queued(number: int, confirms: int) -> optuna.trial.FrozenTrial:
    trial = create_trial(state=TrialState.WAITING, params={"learning_rate": 3e-4},
                         distributions=LR, user_attrs={records.CONFIRMS: confirms})
    trial.number = number
    return trial


# --------------------------------------------------------------------------------- the ranking
def test_confirmed_configurations_rank_first_by_their_mean_over_seeds():
    found = configurations([
        done(0, 0.9),                                   # lucky, confirmed lower
        done(1, 0.6),
        done(2, 0.95),                                  # single run, the highest score
        done(3, 0.1, **{records.CONFIRMS: 0}),
        done(4, 0.7, **{records.CONFIRMS: 1}),
        done(5, 0.99),                                  # its confirmation failed: refuted
        failed(6, confirms=5),
    ], seeds=2)
    assert [c.number for c in found] == [1, 0, 2, 5]
    assert found[0].scores == (0.6, 0.7) and found[0].mean == pytest.approx(0.65)
    assert found[1].mean == pytest.approx(0.5) and found[1].confirmed
    assert not found[2].confirmed and not found[2].tried
    assert found[3].refuted and found[3].scores == (0.99,)
    # one seed asked for: every single run is confirmed, ranked by its score
    assert [c.number for c in configurations([done(0, 0.9), done(1, 0.6), done(2, 0.95)], 1)] == [2, 0, 1]


def test_a_configuration_under_confirmation_counts_its_completed_seeds_only():
    [c] = configurations([done(0, 0.8), queued(1, confirms=0)], seeds=2)
    assert c.pending and c.tried and not c.confirmed and not c.refuted and c.scores == (0.8,)
    assert group_of(queued(1, confirms=0)) == 0


def chosen(trials: list[optuna.trial.FrozenTrial], seeds: int = 2) -> int | None:
    config = next_to_confirm(configurations(trials, seeds), seeds)
    return None if config is None else config.number


def test_the_best_untried_configuration_above_every_confirmed_or_pending_mean_is_confirmed():
    confirmed = [done(0, 0.9), done(1, 0.5, **{records.CONFIRMS: 0})]   # mean 0.7
    assert chosen([done(2, 0.1)]) == 2                                  # the first one
    assert chosen([*confirmed, done(2, 0.71), done(3, 0.8)]) == 3       # the best above 0.7
    assert chosen([*confirmed, done(2, 0.69)]) is None
    pending = [done(4, 0.85), queued(5, confirms=4)]                    # its 0.85 counts until known
    assert chosen([*confirmed, *pending, done(2, 0.8)]) is None
    assert chosen([*confirmed, *pending, done(2, 0.9)]) == 2
    # a trial below a lucky configuration's first score is confirmed once that one's mean falls
    refuted_low = [done(4, 0.85), done(5, 0.05, **{records.CONFIRMS: 4})]
    assert chosen([*confirmed, *refuted_low, done(2, 0.8)]) == 2
    # a configuration whose confirmation failed raises no bar and is not tried again
    assert chosen([*confirmed, done(4, 0.85), failed(5, confirms=4), done(2, 0.75)]) == 2
    assert chosen([done(4, 0.85), failed(5, confirms=4)]) is None
    assert chosen([done(0, 0.9), done(2, 0.95)], seeds=1) is None        # one seed: never


def test_a_retried_confirmation_keeps_its_configuration_and_seed(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.add_trial(done(0, 0.9))
    interrupted = create_trial(state=TrialState.PRUNED, params={"learning_rate": 3e-4},
                               distributions=LR, user_attrs={
                                   records.PHASE: "search", records.CONFIRMS: 0,
                                   records.CONFIRM_SEED: CONFIRM_SEED_BASE + 1})
    study.add_trial(interrupted)
    enqueue_retry(study, study.trials[1], study.trials[1].params)
    retry = study.trials[2]
    assert retry.state == TrialState.WAITING
    assert retry.user_attrs == {records.RETRY_OF: 1, records.CONFIRMS: 0,
                                records.CONFIRM_SEED: CONFIRM_SEED_BASE + 1}


# ---------------------------------------------------------------------------------- the pruner
@pytest.mark.parametrize("confirmation", [False, True])
def test_a_confirmation_is_never_pruned_and_its_points_are_stored(confirmation, tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner_for("median"))
    space = load_space(SPACES / "lr_prior.yaml", reward_terms=[])
    settings = SearchSettings(
        space=space, worker=[], user_overrides=[], hp_trials=24, budget_s=3600.0, frames=FRAMES,
        eval_frequency=10_000, slots=[], plateau_patience=0, plateau_min_delta=0.0, drop=0.0,
        grace_frames=GRACE, trial_timeout=3600.0, max_failure_rate=1.0, target_score=None,
        confirm_seeds=2)
    loop = Scheduler(study, StudyPaths(tmp_path / "s"), settings, QuietConsole())
    for _ in range(6):  # six trials far above the one below, at every step
        t = study.ask()
        for step in range(10_000, FRAMES + 1, 10_000):
            t.report(1.0, step)
        study.tell(t, 1.0)
    trial = study.ask()
    r = Running(trial=trial, proc=ScriptedProcess(), values={"learning_rate": 3e-4},  # type: ignore[arg-type]
                tail=None, stoppers=StopperSet(plateau=None, drop=None),  # type: ignore[arg-type]
                confirmation=confirmation)
    for frames in range(10_000, GRACE + 30_001, 10_000):
        if r.reason is None:  # the loop stops a pruned trial
            loop._report(r, frames, 0.0)
    assert (r.reason == reasons.PRUNED) is not confirmation
    stored = study.trials[trial.number].intermediate_values
    assert max(stored) == (GRACE + 30_000 if confirmation else GRACE)


# -------------------------------------------------------------------------- a whole search
def test_the_search_best_is_the_configuration_best_over_seeds_not_the_luckiest_run(
        tmp_path, monkeypatch):
    # lr 3e-4 scores 1.0 on the search's seed and 0.1 on the next: lucky, mean 0.55.
    # lr 1e-4 scores 0.7 on every seed. The others score 0.3.
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    seed = CONFIRM_SEED_BASE + 1
    behaviour = write_behaviour(tmp_path, "seeds", seconds_per_point=0.01, curve="plateau",
                                score={"scale": 0.3}, rules=[
        {"when": {"ppo.learning_rate": 3e-4}, "score": {"scale": 1.0}},
        {"when": {"ppo.learning_rate": 3e-4, "train.seed": seed}, "score": {"scale": 0.1}},
        {"when": {"ppo.learning_rate": 1e-4}, "score": {"scale": 0.7}}])
    # one slot: trials end in the order they start, so which ones are confirmed is scripted too
    argv = search_argv(study="seeds", space="two_by_two.yaml", behaviour=behaviour, hp_trials=12,
                       workers=1, budget_hours=0.2, flags=["--search-method", "random", "--seed", "3",
                                                "--pruner", "none"])
    assert run_search(argv) == 0
    sp = StudyPaths.for_study("seeds")
    study_trials = trials(sp)
    assert len(rows(sp)) == 12
    confirmations = [t for t in study_trials if records.CONFIRMS in t.user_attrs]
    assert confirmations, "no trial was confirmed"
    for t in confirmations:  # the configuration of the trial it confirms, on the next seed
        first = study_trials[t.user_attrs[records.CONFIRMS]]
        assert t.params == first.params and records.CONFIRMS not in first.user_attrs
        config = json.loads(sp.trial_config(t.number).read_text())
        assert [o for o in config["base_overrides"] if o.startswith("train.seed=")] == [
            f"train.seed={seed}"]
    study = load_study(sp)
    best = ranked(study, 2)[0]
    assert best.trial.user_attrs[records.CONFIG_VALUES]["ppo.learning_rate"] == pytest.approx(1e-4)
    assert best.confirmed and best.mean == pytest.approx(0.7, abs=1e-6)
    lucky = [c for c in ranked(study, 2) if c.confirmed and c.scores[0] == pytest.approx(1.0)]
    assert lucky and lucky[0].mean == pytest.approx(0.55, abs=1e-6), "the lucky run was never confirmed"
    assert max(t.value for t in study_trials if t.value is not None) == pytest.approx(1.0)
    state = yaml.safe_load(sp.state.read_text())
    assert state["best"]["trial"] == best.number
    assert state["best"]["score"] == pytest.approx(0.7, abs=1e-6)


def test_a_resumed_study_keeps_its_confirm_seeds_and_refuses_another(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    behaviour = write_behaviour(tmp_path, "flat", seconds_per_point=0.01, curve="plateau")
    flags = ["--search-method", "random", "--seed", "0", "--pruner", "none"]
    assert run_search(search_argv(study="kept", space="lr_prior.yaml", behaviour=behaviour,
                                  hp_trials=3, workers=1,
                                  flags=[*flags, "--confirm-seeds", "3"])) == 0
    sp = StudyPaths.for_study("kept")
    before = sp.trial_final_csv.read_bytes()
    again = search_argv(study="kept", space=None, behaviour=behaviour, hp_trials=6, workers=1,
                        flags=[*flags, "--resume", "--confirm-seeds", "2"])
    assert run_search(again) == 2
    err = capsys.readouterr().err
    assert "--confirm-seeds" in err and "2" in err and "on 3 seed(s)" in err
    assert "--confirm-seeds 3" in err  # the fix names the study's value
    assert sp.trial_final_csv.read_bytes() == before
    assert run_search(search_argv(study="kept", space=None, behaviour=behaviour, hp_trials=6,
                                  workers=1, flags=[*flags, "--resume"])) == 0
    meta = yaml.safe_load(sp.meta.read_text())
    assert [s["confirm_seeds"] for s in meta["sessions"]] == [3, 3]
    # the prior completed first and was confirmed on 2 more seeds (train.seed 501 and 502)
    seeds = sorted(t.user_attrs[records.CONFIRM_SEED] for t in trials(sp)
                   if t.user_attrs.get(records.CONFIRMS) == 0)
    assert seeds == [CONFIRM_SEED_BASE + 1, CONFIRM_SEED_BASE + 2]
