"""The modes of automl.py: search, validate, report, and stage (all of them under one budget).

stage = search (one seed, pruned) -> validation (top K configurations x M fresh seeds, no pruning)
-> final run of the validated choice (frames x multiplier) -> reports and export.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import yaml

from automl import reasons, records, reports
from automl import scheduler as search_loop
from automl.budget import fit_validation, seconds_for
from automl.config import GROUPS, load_run_config
from automl.console import LiveConsole, QuietConsole
from automl.errors import EXIT_FAILURE, EXIT_OK, ConfigError, Interrupted
from automl.launcher import Slot
from automl.paths import RunPaths, StudyPaths
from automl.plan import (
    Plan,
    make_plan,
    open_study,
    recover_trials,
    slots_for,
    stage_shares,
    start_forkserver,
    worker_command,
)
from automl.recovery import Recovery
from automl.runner import INTERRUPTED, Job, JobResult, run_jobs
from automl.scheduler import Outcome, Scheduler, SearchSettings
from automl.study import load_study
from automl.summary import read_summary

VALIDATION_SEED_BASE = 1000
"""Validation seeds start here, skipping any seed a search trial used."""


@dataclass
class StageLog:
    """What each stage did, including budgets too small for it: shown in the summary and the state."""

    notes: list[str] = field(default_factory=list)
    phase: str = ""

    def note(self, paths: StudyPaths, text: str) -> None:
        print(f"automl: {text}")
        self.notes.append(text)
        self.write(paths)

    def write(self, paths: StudyPaths, **extra: Any) -> None:
        state = {}
        if paths.state.exists():
            state = yaml.safe_load(paths.state.read_text()) or {}
        state.update({"phase": self.phase, "stage_notes": self.notes, **extra,
                      "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        reports.write_state(paths, state)


# ------------------------------------------------------------------------------------------ search
def run_search(args: argparse.Namespace, argv: Sequence[str], plan: Plan, budget_s: float) -> Outcome:
    """The search stage: one Optuna study, trials in asynchronous slots, until a limit is hit."""
    recovery = Recovery(plan.study_paths, plan.space)
    study = open_study(args, plan, on_stale=recovery)
    again = recover_trials(study, recovery) if args.resume else []
    slots = slots_for(args, plan.base.env.device)
    forkserver = FORKSERVER.get("server")
    if forkserver is not None:
        try:
            forkserver.wait_ready()  # its imports, once, before the search clock and slots start
        except RuntimeError as err:
            print(f"automl: {err}; starting trials without it", file=sys.stderr)
    reports.write_meta(plan.study_paths, argv=argv, extra={
        "mode": args.mode, "storage": plan.storage_url, "search_method": args.search_method,
        "pruner": args.pruner, "slots": len(slots), "budget_hours": args.budget_hours,
        "hp_trials": args.hp_trials, "overrides": list(args.overrides), "frames_per_trial": plan.frames,
        "grace_frames": plan.grace_frames, "pruning": plan.pruning.as_dict(), "retried_trials": again})
    scoring = plan.base.scoring
    settings = SearchSettings(
        space=plan.space, worker=worker_command(args), user_overrides=list(args.overrides),
        hp_trials=args.hp_trials, budget_s=budget_s, frames=plan.frames,
        eval_frequency=plan.base.train.eval_frequency, slots=slots,
        plateau_patience=scoring.plateau_patience, plateau_min_delta=scoring.plateau_min_delta,
        drop=scoring.drop, grace_frames=plan.grace_frames, trial_timeout=args.trial_timeout,
        max_failure_rate=args.max_failure_rate, target_score=args.target_score,
        forkserver=forkserver, recovery=recovery)
    console = QuietConsole() if args.quiet else LiveConsole()
    console.message(f"automl: study {plan.study_paths.name} in {plan.study_paths.root}; "
                    f"{len(slots)} slot(s), {args.hp_trials} trials of {plan.frames:,} frames, "
                    f"search budget {budget_s / 3600:.2f} h")
    console.message(f"automl: {plan.pruning.describe()}")
    with console:
        outcome = Scheduler(study, plan.study_paths, settings, console).run()
    counts = ", ".join(f"{k} {v}" for k, v in outcome.finished.items() if v) or "no trial ended"
    console.message(f"automl: search ended ({outcome.stopped_by}): {counts}")
    if outcome.stopped_by == "infeasible":  # bad input: one error line, exit 2
        raise ConfigError(file=plan.space.source, key="constraints",
                          value=[c.text for c in plan.space.constraints],
                          rule=f"{search_loop.MAX_CONSTRAINT_REJECTIONS} sampled configurations in a row "
                          "violated them, so the space looks infeasible",
                          fix="loosen the constraints or widen the parameter ranges")
    if outcome.message:
        print(f"automl: {outcome.message}", file=sys.stderr)
    return outcome


# -------------------------------------------------------------------------------------- validation
def _trial_file(study_paths: StudyPaths, number: int) -> dict[str, Any]:
    return json.loads(study_paths.trial_config(number).read_text())


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get(records.PHASE, "search") == "search" and t.value is not None]
    return sorted(done, key=lambda t: t.value, reverse=True)  # type: ignore[arg-type, return-value]


def _run_seconds(study_paths: StudyPaths, trial: optuna.trial.FrozenTrial, *,
                 multiplier: float = 1.0) -> float | None:
    """Expected time of one more run of this trial's configuration (train.frames x `multiplier`),
    at the rate its own search run trained."""
    frames = load_run_config(_trial_file(study_paths, trial.number)["base_overrides"]).train.frames
    trained, wall = trial.user_attrs.get(records.FRAMES), trial.user_attrs.get(records.WALL_S)
    if not isinstance(trained, int) or not isinstance(wall, (int, float)):
        return None
    return seconds_for(int(frames * multiplier), trained_frames=trained, wall_s=float(wall))


def _fresh_seeds(study_paths: StudyPaths, study: optuna.Study, count: int) -> list[int]:
    used = set()
    for t in study.get_trials(deepcopy=False):
        try:
            base = _trial_file(study_paths, t.number).get("base_overrides", [])
        except (OSError, ValueError):
            continue
        used |= {int(o.split("=", 1)[1]) for o in base if o.startswith("train.seed=")}
    seeds, seed = [], VALIDATION_SEED_BASE
    while len(seeds) < count:
        if seed not in used:
            seeds.append(seed)
        seed += 1
    return seeds


def _slots(args: argparse.Namespace, study_paths: StudyPaths, trial: int) -> list[Slot]:
    """Slots for re-running a search trial's configuration (its own env.device)."""
    base = load_run_config(_trial_file(study_paths, trial)["base_overrides"])
    return slots_for(args, base.env.device)


