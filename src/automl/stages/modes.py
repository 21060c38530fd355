"""The modes of automl.py: search, validate, report, and stage (all of them under one budget).

stage = search (pruned; a new best confirmed on more seeds) -> validation (the top configurations
raced against the start on fresh seeds, no pruning) -> final run of the chosen configuration
(frames x multiplier) -> reports and export.
"""

from __future__ import annotations

import time

import optuna

from automl.errors import EXIT_FAILURE, EXIT_OK, ConfigError
from automl.paths import StudyPaths
from automl.requests import Request
from automl.search.plan import Plan, make_plan, trial_forkserver
from automl.search.study.loading import load_study
from automl.search.trials.forkserver import ForkServer
from automl.stages.candidates import completed
from automl.stages.context import StageLog, Stages
from automl.stages.final import run_final
from automl.stages.report import choose, report
from automl.stages.search import OptunaSearch, run_search
from automl.stages.validate import recorded_validation, run_validation, validate_command


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


def _stages(request: Request, sp: StudyPaths, study: optuna.Study, log: StageLog,
            forkserver: ForkServer | None) -> Stages:
    return Stages(paths=sp, study=study, log=log, resources=request.resources, forkserver=forkserver)


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

    if request.mode == "validate":
        with trial_forkserver(request.resources) as forkserver:
            st = _stages(request, sp, study, log, forkserver)
            if is_pbt(study):
                return _finish_pbt(request, st, deadline=deadline, validate=True)
            validated = run_validation(st, request.search, request.validation, deadline=deadline,
                                       storage=request.study.storage)
            report(st, validated, choose(st, validated, request.search))
        return EXIT_OK
    log.phase = "report"
    st = _stages(request, sp, study, log, None)
    validated = recorded_validation(st)
    if is_pbt(study) and not validated:  # the population's winner, not validated
        return _finish_pbt(request, st, deadline=deadline, validate=False)
    report(st, validated, choose(st, validated, None if is_pbt(study) else request.search))
    return EXIT_OK


def _finish_pbt(request: Request, st: Stages, *, deadline: float, validate: bool,
                done: str | None = None) -> int:
    """The population's end; EXIT_FAILURE where it has no result to hand back."""
    from automl.stages.pbt import finish_pbt

    named = finish_pbt(st, request.validation, deadline=deadline, validate=validate, done=done,
                       resume=validate_command(st, request.validation, request.study.storage,
                                               deadline=deadline))
    return EXIT_OK if named else EXIT_FAILURE


def _search_modes(request: Request, plan: Plan, forkserver: ForkServer | None, start: float,
                  log: StageLog) -> int:
    """search: the search and its reports; stage: then validation, the final run and reports."""

    budget_s, shares = request.budget.seconds, request.budget.shares
    search_budget = budget_s * (shares[0] if request.mode == "stage" else 1.0)
    if request.search.method == "pbt":
        from automl.stages.pbt import PbtSearch

        method: OptunaSearch | PbtSearch = PbtSearch(request, plan)
    else:
        method = OptunaSearch(request, plan)
    outcome = run_search(request, plan, method, budget_s=search_budget, forkserver=forkserver)
    sp = plan.study_paths
    study = load_study(sp, request.study.storage)
    st = _stages(request, sp, study, log, forkserver)
    if outcome.stopped_by in ("failures", "interrupted"):
        # Every output still names one choice: an earlier validation's, else the search's best.
        validated = recorded_validation(st)
        pbt = request.search.method == "pbt"
        if pbt and not validated:  # the last complete generation's winner, not validated
            _finish_pbt(request, st, deadline=start + budget_s, validate=False, done=outcome.stopped_by)
        else:
            report(st, validated, choose(st, validated, None if pbt else request.search),
                   done=outcome.stopped_by)
        return EXIT_FAILURE
    if request.search.method == "pbt":
        return _finish_pbt(request, st, deadline=start + budget_s, validate=request.mode == "stage")
    if request.mode == "search":
        log.phase = "report"
        validated = recorded_validation(st)
        report(st, validated, choose(st, validated, request.search), done="search finished")
        return EXIT_OK
    validated = run_validation(st, request.search, request.validation,
                               deadline=start + budget_s * (shares[0] + shares[1]),
                               storage=request.study.storage)
    choice = choose(st, validated, request.search)
    if choice.config_id is not None:
        run_final(st, choice.config_id, multiplier=request.final_frames_multiplier,
                  deadline=start + budget_s)
    report(st, validated, choice)
    return EXIT_OK
