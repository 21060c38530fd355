"""Pruning, decision by decision: the search loop's reporting drives a real Optuna pruner (each
--pruner option, configured as the CLI does), and every prune / continue it acts on is what the
pruner itself says for that trial at that moment; a pruned trial stops only at a rung of the
plan, never before the grace frames. Plus a smoke search with each --search-method."""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass

import optuna
import pytest
from optuna.trial import TrialState
from pruning_harness import EVAL, FRAMES, GRACE, JITTER, RUNGS, SLOTS, TRIALS, ScriptedProcess, pruner_for
from search_harness import SPACES, rows, run_search, search_argv, skip_reports, write_behaviour

from automl import paths, reasons
from automl.paths import StudyPaths
from automl.search.optuna_loop.console import QuietConsole
from automl.search.optuna_loop.pruning import PatientPruner
from automl.search.optuna_loop.scheduler import Scheduler
from automl.search.optuna_loop.settings import SearchSettings
from automl.search.space import load_space
from automl.search.study.loading import PRUNERS, SEARCH_METHODS
from automl.search.trials.launcher import Slot
from automl.search.trials.stoppers import StopperSet
from automl.search.trials.watch import Running


@dataclass
class Decision:
    trial: int
    step: int
    pruned: bool


def pruner_says(study: optuna.Study, pruner_name: str, trial: optuna.Trial, step: int,
                value: float) -> bool:
    """What a fresh pruner of the same configuration says for `trial` if it reports `value` at
    `step` now: asked on a copy of the study, so the loop's own call is left undisturbed."""
    twin = optuna.create_study(study_name=study.study_name, direction="maximize",
                               pruner=pruner_for(pruner_name))
    for frozen in study.get_trials(deepcopy=True):
        if frozen.number == trial.number:
            frozen.intermediate_values[step] = value
        twin.add_trial(frozen)
    copy = next(t for t in twin.get_trials(deepcopy=False) if t.number == trial.number)
    return twin.pruner.prune(twin, copy)