def _earlier_result(job: Job) -> JobResult | None:
    """A validation run that completed in an earlier, interrupted session: kept, not run again."""
    summary = read_summary(RunPaths(job.run_dir).summary) or {}
    score = summary.get("score")
    if summary.get("status") != reasons.STATUS_COMPLETED or not isinstance(score, (int, float)):
        return None
    return JobResult(job=job, reason=reasons.COMPLETED, score=float(score),
                     frames=int(summary.get("frames") or 0), wall_s=float(summary.get("wall_s") or 0))


def _validate_command(args: argparse.Namespace, study_paths: StudyPaths) -> str:
    """The command that continues an interrupted validation (runs that completed are kept)."""
    words = ["uv", "run", "automl.py", "--mode", "validate", "--study-name", study_paths.name,
             "--validate-top", str(args.validate_top), "--validate-seeds", str(args.validate_seeds)]
    if args.storage:
        words += ["--storage", args.storage]
    return shlex.join(words)


def _fit_validation(args: argparse.Namespace, study_paths: StudyPaths,
                    top: list[optuna.trial.FrozenTrial], slots: int, deadline: float,
                    log: StageLog) -> tuple[list[optuna.trial.FrozenTrial], int] | None:
    """The configurations and seed count that fit before the deadline, each run expected to take
    what its search trial took (the notes say what was cut); None when nothing fits."""
    estimates = [_run_seconds(study_paths, t) for t in top]
    if any(e is None for e in estimates):  # a trial without a recorded rate: validate it all
        return top, args.validate_seeds
    left = deadline - time.monotonic()
    fit = fit_validation([float(e) for e in estimates if e is not None],
                         seeds=args.validate_seeds, slots=slots, time_left=left)
    if fit is None:
        log.note(study_paths, f"validation skipped: budget too small (the top configuration "
                 f"trains in ~{estimates[0]:.0f} s, {max(left, 0):.0f} s left for validation); "
                 "raise --budget-hours or the validate share")
        return None
    if fit.note:
        log.note(study_paths, fit.note)
    return top[:fit.configs], fit.seeds


