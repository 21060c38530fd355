"""--search-method pbt in the modes: the population's study opened (or resumed, or joined), its plan
settled and stored, the loop run; then its reports, and in stage mode the winner's schedule replayed
on fresh seeds next to the starting configuration, and the winner's final policy evaluated.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import optuna

from automl import paths
from automl.analysis.export import export_best_config
from automl.analysis.pbt import PbtView, pbt_dir, replay_steps, schedule_override
from automl.analysis.reports import write_reports
from automl.analysis.validation import BASELINE, NO_TRIAL
from automl.analysis.yaml_style import dump_yaml
from automl.errors import ConfigError
from automl.paths import StudyPaths, atomic_write_text
from automl.requests import Request
from automl.reruns import Candidate, StageLog, fresh_seeds, trial_slots, validate_candidates
from automl.search.optuna_loop.console import QuietConsole
from automl.search.pbt.explore import check_mutable
from automl.search.pbt.loop import SEGMENT_KEYS, PbtLoop, PbtSettings
from automl.search.pbt.plan import PbtPlan, plan_pbt
from automl.search.pbt.population import Segment, starting_values
from automl.search.plan import Plan, open_study, recover_trials, slots_for, worker_command
from automl.search.space import Feasibility, override_key
from automl.search.study import records, reports
from automl.search.study.recovery import Recovery
from automl.search.study.shared import Outcome
from automl.search.trials.forkserver import ForkServer
from automl.search.trials.launcher import trial_env, visible_gpus


def pbt_plan_of(request: Request, plan: Plan, slots: int) -> PbtPlan:
    """The plan the flags make for this study's config and slots."""
    return plan_pbt(request.search.pbt, plan.base, slots=slots, episode_frames=plan.episode_frames,
                    seed=request.study.seed, gpus=len(visible_gpus()))


def settle_plan(study: optuna.Study, fresh: PbtPlan, recovery: Recovery) -> PbtPlan:
    """The study's stored plan; a new study stores `fresh`, under the study's lock, so that machines
    starting at once all follow the first one's plan."""
    with recovery.locked(study):
        stored = study.user_attrs.get(records.PBT_PLAN)
        if isinstance(stored, dict):
            return PbtPlan.from_dict(stored)
        study.set_user_attr(records.PBT_PLAN, fresh.as_dict())
        return fresh


def run_pbt_search(request: Request, plan: Plan, budget_s: float,
                   forkserver: ForkServer | None) -> Outcome:
    """The population trains until every member has its frames, or a limit is hit."""
    check_mutable(plan.space)
    starting_values(plan.space, Feasibility.compose(plan.space, list(plan.overrides)).base)
    slots = slots_for(request.resources, plan.base.env.device)
    fresh = pbt_plan_of(request, plan, len(slots))  # bad flags exit 2 before the study exists
    recovery = Recovery(plan.study_paths, plan.space)
    study = open_study(request, plan, on_stale=recovery)
    pbt = settle_plan(study, fresh, recovery)
    if pbt != fresh:
        print("automl: the study's own population plan stands (its first session's); flags and "
              "slots that differ change nothing", file=sys.stderr)
    again = recover_trials(study, recovery) if request.study.resume else []
    if forkserver is not None:
        try:
            forkserver.wait_ready()
        except RuntimeError as err:
            print(f"automl: {err}; starting segments without it", file=sys.stderr)
    reports.write_meta(plan.study_paths, argv=request.argv, extra={
        "mode": request.mode, "storage": plan.storage_url, "search_method": "pbt",
        "slots": len(slots), "budget_hours": request.budget.hours,
        "overrides": list(plan.overrides), "frames_per_member": pbt.frames, "pbt": pbt.as_dict(),
        "retried_trials": again})
    settings = PbtSettings(plan=pbt, space=plan.space, worker=worker_command(request.resources),
                           user_overrides=list(plan.overrides), base=plan.base, budget_s=budget_s,
                           slots=slots, trial_timeout=request.budget.trial_timeout,
                           forkserver=forkserver, recovery=recovery)
    console = QuietConsole()
    console.message(f"automl: study {plan.study_paths.name} in {plan.study_paths.root}; "
                    f"{len(slots)} slot(s), search budget {budget_s / 3600:.2f} h")
    console.message(f"automl: {pbt.describe()}")
    with console:
        outcome = PbtLoop(study, plan.study_paths, settings, console).run()
    counts = ", ".join(f"{k} {v}" for k, v in outcome.finished.items() if v) or "no segment ended"
    console.message(f"automl: population-based training ended ({outcome.stopped_by}): {counts}")
    if outcome.message:
        print(f"automl: {outcome.message}", file=sys.stderr)
    return outcome


