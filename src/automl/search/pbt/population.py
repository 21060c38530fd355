"""The population as the study holds it, and its next generation.

Every segment is a trial of the study (phase `pbt`) whose user attributes say which member it
trains, its generation, the trial whose state.pt it continues (its parent) and the frames it starts
and ends at. So the population's state is rebuilt from the study and the checkpoints alone, on any
machine and after any crash: `Population.of` reads it, `first_generation` and `next_generation`
and decide.py the segments to queue. A member's next segment is decided when its segment ends, by
whichever orchestrator sees that first, under the study's lock (loop.py).

A segment has a result when it ended by itself: completed (its score), or failed (error, timeout,
diverged: no score, its member is replaced). One that was interrupted (the budget, Ctrl-C, a dead
orchestrator) has none: it is queued again as it was (study/recovery.py), with its parent and
values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.search.pbt.exploit import Replacement
from automl.search.pbt.plan import PbtPlan
from automl.search.space import SearchSpace
from automl.search.study import records
from automl.search.study.recovery import queued_values

NO_PARENT = -1
"""The parent of a segment that trains from scratch."""


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
    compared: dict[int, int] | None = None
    """member -> the generation of its result the decision ranked (None: generation 0)."""

    def queued(self, space: SearchSpace) -> tuple[dict[str, Any], dict[str, Any]]:
        """`study.enqueue_trial`'s params and user attributes."""
        attrs: dict[str, Any] = {
            records.PHASE: records.PHASE_PBT, records.MEMBER: self.member,
            records.GENERATION: self.generation, records.PARENT: self.parent,
            records.FRAMES_START: self.frames_start, records.FRAMES_END: self.frames_end,
            records.SEGMENT_SEED: self.seed}
        if self.compared is not None:
            attrs[records.COMPARED] = {str(m): g for m, g in sorted(self.compared.items())}
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
        return cls.from_segments(plan, segments)

    @classmethod
    def from_segments(cls, plan: PbtPlan, segments: list[Segment]) -> Population:
        """The population these segments make (by trial number)."""
        population = cls(plan=plan, segments=sorted(segments, key=lambda s: s.number))
        for s in population.segments:
            population.queued.setdefault(s.generation, set()).add(s.member)
            if s.has_result:
                population.results.setdefault(s.generation, {}).setdefault(s.member, s)
        return population

    def complete(self, generation: int) -> bool:
        """Every member's segment of `generation` has its result."""
        return len(self.results.get(generation, {})) == self.plan.population

    def due(self) -> list[tuple[int, int]]:
        """(member, generation) of each segment to decide now, by member: generation 0 for every
        member without a segment in a new study (or whose queueing was cut short); g + 1 for a
        member whose segment g has its result and whose g + 1 (not past the last) is not queued,
        once generation g is complete under a barrier plan (`plan.barrier`)."""
        if len(self.queued.get(0, ())) < self.plan.population:
            return [(m, 0) for m in range(self.plan.population) if m not in self.queued.get(0, ())]
        out = []
        for member in range(self.plan.population):
            generation = max(g for g, members in self.queued.items() if member in members)
            if (member in self.results.get(generation, {}) and generation + 1 < self.plan.generations
                    and (not self.plan.barrier or self.complete(generation))):
                out.append((member, generation + 1))
        return out

    def pool(self, generation: int) -> dict[int, Segment]:
        """Each member's latest segment with a result at `generation` or before: what a member
        that ended its segment `generation` is ranked among (the scores of members at equal or
        fewer frames, DexPBT's rule; under a barrier, that whole generation)."""
        out: dict[int, Segment] = {}
        for g in sorted(x for x in self.results if x <= generation):
            out.update(self.results[g])
        return out

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

    def with_result(self) -> int:
        """Segments with their result."""
        return sum(1 for s in self.segments if s.has_result)

    def running_or_queued(self) -> int:
        """Segments queued or running (of any orchestrator)."""
        return sum(1 for s in self.segments if s.live)

    def latest(self) -> dict[int, Segment]:
        """Each member's latest segment with a result."""
        out: dict[int, Segment] = {}
        for generation in sorted(self.results):
            out.update(self.results[generation])
        return out