def run_validation(args: argparse.Namespace, study_paths: StudyPaths, study: optuna.Study,
                   deadline: float, log: StageLog) -> list[Any]:
    """Top K configurations x M fresh seeds, full frames, no pruning; writes validation.csv.

    Ctrl-C / SIGTERM: the runs that completed are written, then Interrupted is raised."""
    from automl.analysis.validation import (
        config_id_for,
        equal_seeds,
        summarize_validation,
        write_validation_csv,
    )

    log.phase = "validation"
    top = _completed(study)[: args.validate_top]
    if not top:
        log.note(study_paths, "validation skipped: the search completed no trial")
        return []
    slots = _slots(args, study_paths, top[0].number)
    fitted = _fit_validation(args, study_paths, top, len(slots), deadline, log)
    if fitted is None:
        return []
    top, seed_count = fitted
    seeds = _fresh_seeds(study_paths, study, seed_count)
    jobs = [Job(name=f"{config_id_for(t.number)}_seed{seed}",
                overrides=[*_trial_file(study_paths, t.number)["base_overrides"], f"train.seed={seed}"],
                run_dir=study_paths.validation_dir / f"{config_id_for(t.number)}_seed{seed}")
            for seed in seeds for t in top]  # seed-major: a cut leaves every config some seeds
    earlier = [r for r in map(_earlier_result, jobs) if r is not None]
    if earlier:
        log.note(study_paths, f"validation: {len(earlier)} run(s) completed in an earlier session "
                 "are kept")
    pending = [j for j in jobs if j.name not in {r.job.name for r in earlier}]
    log.write(study_paths, validation={"configs": [config_id_for(t.number) for t in top],
                                       "seeds": seeds, "runs": len(jobs)})
    print(f"automl: validating {len(top)} configuration(s) x {len(seeds)} fresh seed(s) "
          f"in {len(slots)} slot(s)")
    results, cut = run_jobs(pending, worker=worker_command(args), slots=slots, deadline=deadline,
                            forkserver=FORKSERVER.get("server"),
                            on_done=lambda r: print(f"automl: validation {r.job.name}: {r.reason}, "
                                                    f"score {r.score:.4g}"))
    results = earlier + results
    done = [r for r in results if r.reason != reasons.BUDGET]
    if cut == INTERRUPTED:
        log.note(study_paths, f"validation interrupted after {len(done)} of {len(jobs)} runs")
    elif cut:
        log.note(study_paths, f"validation cut by the budget after {len(results)} of {len(jobs)} runs")
    # Runs cut by the deadline (or the interrupt) say nothing of their configuration: left out.
    by_name = {r.job.name: r for r in done}
    names = [(config_id_for(t.number), t.number, seed) for seed in seeds for t in top]
    rows = [(c, n, seed, by_name[f"{c}_seed{seed}"].score) for c, n, seed in names
            if f"{c}_seed{seed}" in by_name]
    rows, dropped = equal_seeds(rows)
    if dropped:
        log.note(study_paths, f"validation compares every configuration over its first "
                 f"{dropped} seed(s): the others did not finish")
    summary = summarize_validation(rows, search_scores={t.number: float(t.value) for t in top})
    write_validation_csv(study_paths, rows, summary)
    if cut == INTERRUPTED:
        log.phase = "interrupted"
        log.write(study_paths)
        raise Interrupted("validation", _validate_command(args, study_paths))
    return summary


