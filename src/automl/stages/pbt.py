"""--search-method pbt in the modes: the population as a search method of the shared skeleton
(its plan settled and stored in the study, its loop), and after it the winner's schedule replayed
on fresh seeds next to the starting configuration, and the winner's final policy evaluated.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import optuna

from automl.analysis.pbt import PbtView, pbt_dir
from automl.analysis.validation import BASELINE, NO_TRIAL, WINNER, ValidationResult
from automl.paths import atomic_write_text
from automl.requests import Request, ValidationOptions
from automl.search.pbt.checkpoints import Checkpoints, open_store, record_store, store_url
from automl.search.pbt.decide import starting_values
from automl.search.pbt.explore import check_mutable
from automl.search.pbt.loop import SEGMENT_KEYS, PbtLoop, PbtSettings
from automl.search.pbt.plan import PbtPlan, largest_update, plan_pbt
from automl.search.pbt.population import Population, Segment
from automl.search.plan import Plan, worker_command
from automl.search.space import Feasibility, hydra_value, override_key
from automl.search.study import records
from automl.search.study.recovery import Recovery
from automl.search.study.shared import Outcome
from automl.search.study.storage import LockTimeout
from automl.search.trials.gpus import visible_gpus
from automl.search.trials.launcher import Slot
from automl.stages.candidates import Candidate, composed_start, fresh_seeds
from automl.stages.context import Stages
from automl.stages.pbt_answer import hand_back_policy, search_verdict
from automl.stages.report import Choice, choose, report, write_best
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
        self.checkpoints: Checkpoints | None = None

    def check(self, slots: list[Slot]) -> None:
        """A space with nothing to perturb, bad PBT flags, an S3 store it cannot use: exit 2."""
        plan = self.plan
        check_mutable(plan.space)
        _, self.moved = starting_values(plan.space,
                                        Feasibility.compose(plan.space, list(plan.overrides)).base)
        store = self.request.study.artifact_store
        if store is not None and store.startswith("s3://"):
            open_store(store)  # a bucket it cannot use: exit 2 before the study exists
        gpus = len(visible_gpus())
        self.fresh = plan_pbt(self.request.search.pbt, plan.base, slots=len(slots),
                              episode_frames=plan.episode_frames, seed=self.request.study.seed,
                              gpus=gpus, most_update=largest_update(plan.space, plan.base, gpus=gpus),
                              section=plan.space.pbt)

    def opened(self, run: Opened) -> dict[str, Any]:
        """The study's own population plan (its first session's) stands; its artifact store."""
        assert self.fresh is not None
        self.pbt = settle_plan(run.study, self.fresh, run.recovery)
        with run.recovery.locked(run.study):
            url = store_url(self.request.study.artifact_store, run.study, self.plan.study_paths)
        # Opened outside the lock (an S3 store's check waits on the network), recorded once it
        # opened: a store that cannot be used exits 2 and is never the one joiners are sent to.
        self.checkpoints = Checkpoints(run.study, self.plan.study_paths, url)
        with run.recovery.locked(run.study):
            record_store(run.study, url)
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
                               forkserver=run.forkserver, recovery=run.recovery,
                               checkpoints=self.checkpoints)
        outcome = PbtLoop(run.study, plan.study_paths, settings, console).run()
        assert self.checkpoints is not None
        population = Population.of(run.study, self.pbt, plan.space)
        winner = population.winner()
        if winner is not None:  # its policy on this machine, for the reports and the hand-back
            self.checkpoints.model_of(winner)
            if population.finished():
                with contextlib.suppress(LockTimeout), run.recovery.locked(run.study):
                    self.checkpoints.retain(population, winner=winner)
        return outcome

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
    from automl.analysis.verdict import read_race

    raced = len(read_race(st.paths).get("seeds") or []) if validate else 0
    seeds = fresh_seeds(st, max(options.seeds if validate else 0, raced) + 1)  # one no replay ran
    policy = hand_back_policy(st, view, seed=seeds[-1], deadline=deadline)
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
    if winner is not None:
        configuration_records(st, view, winner)  # configs/pbt_winner.json: its schedule, on record
        write_best(st, chosen=None, best={"config_id": WINNER, "trial": winner.number,
                                          "score": winner.score, "seeds": 1, "basis": "search",
                                          "member": winner.member, "frames": winner.reached,
                                          "answer": "policy" if policy else "schedule"})
    else:
        st.note("no winner: no complete generation has a member with a score")
    verdict = search_verdict(winner, policy)
    answer = f"the winner's trained policy, {pbt_dir(st.paths) / 'model.pt'}" if policy else None
    report(st, [], Choice(WINNER if winner is not None else None, None, verdict, answer=answer),
           done=done or ("done" if validate else "search finished"))
    return winner is not None