def drive(pruner_name: str, tmp_path, seed: int) -> tuple[list[Decision], optuna.Study]:
    """A scripted study: TRIALS trials of random quality and speed, SLOTS at a time, each
    reporting through Scheduler._report as the loop does for a running trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(SPACES / "lr_prior.yaml", reward_terms=[])
    study = optuna.create_study(study_name=f"scripted_{pruner_name}", direction="maximize",
                                pruner=pruner_for(pruner_name))
    settings = SearchSettings(
        space=space, worker=[], user_overrides=[], hp_trials=TRIALS, budget_s=3600.0,
        frames=FRAMES, eval_frequency=EVAL, slots=[Slot(index=0, threads=1)], plateau_patience=0,
        plateau_min_delta=0.0, drop=0.0, grace_frames=GRACE, trial_timeout=3600.0,
        max_failure_rate=1.0, target_score=None)
    loop = Scheduler(study, StudyPaths(tmp_path / pruner_name), settings, QuietConsole())
    rng = random.Random(seed)
    decisions: list[Decision] = []
    running: dict[int, tuple[Running, float, int]] = {}
    points_done: dict[int, int] = {}
    started, tick = 0, 0
    while started < TRIALS or running:
        while len(running) < SLOTS and started < TRIALS:
            trial = study.ask()
            r = Running(trial=trial, proc=ScriptedProcess(), values={"learning_rate": 3e-4},  # type: ignore[arg-type]
                        tail=None, stoppers=StopperSet(plateau=None, drop=None))  # type: ignore[arg-type]
            running[trial.number] = (r, rng.uniform(0.05, 1.0), rng.choice([1, 2, 3]))
            points_done[trial.number] = 0
            started += 1
        tick += 1
        for number, (r, quality, every) in list(running.items()):
            if tick % every:
                continue
            k = points_done[number] = points_done[number] + 1
            frames = min(k * EVAL + JITTER, FRAMES)
            value = quality * frames / FRAMES + rng.gauss(0.0, 0.03)
            step = frames // EVAL * EVAL
            expected = pruner_says(study, pruner_name, r.trial, step, value)
            loop._report(r, frames, value)
            pruned = r.reason == reasons.PRUNED
            assert pruned == expected, (
                f"{pruner_name}: trial {number} at {frames} frames: the loop "
                f"{'pruned' if pruned else 'continued'}, the pruner says "
                f"{'prune' if expected else 'continue'}")
            assert r.proc.terminated == pruned  # type: ignore[attr-defined]
            decisions.append(Decision(number, step, pruned))
            if pruned or frames == FRAMES:
                loop._record(r.trial, r.values, reasons.PRUNED if pruned else reasons.COMPLETED,
                             frames=frames, wall=0.0, score=value, error_tail="")
                del running[number]
    return decisions, study


@pytest.mark.parametrize("pruner_name", PRUNERS)
def test_every_pruning_decision_is_the_pruners_own_and_falls_on_a_rung(pruner_name, tmp_path):
    decisions, study = drive(pruner_name, tmp_path, seed=11)
    pruned = [d for d in decisions if d.pruned]
    assert len(decisions) > TRIALS * 3
    for d in pruned:
        assert d.step >= GRACE, f"trial {d.trial} was pruned at {d.step}, before the grace frames"
        assert d.step in RUNGS[pruner_name], f"trial {d.trial} was pruned off a rung at {d.step}"
    trials = study.get_trials(deepcopy=False)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sum(t.state == TrialState.PRUNED for t in trials) == len(pruned)
    for t in trials:  # steps are evaluation steps, whatever frame count the run reported at
        assert all(step % EVAL == 0 for step in t.intermediate_values)
        if t.state == TrialState.PRUNED:
            assert t.last_step in RUNGS[pruner_name]
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert completed and all(t.last_step == FRAMES for t in completed)
    if pruner_name == "none":
        assert not pruned
    else:  # the script gives every pruner both kinds of decision to make
        assert pruned, f"{pruner_name} pruned nothing in {len(decisions)} decisions"
        assert any(not d.pruned and d.step in RUNGS[pruner_name] for d in decisions)


def test_the_rung_check_catches_a_pruner_without_grace(tmp_path, monkeypatch):
    """The test above can fail: a pruner set up without the grace frames prunes before them."""
    real = pruner_for

    def no_grace(name: str, *, grace: int = GRACE) -> optuna.pruners.BasePruner:
        # Optuna's own halving from the first evaluation point on (the plan's rule would have
        # kept only late rungs, grace or not).
        assert isinstance(real(name), PatientPruner)
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=EVAL, reduction_factor=2,
                                                      min_early_stopping_rate=0)

    monkeypatch.setattr(sys.modules[__name__], "pruner_for", no_grace)
    decisions, _ = drive("successive_halving", tmp_path, seed=11)
    assert any(d.pruned and d.step < GRACE for d in decisions)


# ------------------------------------------------------------------------- every sampler option
@pytest.mark.parametrize("method", [m for m in SEARCH_METHODS if m != "pbt"])  # test_pbt.py
def test_each_search_method_runs_a_small_search(method, tmp_path, monkeypatch):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    behaviour = write_behaviour(tmp_path, "fast", seconds_per_point=0.01, score={
        "param": "ppo.learning_rate", "target": 3e-4, "log": True})
    space = "two_by_two.yaml" if method == "grid" else "lr_prior.yaml"
    argv = search_argv(study=f"smoke_{method}", space=space, behaviour=behaviour, hp_trials=4,
                       flags=["--search-method", method, "--seed", "0", "--pruner", "none",
                              "--confirm-seeds", "1"])  # 4 sampled trials, no confirmation
    assert run_search(argv) == 0
    table = rows(StudyPaths.for_study(f"smoke_{method}"))
    assert len(table) == 4
    assert {r["stop_reason"] for r in table} == {reasons.COMPLETED}
    rates = [float(r["learning_rate"]) for r in table]
    assert all(math.isfinite(x) and 1e-6 <= x <= 1e-1 for x in rates)
    if method != "grid":  # the prior, then sampled rates
        assert 3e-4 in rates
        assert len(set(rates)) >= 3, f"{method} sampled {rates}"