# ------------------------------------------------------------------------------------------- final
def _groups(user_overrides: Sequence[str]) -> dict[str, str]:
    return {k: v for k, _, v in (o.partition("=") for o in user_overrides) if k in GROUPS}


def run_final(args: argparse.Namespace, study_paths: StudyPaths, study: optuna.Study, trial: int,
              deadline: float, log: StageLog) -> JobResult | None:
    """Train the chosen configuration once more, frames x --final-frames-multiplier."""
    log.phase = "final"
    config = _trial_file(study_paths, trial)
    frames = load_run_config(config["base_overrides"]).train.frames
    final_frames = int(frames * args.final_frames_multiplier)
    chosen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial)
    duration = _run_seconds(study_paths, chosen, multiplier=args.final_frames_multiplier)
    left = deadline - time.monotonic()
    if duration is not None and duration > left:
        log.note(study_paths, f"final run skipped: budget too small (needs ~{duration:.0f} s at the "
                 f"rate trial {trial} trained, {max(left, 0):.0f} s left)")
        return None
    run_dir = study_paths.root / "final"
    job = Job(name="final", overrides=[*config["base_overrides"], f"train.frames={final_frames}"],
              run_dir=run_dir)
    print(f"automl: final run of trial {trial}'s configuration, {final_frames:,} frames")
    results, cut = run_jobs([job], worker=worker_command(args),
                            slots=_slots(args, study_paths, trial)[:1], deadline=deadline,
                            forkserver=FORKSERVER.get("server"))
    result = results[0]
    if cut == INTERRUPTED:
        log.note(study_paths, f"final run interrupted at {result.frames:,} of {final_frames:,} frames")
        log.phase = "interrupted"
        log.write(study_paths)
        again = shlex.join(["uv", "run", "train_one.py", *job.overrides, f"run_dir={run_dir}"])
        raise Interrupted("final run", again)
    log.note(study_paths, f"final run: {result.reason}, score {result.score:.4g}, "
             f"checkpoint {run_dir / 'model.pt'}")
    return result


# ------------------------------------------------------------------------------------------- modes
def _existing(args: argparse.Namespace) -> tuple[StudyPaths, optuna.Study]:
    if not args.study_name:
        raise ConfigError(file="command line", key="--study-name", value=None,
                          rule=f"--mode {args.mode} works on an existing study",
                          fix="add --study-name NAME (a folder under starter_kit_log/automl/)")
    sp = StudyPaths.for_study(args.study_name)
    if not sp.journal.exists() and not args.storage:
        raise ConfigError(file=str(sp.root), key="--study-name", value=args.study_name,
                          rule="no study of that name exists", fix="check the name (analyze.py lists them)")
    study = load_study(sp, args.storage)
    if args.mode == "validate" and not _completed(study):
        raise ConfigError(file=str(sp.root), key="--study-name", value=args.study_name,
                          rule="the study has no completed trial to validate",
                          fix="run --mode search first (or give it more budget)")
    return sp, study


