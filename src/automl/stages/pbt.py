"""--search-method pbt in the modes: the population as a search method of the shared skeleton
(its plan settled and stored in the study, its loop), and after it the winner's schedule replayed
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
from automl.analysis.pbt import PbtView, pbt_dir
from automl.analysis.validation import BASELINE, NO_TRIAL, WINNER, ValidationResult
from automl.analysis.yaml_style import dump_yaml
from automl.errors import ConfigError
from automl.paths import atomic_write_text
from automl.requests import Request, ValidationOptions
from automl.search.pbt.explore import check_mutable
from automl.search.pbt.loop import SEGMENT_KEYS, PbtLoop, PbtSettings
from automl.search.pbt.plan import PbtPlan, largest_update, plan_pbt
from automl.search.pbt.population import Segment, starting_values
from automl.search.plan import Plan, worker_command
from automl.search.space import Feasibility, hydra_value, override_key
from automl.search.study import records
from automl.search.study.recovery import Recovery
from automl.search.study.shared import Outcome
from automl.search.trials.gpus import visible_gpus
from automl.search.trials.launcher import Slot, trial_env
from automl.stages.candidates import Candidate, composed_start, fresh_seeds
from automl.stages.context import Stages
from automl.stages.report import UNVALIDATED_HINT, Choice, choose, groups_of, report, write_best
from automl.stages.search import Opened
from automl.stages.validate import race


# ------------------------------------------------------------------------------ the population
def settle_plan(study: optuna.Study, fresh: PbtPlan, recovery: Recovery) -> PbtPlan:
    """The study's stored plan; a new study stores `fresh`, under the study's lock, so that machines
    starting at once all follow the first one's plan."""
    with recovery.locked(study):
        stored = study.user_attrs.get(records.PBT_PLAN)
        if isinstance(stored, dict):
            return PbtPlan.from_dict(stored)
        study.set_user_attr(records.PBT_PLAN, fresh.as_dict())
        return fresh


class PbtSearch:
    """Population-based training as the search stage's method: members trained side by side in
    segments, each an Optuna trial resumed from its parent's state."""

    what, unit, live = "population-based training", "segment", False

    def __init__(self, request: Request, plan: Plan) -> None:
        self.request, self.plan = request, plan
        self.fresh: PbtPlan | None = None
        self.pbt: PbtPlan | None = None
        self.moved: list[str] = []
        """What member 0's first values changed to stay inside the space (starting_values)."""

    def check(self, slots: list[Slot]) -> None:
        """A space with nothing to perturb, bad PBT flags: exit 2."""
        plan = self.plan
        check_mutable(plan.space)
        _, self.moved = starting_values(plan.space,
                                        Feasibility.compose(plan.space, list(plan.overrides)).base)
        gpus = len(visible_gpus())
        self.fresh = plan_pbt(self.request.search.pbt, plan.base, slots=len(slots),
                              episode_frames=plan.episode_frames, seed=self.request.study.seed,
                              gpus=gpus, most_update=largest_update(plan.space, plan.base, gpus=gpus),
                              section=plan.space.pbt)

    def opened(self, run: Opened) -> dict[str, Any]:
        """The study's own population plan (its first session's) stands."""
        assert self.fresh is not None
        self.pbt = settle_plan(run.study, self.fresh, run.recovery)
        if self.pbt != self.fresh:
            print("automl: the study's own population plan stands (its first session's); flags and "
                  "slots that differ change nothing", file=sys.stderr)
        return {"search_method": "pbt", "frames_per_member": self.pbt.frames, "pbt": self.pbt.as_dict()}

    def lines(self) -> list[str]:
        """The population's plan."""
        assert self.pbt is not None
        return [f"automl: {self.pbt.describe()}",
                *(f"automl: member 0 stays inside the space: {m}" for m in self.moved)]

    def loop(self, run: Opened, console: Any) -> Outcome:
        """The population's segments over the slots."""
        assert self.pbt is not None
        plan = self.plan
        settings = PbtSettings(plan=self.pbt, space=plan.space, worker=worker_command(self.request.resources),
                               user_overrides=list(plan.overrides), base=plan.base,
                               budget_s=run.budget_s, slots=run.slots,
                               trial_timeout=self.request.budget.trial_timeout,
                               forkserver=run.forkserver, recovery=run.recovery)
        return PbtLoop(run.study, plan.study_paths, settings, console).run()

    def ended(self, outcome: Outcome) -> None:
        """Nothing is bad input once the population ran."""


