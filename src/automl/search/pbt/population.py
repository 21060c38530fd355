"""The population as the study holds it, and its next generation.

Every segment is a trial of the study (phase `pbt`) whose user attributes say which member it
trains, its generation, the trial whose state.pt it continues (its parent) and the frames it starts
and ends at. So the population's state is rebuilt from the study and the checkpoints alone, on any
machine and after any crash: `Population.of` reads it, `first_generation` and `next_generation`
decide the segments to queue. The decisions draw from a generator seeded by the plan's seed and the
generation, so every orchestrator of a shared study would decide the same; one of them queues a
generation, under the study's lock (loop.py).

A segment has a result when it ended by itself: completed (its score), or failed (error, timeout,
diverged: no score, its member is replaced). One that was interrupted (the budget, Ctrl-C, a dead
orchestrator) has none: it is queued again as it was (study/recovery.py), with its parent and
values.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from automl.search.pbt.exploit import STD_FACTOR, Replacement, exploit, group_size, ranked
from automl.search.pbt.explore import draw_index, perturb
from automl.search.pbt.plan import PbtPlan
from automl.search.space import SearchSpace, thaw
from automl.search.study import records
from automl.search.study.recovery import queued_values

NO_PARENT = -1
"""The parent of a segment that trains from scratch."""
MAX_DRAWS = 100
"""Perturbations (or samples) drawn for one member before its values are kept as they were (or the
start is taken): each must meet the space's constraints."""


@dataclass(frozen=True)
class SegmentSpec:
    """A segment to queue: whose, which, from what, with which values."""

    member: int
    generation: int
    parent: int
    """Trial number of the segment whose state.pt it continues (NO_PARENT: from scratch)."""
    values: dict[str, Any]
    """Native values by parameter name."""
    frames_start: int
    frames_end: int
    seed: int
    exploit: Replacement | None = None
    """The exploit step that replaced the member (None: it goes on from its own state)."""

    def queued(self, space: SearchSpace) -> tuple[dict[str, Any], dict[str, Any]]:
        """`study.enqueue_trial`'s params and user attributes."""
        attrs: dict[str, Any] = {
            records.PHASE: records.PHASE_PBT, records.MEMBER: self.member,
            records.GENERATION: self.generation, records.PARENT: self.parent,
            records.FRAMES_START: self.frames_start, records.FRAMES_END: self.frames_end,
            records.SEGMENT_SEED: self.seed}
        if self.exploit is not None:
            attrs[records.DONOR] = self.exploit.donor
            attrs[records.EXPLOIT] = {"donor_score": finite_or_none(self.exploit.donor_score),
                                      "replaced_score": finite_or_none(self.exploit.replaced_score),
                                      "margin": finite_or_none(self.exploit.margin)}
        return space.to_optuna(self.values), attrs


def finite_or_none(x: float) -> float | None:
    """`x` as a float, None where it is NaN or infinite (YAML and JSON readers disagree on those)."""
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class Segment:
    """One segment of the study (a trial of phase `pbt`)."""

    trial: FrozenTrial
    values: dict[str, Any]

    @classmethod
    def of(cls, trial: FrozenTrial, space: SearchSpace) -> Segment:
        params = queued_values(trial)
        try:
            values = space.from_optuna(params)
        except (KeyError, ValueError):  # resumed with another space file: the names it has
            values = dict(params)
        return cls(trial=trial, values=values)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.trial.user_attrs.get(key, default)

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def member(self) -> int:
        return int(self.attr(records.MEMBER))

    @property
    def generation(self) -> int:
        return int(self.attr(records.GENERATION))

    @property
    def parent(self) -> int:
        return int(self.attr(records.PARENT, NO_PARENT))

    @property
    def donor(self) -> int | None:
        donor = self.attr(records.DONOR)
        return None if donor is None else int(donor)

    @property
    def frames_start(self) -> int:
        return int(self.attr(records.FRAMES_START, 0))

    @property
    def frames_end(self) -> int:
        return int(self.attr(records.FRAMES_END, 0))

    @property
    def reached(self) -> int:
        """Frames its state holds (its summary's frames where recorded, else its planned end)."""
        return int(self.attr(records.FRAMES) or self.frames_end)

    @property
    def live(self) -> bool:
        """Queued or running: it will end with a result, or be queued again."""
        return self.trial.state in (TrialState.WAITING, TrialState.RUNNING)

    @property
    def has_result(self) -> bool:
        """Ended by itself: completed, or failed through its own fault."""
        attrs = self.trial.user_attrs
        return (self.trial.state.is_finished() and records.STOP_REASON in attrs
                and not attrs.get(records.INTERRUPTED))

    @property
    def score(self) -> float:
        """Its final score (NaN when it failed or has no result)."""
        if self.trial.state == TrialState.COMPLETE and self.trial.value is not None:
            return float(self.trial.value)
        return math.nan