# -------------------------------------------------------------------------- after the population
WINNER = "pbt_winner"
"""validation.csv's and configs/'s id of the winner's schedule, replayed from scratch."""


def _user(plan_overrides: list[str]) -> list[str]:
    return [o for o in plan_overrides if override_key(o) not in SEGMENT_KEYS]


def configuration_records(sp: StudyPaths, study: optuna.Study, view: PbtView,
                          winner: Segment) -> tuple[dict[str, Any], dict[str, Any]]:
    """configs/pbt_winner.json (the winner's schedule, replayed from scratch over train.frames)
    and configs/baseline.json (the starting configuration: member 0's first values), written."""
    user = _user(list(study.user_attrs.get(records.STUDY_OVERRIDES) or []))
    space = view.space
    steps = replay_steps(view.schedule(view.lineage(winner)))
    # The frames the winner trained (all of train.frames, unless the budget ended the population
    # early): the replay and the start train as many.
    frames = steps[-1]["until"]
    first = dict(view.lineage(winner)[0].values)
    fixed = view.fixed_values(winner)
    winner_values = {**space.config_values(first), **fixed, "train.frames": frames,
                     "train.schedule": steps}
    winner_overrides = [*space.fixed_overrides(), *space.overrides(first), *user,
                        f"train.frames={frames}", schedule_override(steps)]
    start_segment = next(s for s in view.population.segments
                         if s.member == 0 and s.generation == 0)
    start = dict(start_segment.values)
    records_ = (
        {"config_id": WINNER, "source_trial": winner.number, "params": first,
         "config_values": winner_values, "base_overrides": winner_overrides, "user_overrides": user,
         "member": winner.member, "score": winner.score},
        {"config_id": BASELINE, "source_trial": NO_TRIAL, "params": start,
         "config_values": {**space.config_values(start), "train.frames": frames},
         "base_overrides": [*space.fixed_overrides(), *space.overrides(start), *user,
                            f"train.frames={frames}"], "user_overrides": user})
    for record in records_:
        atomic_write_text(sp.config_file(str(record["config_id"])),
                          json.dumps(record, indent=2, default=str) + "\n")
    return records_


def run_pbt_validation(request: Request, sp: StudyPaths, study: optuna.Study, view: PbtView,
                       deadline: float, log: StageLog, forkserver: ForkServer | None) -> list[Any]:
    """The winner's schedule replayed from scratch on fresh seeds next to the starting
    configuration on the same seeds (paired); validation.csv."""
    log.phase = "validation"
    winner = view.winner()
    if winner is None:
        log.note(sp, "validation skipped: no member of the last complete generation has a score")
        return []
    chosen, start = configuration_records(sp, study, view, winner)
    if chosen["config_values"]["train.frames"] < view.plan.frames:
        log.note(sp, f"the population stopped at {chosen['config_values']['train.frames']:,} of "
                 f"{view.plan.frames:,} frames per member: the schedule and the start are validated "
                 "at that length")
    top = [Candidate(WINNER, winner.number, chosen["base_overrides"], winner.trial),
           Candidate(BASELINE, NO_TRIAL, start["base_overrides"], winner.trial)]
    print(f"automl: the winner's schedule (member {winner.member}) replayed from scratch, next to "
          f"the starting configuration")
    return validate_candidates(request, sp, study, top, seed_count=request.validation.seeds,
                               slots=trial_slots(request.resources, sp, winner.number),
                               deadline=deadline, log=log, forkserver=forkserver,
                               means={winner.number: winner.score})


