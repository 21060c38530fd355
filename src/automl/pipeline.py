"""The modes of automl.py: search, validate, report, and stage (all three under one budget)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from automl import reports
from automl.cli import (
    Plan,
    make_plan,
    open_study,
    recover_trials,
    slots_for,
    stage_shares,
    worker_command,
)
from automl.console import LiveConsole, QuietConsole
from automl.errors import EXIT_FAILURE, EXIT_OK
from automl.scheduler import Outcome, Scheduler, SearchSettings


def run_search(args: argparse.Namespace, argv: Sequence[str], plan: Plan,
               budget_s: float) -> Outcome:
    """The search stage: one Optuna study, trials in asynchronous slots, until a limit is hit."""
    study = open_study(args, plan)
    again = recover_trials(study) if args.resume else []
    slots = slots_for(args, plan)
    reports.write_meta(plan.study_paths, argv=argv, extra={
        "mode": args.mode, "storage": plan.storage_url, "search_method": args.search_method,
        "pruner": args.pruner, "slots": len(slots), "budget_hours": args.budget_hours,
        "hp_trials": args.hp_trials, "frames_per_trial": plan.frames,
        "grace_frames": plan.grace_frames, "retried_trials": again})
    scoring = plan.base.scoring
    settings = SearchSettings(
        space=plan.space, worker=worker_command(args), user_overrides=list(args.overrides),
        hp_trials=args.hp_trials, budget_s=budget_s, frames=plan.frames,
        eval_frequency=plan.base.train.eval_frequency, slots=slots,
        plateau_patience=scoring.plateau_patience, plateau_min_delta=scoring.plateau_min_delta,
        drop=scoring.drop, grace_frames=plan.grace_frames, trial_timeout=args.trial_timeout,
        max_failure_rate=args.max_failure_rate, target_score=args.target_score,
        quiet=args.quiet, use_gpu=plan.use_gpu)
    console = QuietConsole() if args.quiet else LiveConsole()
    console.message(f"automl: study {plan.study_paths.name} in {plan.study_paths.root}; "
                    f"{len(slots)} slot(s), {args.hp_trials} trials of {plan.frames:,} frames, "
                    f"budget {budget_s / 3600:.2f} h")
    with console:
        outcome = Scheduler(study, plan.study_paths, settings, console).run()
    counts = ", ".join(f"{k} {v}" for k, v in outcome.finished.items() if v) or "no trial ended"
    console.message(f"automl: search ended ({outcome.stopped_by}): {counts}")
    if outcome.message:
        console.message(f"automl: {outcome.message}")
    return outcome


def run_mode(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Dispatch on --mode; returns the exit code."""
    start = time.monotonic()
    budget_s = args.budget_hours * 3600.0
    shares = stage_shares(args.stage_shares)
    if args.mode in ("search", "stage"):
        plan = make_plan(args)
        search_budget = budget_s * (shares[0] if args.mode == "stage" else 1.0)
        outcome = run_search(args, argv, plan, search_budget)
        if outcome.stopped_by in ("failures", "infeasible"):
            return EXIT_FAILURE
        if outcome.stopped_by == "interrupted":
            print(f"automl: interrupted; continue with --resume --study-name "
                  f"{plan.study_paths.name}")
            return EXIT_FAILURE
        del start
        return EXIT_OK
    return EXIT_OK