@dataclass
class Population:
    """The study's segments by generation and member."""

    plan: PbtPlan
    segments: list[Segment]
    results: dict[int, dict[int, Segment]] = field(default_factory=dict)
    """generation -> member -> the segment with its result (the first, where several have one)."""
    queued: dict[int, set[int]] = field(default_factory=dict)
    """generation -> the members with any segment of it in the study (queued, running or ended)."""

    @classmethod
    def of(cls, study: optuna.Study, plan: PbtPlan, space: SearchSpace) -> Population:
        """The population as the study holds it now."""
        segments = [Segment.of(t, space) for t in study.get_trials(deepcopy=False)
                    if records.in_pbt(t) and t.user_attrs.get(records.MEMBER) is not None]
        population = cls(plan=plan, segments=sorted(segments, key=lambda s: s.number))
        for s in population.segments:
            population.queued.setdefault(s.generation, set()).add(s.member)
            if s.has_result:
                population.results.setdefault(s.generation, {}).setdefault(s.member, s)
        return population

    def complete(self, generation: int) -> bool:
        """Every member's segment of `generation` has its result."""
        return len(self.results.get(generation, {})) == self.plan.population

    def due(self) -> int | None:
        """The generation to queue now: 0 in a new study, g + 1 once generation g is complete and
        g + 1 was not queued yet (and is not past the last), or the last generation queued when
        some member has no segment of it (its queueing was cut short); else None."""
        if not self.queued:
            return 0
        last = max(self.queued)
        if len(self.queued[last]) < self.plan.population:
            return last
        if self.complete(last) and last + 1 < self.plan.generations:
            return last + 1
        return None

    def orphans(self) -> list[Segment]:
        """Interrupted segments (their orchestrator stopped or died) whose member and generation
        has no result and nothing queued or running: the latest of each, to run again."""
        settled = {(s.member, s.generation) for s in self.segments if s.live or s.has_result}
        latest: dict[tuple[int, int], Segment] = {}
        for s in self.segments:
            if s.trial.state.is_finished() and not s.has_result \
                    and (s.member, s.generation) not in settled:
                latest[(s.member, s.generation)] = s  # by number: the last one wins
        return list(latest.values())

    def last_complete(self) -> int | None:
        """The last generation with every member's result."""
        done = [g for g in self.results if self.complete(g)]
        return max(done) if done else None

    def winner(self) -> Segment | None:
        """The population's answer: the best-scoring segment of the last complete generation with a
        score (ties: the lower member id). A generation whose every segment failed leaves the one
        before it standing (its states are kept), never nothing; None where no complete generation
        has a score."""
        for generation in sorted((g for g in self.results if self.complete(g)), reverse=True):
            scored = [s for s in self.results[generation].values() if math.isfinite(s.score)]
            if scored:
                return min(scored, key=lambda s: (-s.score, s.member))
        return None

    def finished(self) -> bool:
        """The last generation is complete: every member trained its frames."""
        return self.complete(self.plan.generations - 1)

    def running_or_queued(self) -> int:
        """Segments queued or running (of any orchestrator)."""
        return sum(1 for s in self.segments if s.live)

    def latest(self) -> dict[int, Segment]:
        """Each member's latest segment with a result."""
        out: dict[int, Segment] = {}
        for generation in sorted(self.results):
            out.update(self.results[generation])
        return out


# ------------------------------------------------------------------------------------ decisions
def rng_for(plan: PbtPlan, generation: int) -> random.Random:
    """The draws of the decisions that start `generation` (the same on every machine)."""
    return random.Random(f"pbt:{plan.seed}:{generation}")