def evaluate_final_policy(request: Request, sp: StudyPaths, study: optuna.Study, view: PbtView,
                          log: StageLog, *, seed: int, deadline: float) -> dict[str, Any] | None:
    """The winner's final policy (its last segment's model.pt, copied to pbt/model.pt) on fresh
    episodes (train_one's eval mode), before the deadline: pbt/final_policy.yaml and a stage note;
    None where there is no policy, no time left, or it cannot run."""
    winner = view.winner()
    model = sp.trial_run(winner.number).model if winner is not None else None
    if winner is None or model is None or not model.exists():
        return None
    left = deadline - time.monotonic()
    if left < 10:
        log.note(sp, "the final policy was not evaluated: the budget is spent")
        return None
    config = json.loads(sp.trial_config(winner.number).read_text())
    base = [o for o in config["base_overrides"] if override_key(o) not in SEGMENT_KEYS]
    slot = trial_slots(request.resources, sp, winner.number)[0]
    command = [*worker_command(request.resources), *base, "mode=eval", f"checkpoint={model}",
               f"train.seed={seed}", f"train.threads={slot.threads}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=trial_env(slot),
                              cwd=paths.repo_root(), timeout=left,
                              check=False)
    except subprocess.TimeoutExpired:
        log.note(sp, "the final policy's evaluation timed out")
        return None
    text = done.stdout
    start = text.find("{")
    try:
        metrics = json.loads(text[start:]) if done.returncode == 0 and start >= 0 else None
    except ValueError:
        metrics = None
    if not isinstance(metrics, dict):
        log.note(sp, f"the final policy's evaluation failed (exit {done.returncode}): "
                 f"{done.stderr.strip()[-300:]}")
        return None
    record = {"member": winner.member, "trial": winner.number, "frames": winner.reached,
              "seed": seed, **metrics}
    atomic_write_text(pbt_dir(sp) / "final_policy.yaml", dump_yaml(record))
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                      if isinstance(v, float) and k in ("score", "success_rate", "return",
                                                        "termination_rate"))
    log.note(sp, f"the winner's final policy (member {winner.member}, {winner.reached:,} frames) on "
             f"fresh episodes (seed {seed}): {shown}")
    return record


def finish_pbt(request: Request, sp: StudyPaths, study: optuna.Study, log: StageLog, *,
               deadline: float, validate: bool, forkserver: ForkServer | None) -> None:
    """After the population: (stage) the schedule validated and the final policy evaluated; the
    export, the reports and the summary."""
    from automl.finish import finish, groups_of, print_summary

    view = PbtView.read(sp, study)
    if view is None:
        log.note(sp, "no population to report: the study's search space cannot be read")
        return
    validated = (run_pbt_validation(request, sp, study, view, deadline, log, forkserver)
                 if validate else [])
    if validate:
        seeds = fresh_seeds(sp, study, request.validation.seeds + 1)
        evaluate_final_policy(request, sp, study, view, log, seed=seeds[-1], deadline=deadline)
    if validated and any(r.n for r in validated):
        finish(request, sp, study, validated, deadline, log, final=False)
        return
    winner = view.winner()
    exported = None
    if winner is not None:
        chosen, _ = configuration_records(sp, study, view, winner)
        try:
            exported = export_best_config(sp, config_values=chosen["config_values"], source={
                "method": "pbt", "trial": winner.number, "member": winner.member,
                "search_score": winner.score, "frames": winner.reached, "validated": False},
                groups=groups_of(chosen["user_overrides"]), user_overrides=chosen["user_overrides"])
        except (ConfigError, ValueError) as err:
            log.note(sp, f"best_config.yaml not written: {getattr(err, 'message', err)}")
        log.note(sp, f"the winner: member {winner.member}, score {winner.score:.4g} at "
                 f"{winner.reached:,} frames; its schedule is exported, not validated")
    else:
        log.note(sp, "no winner: no generation has every member's result with a score")
    log.phase = "report"
    write_reports(sp, study=study)
    log.phase = "search finished" if not validate else "done"
    log.write(sp)
    print_summary(sp, [], WINNER if winner is not None else None, exported, log, None)
