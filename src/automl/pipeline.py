"""The modes of automl.py: search, validate, report, and stage (all of them under one budget).

stage = search (pruned; a new best confirmed on more seeds) -> validation (top K configurations x M
fresh seeds, no pruning) -> final run of the validated choice (frames x multiplier) -> reports and
export.
"""

from __future__ import annotations

import sys
import time

import optuna

from automl.errors import EXIT_FAILURE, EXIT_OK, ConfigError
from automl.finish import finish
from automl.paths import StudyPaths
from automl.requests import Request
from automl.reruns import StageLog, completed, run_validation
from automl.search.optuna_loop import scheduler as search_loop
from automl.search.optuna_loop.console import LiveConsole, QuietConsole
from automl.search.optuna_loop.scheduler import Outcome, Scheduler
from automl.search.optuna_loop.settings import SearchSettings
from automl.search.plan import (
    Plan,
    make_plan,
    open_study,
    plan_sizing,
    recover_trials,
    slots_for,
    trial_forkserver,
    worker_command,
)
from automl.search.study import reports
from automl.search.study.confirm import study_seeds
from automl.search.study.loading import load_study
from automl.search.study.recovery import Recovery
from automl.search.trials.forkserver import ForkServer


# ------------------------------------------------------------------------------------------ search
def run_search(request: Request, plan: Plan, budget_s: float,
               forkserver: ForkServer | None) -> Outcome:
    """The search stage: one Optuna study, trials in asynchronous slots, until a limit is hit (or
    the population's segments, with --search-method pbt)."""
    if request.search.method == "pbt":
        from automl.pbt_stage import run_pbt_search

        return run_pbt_search(request, plan, budget_s, forkserver)
    recovery = Recovery(plan.study_paths, plan.space)
    study = open_study(request, plan, on_stale=recovery)
    seeds = study_seeds(study, request.search, source=str(plan.study_paths.root))
    again = recover_trials(study, recovery) if request.study.resume else []
    slots = slots_for(request.resources, plan.base.env.device)
    search = request.search
    if forkserver is not None:
        try:
            forkserver.wait_ready()  # its imports, once, before the search clock and slots start
        except RuntimeError as err:
            print(f"automl: {err}; starting trials without it", file=sys.stderr)
    reports.write_meta(plan.study_paths, argv=request.argv, extra={
        "mode": request.mode, "storage": plan.storage_url, "search_method": search.method,
        "pruner": search.pruner, "slots": len(slots), "budget_hours": request.budget.hours,
        "hp_trials": search.hp_trials, "overrides": list(plan.overrides), "frames_per_trial": plan.frames,
        "grace_frames": plan.grace_frames, "pruning": plan.pruning.as_dict(),
        "pruning_sized_by": "an earlier session" if plan.settled else "--hp-trials",
        "confirm_seeds": seeds,
        "retried_trials": again})
    scoring = plan.base.scoring
    settings = SearchSettings(
        space=plan.space, worker=worker_command(request.resources), user_overrides=list(plan.overrides),
        hp_trials=search.hp_trials, budget_s=budget_s, frames=plan.frames,
        eval_frequency=plan.base.train.eval_frequency, slots=slots,
        plateau_patience=scoring.plateau_patience, plateau_min_delta=scoring.plateau_min_delta,
        drop=scoring.drop, grace_frames=plan.grace_frames, trial_timeout=request.budget.trial_timeout,
        max_failure_rate=request.budget.max_failure_rate, target_score=search.target_score,
        confirm_seeds=seeds, forkserver=forkserver, recovery=recovery,
        sizing=plan_sizing(request, plan, slots=len(slots), budget_s=budget_s))
    console = QuietConsole() if request.quiet else LiveConsole()
    console.message(f"automl: study {plan.study_paths.name} in {plan.study_paths.root}; "
                    f"{len(slots)} slot(s), {search.hp_trials} trials of {plan.frames:,} frames, "
                    f"search budget {budget_s / 3600:.2f} h")
    console.message(f"automl: {plan.pruning.describe()}")
    if seeds > 1:
        console.message(f"automl: a new best is confirmed on {seeds - 1} more seed(s) (never "
                        "pruned); the best is the confirmed configuration of highest mean")
    with console:
        outcome = Scheduler(study, plan.study_paths, settings, console).run()
    counts = ", ".join(f"{k} {v}" for k, v in outcome.finished.items() if v) or "no trial ended"
    console.message(f"automl: search ended ({outcome.stopped_by}): {counts}")
    if outcome.stopped_by == "infeasible":  # bad input: one error line, exit 2
        raise ConfigError(file=plan.space.source, key="constraints",
                          value=[c.text for c in plan.space.constraints],
                          rule=f"{search_loop.MAX_CONSTRAINT_REJECTIONS} sampled configurations in a row "
                          "violated them or could not run (see the error_tail column of "
                          "trial_final.csv), so the space looks infeasible",
                          fix="loosen the constraints or change the parameter ranges")
    if outcome.message:
        print(f"automl: {outcome.message}", file=sys.stderr)
    return outcome