# -------------------------------------------------------------------------- the winner's replay
def schedule_override(schedule: list[dict[str, Any]]) -> str:
    """The Hydra override `train.schedule=[...]` of steps {until, values}: config keys are written
    bare (Hydra's grammar takes dotted keys, not quoted ones), values as the search writes them."""
    def step(s: dict[str, Any]) -> str:
        values = ",".join(f"{key}:{hydra_value(value)}" for key, value in s["values"].items())
        return f"{{until:{int(s['until'])},values:{{{values}}}}}"
    return "train.schedule=[" + ",".join(step(s) for s in schedule) + "]"


def replay_steps(schedule: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """train.schedule's steps for a schedule: consecutive segments with the same values are one
    step (each step starts new episodes, as each segment did; fewer restarts, the same values at
    every frame)."""
    steps: list[dict[str, Any]] = []
    for segment in schedule:
        if steps and steps[-1]["values"] == segment["values"]:
            steps[-1]["until"] = segment["until"]
        else:
            steps.append({"until": segment["until"], "values": dict(segment["values"])})
    return steps


def _user(plan_overrides: list[str]) -> list[str]:
    return [o for o in plan_overrides if override_key(o) not in SEGMENT_KEYS]


def configuration_records(st: Stages, view: PbtView, winner: Segment) -> tuple[dict[str, Any], dict[str, Any]]:
    """configs/pbt_winner.json (the winner's schedule, replayed from scratch over train.frames)
    and configs/baseline.json (the starting configuration: member 0's first values), written."""
    user = _user(list(st.study.user_attrs.get(records.STUDY_OVERRIDES) or []))
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
    # The start is the composed configuration, as in a search: member 0's first values unless the
    # space did not hold one of them (population.starting_values).
    start_values, start_overrides, _ = composed_start(space, user)
    start = {p.name: start_values[p.key] for p in space.params if p.key in start_values}
    records_ = (
        {"config_id": WINNER, "source_trial": winner.number, "params": first,
         "config_values": winner_values, "base_overrides": winner_overrides, "user_overrides": user,
         "member": winner.member, "score": winner.score},
        {"config_id": BASELINE, "source_trial": NO_TRIAL, "params": start,
         "config_values": {**start_values, "train.frames": frames},
         "base_overrides": [*start_overrides, f"train.frames={frames}"], "user_overrides": user})
    for record in records_:
        atomic_write_text(st.paths.config_file(str(record["config_id"])),
                          json.dumps(record, indent=2, default=str) + "\n")
    return records_


def run_pbt_validation(st: Stages, view: PbtView, options: ValidationOptions, *, deadline: float,
                       resume: str) -> list[ValidationResult]:
    """The winner's schedule replayed from scratch on fresh seeds next to the starting
    configuration on the same seeds (paired, raced as any validation); validation.csv."""
    st.log.phase = "validation"
    winner = view.winner()
    if winner is None:
        st.note("validation skipped: no member of the last complete generation has a score")
        return []
    chosen, start = configuration_records(st, view, winner)
    if chosen["config_values"]["train.frames"] < view.plan.frames:
        st.note(f"the population stopped at {chosen['config_values']['train.frames']:,} of "
                f"{view.plan.frames:,} frames per member: the schedule and the start are validated "
                "at that length")
    top = [Candidate(WINNER, winner.number, chosen["base_overrides"], winner.trial),
           Candidate(BASELINE, NO_TRIAL, start["base_overrides"], winner.trial)]
    print(f"automl: the winner's schedule (member {winner.member}) replayed from scratch, next to "
          f"the starting configuration")
    return race(st, top, options=options, most=options.seeds, slots=st.trial_slots(winner.number),
                deadline=deadline, means={winner.number: winner.score}, resume=resume)


def evaluate_final_policy(st: Stages, view: PbtView, *, seed: int, deadline: float) -> dict[str, Any] | None:
    """The winner's final policy (its last segment's model.pt, copied to pbt/model.pt) on fresh
    episodes (train_one's eval mode), before the deadline: pbt/final_policy.yaml and a stage note;
    None where there is no policy, no time left, or it cannot run."""
    winner = view.winner()
    model = st.paths.trial_run(winner.number).model if winner is not None else None
    if winner is None or model is None or not model.exists():
        return None
    left = deadline - time.monotonic()
    if left < 10:
        st.note("the final policy was not evaluated: the budget is spent")
        return None
    config = st.trial_file(winner.number)
    base = [o for o in config["base_overrides"] if override_key(o) not in SEGMENT_KEYS]
    slot = st.trial_slots(winner.number)[0]
    command = [*st.worker(), *base, "mode=eval", f"checkpoint={model}", f"train.seed={seed}",
               f"train.threads={slot.threads}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=trial_env(slot),
                              cwd=paths.repo_root(), timeout=left, check=False)
    except subprocess.TimeoutExpired:
        st.note("the final policy's evaluation timed out")
        return None
    text = done.stdout
    start = text.find("{")
    try:
        metrics = json.loads(text[start:]) if done.returncode == 0 and start >= 0 else None
    except ValueError:
        metrics = None
    if not isinstance(metrics, dict):
        st.note(f"the final policy's evaluation failed (exit {done.returncode}): "
                f"{done.stderr.strip()[-300:]}")
        return None
    record = {"member": winner.member, "trial": winner.number, "frames": winner.reached,
              "seed": seed, **metrics}
    atomic_write_text(pbt_dir(st.paths) / "final_policy.yaml", dump_yaml(record))
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                      if isinstance(v, float) and k in ("score", "success_rate", "return",
                                                        "termination_rate"))
    st.note(f"the winner's final policy (member {winner.member}, {winner.reached:,} frames) on "
            f"fresh episodes (seed {seed}): {shown}")
    return record