def starting_values(space: SearchSpace, composed: Any) -> tuple[dict[str, Any], list[str]]:
    """Member 0's first native values, and a note for each that had to move: each parameter's
    prior, else its value in the composed config (the presets and the command line), as
    validation's baseline is; a composed value the space does not hold (rollouts 24 in a space of
    16, 32, 64; an unset value) moves to the nearest one it does (`Param.nearest`), since every
    member must stay inside the space it is perturbed in. Validation's baseline is still the
    composed configuration itself."""
    values: dict[str, Any] = {}
    moved: list[str] = []
    for p in space.params:
        if p.has_prior:
            values[p.name] = thaw(p.prior)
            continue
        value = OmegaConf.select(composed, p.key)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if p.holds(value):
            values[p.name] = value
            continue
        values[p.name] = p.nearest(value)
        moved.append(f"`{p.name}` starts at {values[p.name]!r}: {p.key} composes to {value!r}, "
                     f"which is not among its values in {space.source} (give it a prior to choose)")
    return values, moved


def first_generation(plan: PbtPlan, space: SearchSpace, start: dict[str, Any], *,
                     allowed: Callable[[dict[str, Any]], bool],
                     update_frames: Callable[[dict[str, Any]], int]) -> list[SegmentSpec]:
    """Generation 0: member 0 trains the starting configuration; the others it perturbed once
    (`init` start) or samples of the space (`init` sample), each meeting `allowed`."""
    rng = rng_for(plan, 0)
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=plan.seed))
    specs = []
    for member in range(plan.population):
        values = dict(start)
        for _ in range(MAX_DRAWS if member else 0):
            drawn = (perturb(start, space, rng=rng, factors=plan.factors,  # every one: a spread
                             resample_probability=plan.resample_probability, mutate=plan.mutate)
                     if plan.init == "start" else space.suggest(sampler.ask()))
            if allowed(drawn):
                values = drawn
                break
        specs.append(SegmentSpec(member=member, generation=0, parent=NO_PARENT, values=values,
                                 frames_start=0, frames_end=plan.segment_end(0, update_frames(values)),
                                 seed=plan.seed_of(member, 0)))
    return specs


def next_generation(plan: PbtPlan, space: SearchSpace, previous: Mapping[int, Segment], *,
                    allowed: Callable[[dict[str, Any]], bool],
                    update_frames: Callable[[dict[str, Any]], int]) -> list[SegmentSpec] | None:
    """The segments after a complete generation (`previous`: member -> its segment with a result):
    exploit (exploit.py; none before `plan.exploit_after` frames), then the replaced members'
    values perturbed (explore.py); a kept member
    goes on from its own state and values. A member whose segment failed is replaced by a top
    member even where exploit's bottom group leaves it out (it has no state to go on from). None:
    no member has a score, so none can continue."""
    generation = max(s.generation for s in previous.values()) + 1
    rng = rng_for(plan, generation)
    scores = [(member, s.score) for member, s in sorted(previous.items())]
    ready = min(s.reached for s in previous.values()) >= plan.exploit_after
    decisions = {r.replaced: r for r in exploit(scores, rng=rng, fraction=plan.fraction,
                                                std_factor=STD_FACTOR, floor=plan.floor)} if ready else {}
    k = group_size(len(scores), plan.fraction)
    donors = [(m, score) for m, score in ranked(scores)[:k] if math.isfinite(score)]
    if not donors:
        return None
    for member, score in scores:
        if not math.isfinite(score) and member not in decisions:
            donor, donor_score = donors[draw_index(rng, len(donors))]
            decisions[member] = Replacement(replaced=member, donor=donor, donor_score=donor_score,
                                            replaced_score=score, margin=math.nan)
    specs = []
    for member in sorted(previous):
        decision = decisions.get(member)
        parent = previous[decision.donor if decision else member]
        values = dict(parent.values)
        if decision is not None:
            for _ in range(MAX_DRAWS):
                drawn = perturb(parent.values, space, rng=rng, factors=plan.factors,
                                resample_probability=plan.resample_probability,
                                mutation_probability=plan.mutation_probability, mutate=plan.mutate)
                if allowed(drawn):
                    values = drawn
                    break
        specs.append(SegmentSpec(
            member=member, generation=generation, parent=parent.number, values=values,
            frames_start=parent.reached,
            frames_end=plan.segment_end(generation, update_frames(values), start=parent.reached),
            seed=plan.seed_of(member, generation), exploit=decision))
    return specs
