"""The decisions that queue a population's segments: generation 0 from the start, then each
member's next segment as soon as its own segment ends (no generation barrier).

A member that ended its segment g is ranked among the latest results of every member at generation
g or before (`Population.pool`: the scores of members at equal or fewer frames, as DexPBT decides
each policy at its own checkpoint against the others' latest objectives), so no slot waits for the
slowest member of a generation. Exploit (exploit.py) runs once more than half of the population
has a result in that pool (DexPBT's wait) and the member trained `plan.exploit_after` frames;
before that a member goes on from its own state. A member whose segment failed has no state to go
on from: it copies a top member of its pool, and waits (nothing queued) while no member has a
score. A replaced member then perturbs the donor's values (explore.py) and starts from the donor's
state at the frames that state holds; its segment still ends at its own next boundary.

Under a barrier plan (`plan.barrier`: studies begun before this rule, or `--pbt-barrier`) a member
is decided only once its whole generation ended, and the pool is that generation: every decision
is then the same on every machine and in every run. Without one, which results a decision saw
depends on which segments ended first; `pbt_compared` on every segment records them (member ->
generation), so each decision can be replayed from the study alone.

Every decision draws from a generator seeded by the plan's seed, the generation and the member.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from omegaconf import OmegaConf

from automl.search.pbt.exploit import STD_FACTOR, Replacement, exploit_one, group_size, ranked
from automl.search.pbt.explore import draw_index, perturb
from automl.search.pbt.plan import PbtPlan
from automl.search.pbt.population import NO_PARENT, Segment, SegmentSpec
from automl.search.space import SearchSpace, thaw

MAX_DRAWS = 100
"""Perturbations (or samples) drawn for one member before its values are kept as they were (or the
start is taken): each must meet the space's constraints."""

Allowed = Callable[[dict[str, Any]], bool]
UpdateFrames = Callable[[dict[str, Any]], int]


def rng_for(plan: PbtPlan, generation: int, member: int | None = None) -> random.Random:
    """The draws of the decisions that start `generation` (of one member's segment, where given):
    the same on every machine."""
    return random.Random(f"pbt:{plan.seed}:{generation}" + ("" if member is None else f":{member}"))


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
                     allowed: Allowed, update_frames: UpdateFrames) -> list[SegmentSpec]:
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


class Wait(enum.Enum):
    """choose's third answer: the member has no score and no member of its pool has one."""

    WAIT = "wait"


def choose(plan: PbtPlan, pool: Mapping[int, Segment], member: int, *,
           rng: random.Random) -> Replacement | None | Wait:
    """`member`'s exploit decision among `pool` (member -> its latest segment with a result, the
    member's own among them): the Replacement, None to go on from its own state, or Wait.WAIT
    (it has no score and no member of the pool has one)."""
    own = pool[member]
    scores = [(m, s.score) for m, s in sorted(pool.items())]
    ready = own.reached >= plan.exploit_after and 2 * len(pool) > plan.population
    if ready:
        decision = exploit_one(scores, member, rng=rng, fraction=plan.fraction,
                               std_factor=STD_FACTOR, floor=plan.floor)
        if decision is not None or math.isfinite(own.score):
            return decision
    if math.isfinite(own.score):
        return None
    k = group_size(len(scores), plan.fraction) if len(scores) > 1 else 1
    donors = [(m, score) for m, score in ranked(scores)[:k] if math.isfinite(score)]
    if not donors:
        return Wait.WAIT
    donor, donor_score = donors[draw_index(rng, len(donors))]
    return Replacement(replaced=member, donor=donor, donor_score=donor_score,
                       replaced_score=own.score, margin=math.nan)


def next_segment(plan: PbtPlan, space: SearchSpace, pool: Mapping[int, Segment], member: int, *,
                 allowed: Allowed, update_frames: UpdateFrames) -> SegmentSpec | None:
    """The segment `member` trains after its segment in `pool` (module docstring); None: it waits
    (it failed, and no member has a score to copy yet)."""
    own = pool[member]
    generation = own.generation + 1
    rng = rng_for(plan, generation, member)
    decision = choose(plan, pool, member, rng=rng)
    if decision is Wait.WAIT:
        return None
    parent = pool[decision.donor] if decision is not None else own
    values = dict(parent.values)
    if decision is not None:
        for _ in range(MAX_DRAWS):
            drawn = perturb(parent.values, space, rng=rng, factors=plan.factors,
                            resample_probability=plan.resample_probability,
                            mutation_probability=plan.mutation_probability, mutate=plan.mutate)
            if allowed(drawn):
                values = drawn
                break
    return SegmentSpec(
        member=member, generation=generation, parent=parent.number, values=values,
        frames_start=parent.reached,
        frames_end=plan.segment_end(generation, update_frames(values), start=parent.reached),
        seed=plan.seed_of(member, generation), exploit=decision,
        compared={m: s.generation for m, s in pool.items()})


def next_generation(plan: PbtPlan, space: SearchSpace, previous: Mapping[int, Segment], *,
                    allowed: Allowed, update_frames: UpdateFrames) -> list[SegmentSpec] | None:
    """Every member's next segment after a complete generation (`previous`: member -> its segment
    with a result), as a barrier plan decides them; None: no member has a score, so none can go
    on."""
    specs = [next_segment(plan, space, previous, member, allowed=allowed,
                          update_frames=update_frames) for member in sorted(previous)]
    return None if any(s is None for s in specs) else [s for s in specs if s is not None]