def finish_pbt(st: Stages, options: ValidationOptions, *, deadline: float, validate: bool,
               resume: str, done: str | None = None) -> bool:
    """After the population: (stage) the schedule validated and the final policy evaluated; the
    export, the reports and the summary (`done`: the phase it ends in, default by `validate`).
    Whether it named a choice (False: the run has no result to hand back)."""
    view = PbtView.read(st.paths, st.study)
    if view is None:
        st.note("no population to report: the study's search space cannot be read")
        return False
    validated = run_pbt_validation(st, view, options, deadline=deadline, resume=resume) if validate else []
    if validate:
        from automl.analysis.verdict import read_race

        raced = len(read_race(st.paths).get("seeds") or [])
        seeds = fresh_seeds(st, max(options.seeds, raced) + 1)  # one no replay ran
        evaluate_final_policy(st, view, seed=seeds[-1], deadline=deadline)
    if validated and any(r.n for r in validated):
        choice = choose(st, validated, search=None)
        report(st, validated, choice)
        return choice.config_id is not None
    winner = view.winner()
    last = view.last_generation()
    if winner is not None and last is not None and winner.generation < last:
        st.note(f"no segment of generation{'s' if last - winner.generation > 1 else ''} "
                f"{', '.join(map(str, range(winner.generation + 1, last + 1)))} has a score (see "
                f"trial_final.csv): the winner is generation {winner.generation}'s, the last with one")
    exported = None
    if winner is not None:
        chosen, _ = configuration_records(st, view, winner)
        from automl.analysis.export import export_best_config

        try:
            exported = export_best_config(st.paths, config_values=chosen["config_values"], source={
                "method": "pbt", "config_id": WINNER, "trial": winner.number, "member": winner.member,
                "search_score": winner.score, "frames": winner.reached, "validated": False},
                groups=groups_of(chosen["user_overrides"]), user_overrides=chosen["user_overrides"])
        except (ConfigError, ValueError) as err:
            st.note(f"best_config.yaml not written: {getattr(err, 'message', err)}")
        st.note(f"the winner: member {winner.member}, score {winner.score:.4g} at "
                f"{winner.reached:,} frames; its schedule is exported, not validated")
        write_best(st, chosen=None, best={"config_id": WINNER, "trial": winner.number,
                                          "score": winner.score, "seeds": 1, "basis": "search",
                                          "member": winner.member, "frames": winner.reached})
    else:
        st.note("no winner: no complete generation has a member with a score")
    verdict = (f"the population's winner, member {winner.member}, score {winner.score:.4g} at "
               f"{winner.reached:,} frames, not validated ({UNVALIDATED_HINT})"
               if winner is not None else "no complete generation has a member with a score")
    report(st, [], Choice(WINNER if winner is not None else None, exported, verdict),
           done=done or ("done" if validate else "search finished"))
    return winner is not None