# ------------------------------------------------------------------------------------------- modes
def _existing(request: Request) -> tuple[StudyPaths, optuna.Study]:
    name, storage = request.study.name, request.study.storage
    if not name:
        raise ConfigError(file="command line", key="--study-name", value=None,
                          rule=f"--mode {request.mode} works on an existing study",
                          fix="add --study-name NAME (a folder under starter_kit_log/automl/)")
    sp = StudyPaths.for_study(name)
    if not sp.journal.exists() and not storage:
        raise ConfigError(file=str(sp.root), key="--study-name", value=name,
                          rule="no study of that name exists", fix="check the name (analyze.py lists them)")
    study = load_study(sp, storage)
    from automl.analysis.pbt import is_pbt

    if request.mode == "validate" and not completed(study, request.search) and not is_pbt(study):
        raise ConfigError(file=str(sp.root), key="--study-name", value=name,
                          rule="the study has no completed trial to validate",
                          fix="run --mode search first (or give it more budget)")
    return sp, study


def run_mode(request: Request) -> int:
    """Run --mode; returns the exit code. Search and validation get one warm fork server for the
    real worker, started once the flags, config and space are checked (the study's own checks
    follow) and closed when the mode ends, whatever the outcome."""
    start = time.monotonic()
    log = StageLog()
    if request.mode in ("search", "stage"):
        plan = make_plan(request.study, request.search)
        with trial_forkserver(request.resources, isaaclab=plan.base.env.kind == "isaaclab") as forkserver:
            return _search_modes(request, plan, forkserver, start, log)
    deadline = start + request.budget.seconds
    sp, study = _existing(request)
    from automl.analysis.pbt import is_pbt

    if request.mode == "validate" and is_pbt(study):
        from automl.pbt_stage import finish_pbt

        with trial_forkserver(request.resources) as forkserver:
            finish_pbt(request, sp, study, log, deadline=deadline, validate=True,
                       forkserver=forkserver)
        return EXIT_OK
    if request.mode == "validate":
        with trial_forkserver(request.resources) as forkserver:
            validated = run_validation(request, sp, study, deadline, log, forkserver)
        finish(request, sp, study, validated, deadline, log, final=False)
        return EXIT_OK
    from automl.analysis.validation import read_validation_csv

    log.phase = "report"
    validated = read_validation_csv(sp)
    if is_pbt(study) and not validated:  # the population's winner, not validated
        from automl.pbt_stage import finish_pbt

        finish_pbt(request, sp, study, log, deadline=deadline, validate=False, forkserver=None)
        return EXIT_OK
    finish(request, sp, study, validated, deadline, log, final=False)
    return EXIT_OK


def _search_modes(request: Request, plan: Plan, forkserver: ForkServer | None, start: float,
                  log: StageLog) -> int:
    """search: the search and its reports; stage: then validation, the final run and reports."""
    from automl.analysis.reports import write_reports

    budget_s, shares = request.budget.seconds, request.budget.shares
    search_budget = budget_s * (shares[0] if request.mode == "stage" else 1.0)
    outcome = run_search(request, plan, search_budget, forkserver)
    sp = plan.study_paths
    study = load_study(sp, request.study.storage)
    if outcome.stopped_by in ("failures", "interrupted"):
        if outcome.stopped_by == "interrupted":
            print(f"automl: interrupted; continue with --resume --study-name {sp.name}",
                  file=sys.stderr)
        write_reports(sp, study=study)
        return EXIT_FAILURE
    if request.search.method == "pbt":
        from automl.pbt_stage import finish_pbt

        finish_pbt(request, sp, study, log, deadline=start + budget_s,
                   validate=request.mode == "stage", forkserver=forkserver)
        return EXIT_OK
    if request.mode == "search":
        from automl.analysis.validation import read_validation_csv

        log.phase = "report"
        finish(request, sp, study, read_validation_csv(sp), start + budget_s, log, final=False,
               done="search finished")
        return EXIT_OK
    validated = run_validation(request, sp, study, start + budget_s * (shares[0] + shares[1]), log,
                               forkserver)
    finish(request, sp, study, validated, start + budget_s, log, final=True, forkserver=forkserver)
    return EXIT_OK