def finish(args: argparse.Namespace, sp: StudyPaths, study: optuna.Study, validated: list[Any],
           deadline: float, log: StageLog, *, final: bool) -> None:
    """Choose, run the final stage, export and report; print the summary."""
    from automl.analysis.export import export_best_config, export_validated_best, trial_config_values
    from automl.analysis.reports import write_reports
    from automl.analysis.validation import choose_best, selection_note

    best_trial, exported = None, None
    if validated and any(r.n for r in validated):
        chosen = choose_best(validated)
        best_trial = chosen.source_trial
        user = _trial_file(sp, best_trial).get("user_overrides", [])
        exported = export_validated_best(sp, validated, study=study, groups=_groups(user))
        log.note(sp, selection_note(validated))
    elif _completed(study):
        best_trial = _completed(study)[0].number
        user = _trial_file(sp, best_trial).get("user_overrides", [])
        exported = export_best_config(
            sp, config_values=trial_config_values(sp, best_trial, study=study),
            source={"trial": best_trial, "search_score": _completed(study)[0].value,
                    "validated": False}, groups=_groups(user))
        log.note(sp, f"the choice rests on the search alone (trial {best_trial}): no validation result")
    if final and best_trial is not None:
        run_final(args, sp, study, best_trial, deadline, log)
    log.phase = "report"
    write_reports(sp, study=study)
    log.phase = "done"
    log.write(sp)
    print_summary(sp, validated, best_trial, exported, log)


def print_summary(sp: StudyPaths, validated: list[Any], best_trial: int | None,
                  exported: tuple[Any, Any] | None, log: StageLog) -> None:
    print("\nautoml: summary")
    if best_trial is None:
        print("  no completed trial: nothing to choose")
    else:
        chosen = next((r for r in validated if r.source_trial == best_trial), None)
        if chosen is not None and chosen.n:
            print(f"  best validated configuration: trial {best_trial}, score {chosen.mean:.4g} "
                  f"(95% CI {chosen.ci_low:.4g} .. {chosen.ci_high:.4g}, {chosen.n} seeds)")
        else:
            print(f"  best configuration (not validated): trial {best_trial}")
    for note in log.notes:
        print(f"  note: {note}")
    if exported:
        print(f"  best config: {exported[0]}  (Hydra preset: {exported[1]})")
    print(f"  importance: {sp.importance_yaml}")
    print(f"  plots: {sp.plots_dir}")
    print(f"  all trials: {sp.experiment_df_csv}")


FORKSERVER: dict[str, Any] = {}
"""The pipeline's one warm fork server (search, validation and final runs share it)."""


def run_mode(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Dispatch on --mode, with a fork server for the real worker; returns the exit code."""
    try:
        return _run_mode(args, argv)
    finally:
        server = FORKSERVER.pop("server", None)
        if server is not None:
            server.close()


def _run_mode(args: argparse.Namespace, argv: Sequence[str]) -> int:
    start = time.monotonic()
    budget_s = args.budget_hours * 3600.0
    shares = stage_shares(args.stage_shares)
    log = StageLog()
    if args.mode in ("search", "stage"):
        plan = make_plan(args)
        FORKSERVER["server"] = start_forkserver(args)
        search_budget = budget_s * (shares[0] if args.mode == "stage" else 1.0)
        outcome = run_search(args, argv, plan, search_budget)
        sp = plan.study_paths
        study = load_study(sp, args.storage)
        if outcome.stopped_by in ("failures", "interrupted"):
            if outcome.stopped_by == "interrupted":
                print(f"automl: interrupted; continue with --resume --study-name {sp.name}",
                      file=sys.stderr)
            from automl.analysis.reports import write_reports

            write_reports(sp, study=study)
            return EXIT_FAILURE
        if args.mode == "search":
            from automl.analysis.reports import write_reports

            write_reports(sp, study=study)
            print(f"automl: reports in {sp.root}")
            return EXIT_OK
        validated = run_validation(args, sp, study, start + budget_s * (shares[0] + shares[1]), log)
        finish(args, sp, study, validated, start + budget_s, log, final=True)
        return EXIT_OK
    sp, study = _existing(args)
    if args.mode == "validate":
        FORKSERVER["server"] = start_forkserver(args)
        validated = run_validation(args, sp, study, start + budget_s, log)
        finish(args, sp, study, validated, start + budget_s, log, final=False)
        return EXIT_OK
    from automl.analysis.validation import read_validation_csv

    log.phase = "report"
    finish(args, sp, study, read_validation_csv(sp), start + budget_s, log, final=False)
    return EXIT_OK
