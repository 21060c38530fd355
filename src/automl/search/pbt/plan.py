"""The population-based training plan: population, segment length, the exploit and explore settings
and how the members start, settled once from the flags, the config and the slots, printed, stored
in meta.yaml and in the study (every machine and every --resume follows the stored plan).

A member trains `frames` frames (train.frames) in segments of about `interval` frames; after each
of its segments it is ranked among the others' latest scores, and if in the bottom `fraction` it
copies a top member (exploit.py) and perturbs its values (explore.py): decide.py. The total
compute is that of `population` independent runs of train.frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from automl.errors import ConfigError, bad_flag
from automl.requests import PbtOptions
from automl.schema import CPU_ENVS, GPU_ENVS, RunConfig
from automl.search.pbt.exploit import group_size
from automl.search.pbt.explore import FACTORS, MUTATION_PROBABILITY, RESAMPLE_PROBABILITY
from automl.search.space import SearchSpace
from automl.search.space.loading import PbtSection

MIN_POPULATION = 4
"""The default population when fewer slots are available (DexPBT's smallest is 8; 4 is the least
with which a quarter replaced is one member and the margin's std rests on more than two scores)."""
TARGET_SEGMENTS = 10
"""Segments per member the default interval aims at."""
SEGMENT_SEED_BASE = 10_000
"""Segment seeds: SEGMENT_SEED_BASE + 100,000 x the plan's seed + 1,000 x member + generation
(apart from the search's seed 42, confirmations' 500 on and validation's 1,000 on; --seed changes
every member's training as well as the perturbations)."""


@dataclass(frozen=True)
class PbtPlan:
    """What a population-based training study does (stored in the study: PBT_PLAN)."""

    population: int
    frames: int
    """Frames each member trains (train.frames)."""
    interval: int
    """Frames between two exploit steps (a segment's length, before rounding to whole updates)."""
    fraction: float
    factors: tuple[float, float]
    resample_probability: float
    init: str
    floor: float
    """The exploit margin's least value, in score units (scoring.plateau_min_delta)."""
    seed: int
    """Seeds the perturbation and exploit draws (--seed, else 0)."""
    note: str = ""
    mutation_probability: float = 1.0
    """Probability that each mutable parameter changes when a member is copied (1.0 in a plan stored
    before it was a setting: every one changed)."""
    mutate: tuple[str, ...] | None = None
    """The parameters a copied member may change (None: every mutable one)."""
    exploit_after: int = 0
    """Frames every member trains before the first exploit step."""
    segments: int = 0
    """Segments per member, settled with the plan (`segment_count`); 0 in a plan stored before it
    was: ceil(frames / interval)."""
    barrier: bool = True
    """Whether a member's next segment waits for its whole generation (True in a plan stored before
    this was a setting: those studies decided so; a new plan's is --pbt-barrier's)."""

    @property
    def generations(self) -> int:
        """Segments per member."""
        return self.segments or math.ceil(self.frames / self.interval)

    def segment_end(self, generation: int, update_frames: int, *, start: int = 0) -> int:
        """The frames a member's segment `generation` trains up to: the interval's multiple rounded up
        to a whole PPO update (`update_frames` = rollouts x num_envs, so no rollout is dropped
        between segments), the last one train.frames; always beyond `start`, the frames the member
        holds (train_one steps in whole multiples of num_envs, so a member that started past a
        boundary trains on to its next step rather than failing)."""
        if generation >= self.generations - 1:
            end = self.frames
        else:
            end = min(math.ceil((generation + 1) * self.interval / update_frames) * update_frames,
                      self.frames)
        return max(end, start + 1)

    def seed_of(self, member: int, generation: int) -> int:
        """The train.seed of a member's segment."""
        return SEGMENT_SEED_BASE + 100_000 * self.seed + 1_000 * member + generation

    def as_dict(self) -> dict[str, Any]:
        """For meta.yaml and the study's attribute."""
        out = asdict(self)
        out["factors"] = list(self.factors)
        out["mutate"] = None if self.mutate is None else list(self.mutate)
        out["generations"] = self.generations
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PbtPlan:
        """A stored plan (the study's attribute)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["factors"] = tuple(fields["factors"])
        if fields.get("mutate") is not None:
            fields["mutate"] = tuple(fields["mutate"])
        return cls(**fields)

    def describe(self) -> str:
        """One line for the console."""
        k = group_size(self.population, self.fraction)
        which = "each mutable parameter" if self.mutate is None else ", ".join(self.mutate)
        after = (f" from {self.exploit_after:,} frames on" if self.exploit_after else "")
        when = (f"after each generation{after}, the worst {k} copy one of the best {k}"
                if self.barrier else f"after each of its segments{after}, a member among the worst "
                f"{k} of the others' latest scores copies one of the best {k}")
        text = (f"population-based training: {self.population} members x {self.frames:,} frames "
                f"in {self.generations} segments of ~{self.interval:,} frames; {when} "
                f"(margin max({self.floor:g}, 0.5 std)) and "
                f"change {which} with probability {self.mutation_probability:g}, by x/÷ "
                f"U({self.factors[0]:g}, {self.factors[1]:g}), or drawn afresh with probability "
                f"{self.resample_probability:g}; members start from "
                + ("the starting configuration (all but the first perturbed once)"
                   if self.init == "start" else "samples of the space (the first: the start)"))
        return f"{text} ({self.note})" if self.note else text


def update_frames(cfg: RunConfig, *, gpus: int) -> int:
    """Frames of one PPO update of a run of `cfg`: rollouts x num_envs (null: the device's count)."""
    on_gpu = cfg.env.device == "cuda" or (cfg.env.device == "auto" and gpus > 0)
    return cfg.ppo.rollouts * (cfg.env.num_envs or (GPU_ENVS if on_gpu else CPU_ENVS))


def largest_update(space: SearchSpace, base: RunConfig, *, gpus: int) -> int:
    """The most frames one PPO update of any member can hold: the space's largest `ppo.rollouts`
    and `env.num_envs` (each fixed per member, but members may draw different ones), else the
    composed config's."""
    update = update_frames(base, gpus=gpus)
    sizes = {"ppo.rollouts": base.ppo.rollouts, "env.num_envs": update // base.ppo.rollouts}
    for p in space.params:
        if p.key in sizes:
            numbers = [int(v) for v in p.edge_values() if isinstance(v, int | float) and v]
            sizes[p.key] = max([sizes[p.key], *numbers])
    return sizes["ppo.rollouts"] * sizes["env.num_envs"]


def segment_count(frames: int, interval: int, update: int) -> int:
    """Segments per member: one per `interval`, the last holding what is left of `frames`, unless
    that is under `update` frames (the largest PPO update a member can have), where it joins the
    segment before it. Otherwise the segment before it, rounded up to a whole update, could end at
    or past train.frames and leave the last nothing to train."""
    count = math.ceil(frames / interval)
    while count > 1 and frames - (count - 1) * interval < update:
        count -= 1
    return count


def plan_pbt(options: PbtOptions, base: RunConfig, *, slots: int, episode_frames: int | None,
             seed: int | None, gpus: int = 0, most_update: int = 0,
             section: PbtSection | None = None) -> PbtPlan:
    """The plan for `options` (the flags) on the base config (`most_update`: `largest_update` of the
    space, where larger than the base config's; `section`: the space's `pbt` section, which the
    flags override); exit 2 for an interval under one evaluation point or one PPO update, or that
    leaves a single segment."""
    section = section or PbtSection()
    frames, every = base.train.frames, base.train.eval_frequency
    population = options.population or max(slots, MIN_POPULATION)
    note = ""
    if options.interval is not None:
        interval = options.interval
        if interval < every:
            raise bad_flag("--pbt-interval", interval, f"it is under one evaluation point "
                           f"(train.eval_frequency={every:,} frames), so a segment would end "
                           "without a score", f"give --pbt-interval {every} or more")
    else:
        # At least one time limit of every env, on the evaluation grid; 10 segments where that fits.
        least = math.ceil(max(every, episode_frames or 0) / every) * every
        interval = max(least, (frames // TARGET_SEGMENTS) // every * every)
        if frames // interval < TARGET_SEGMENTS:
            note = (f"only {math.ceil(frames / interval)} segments: a segment holds at least one "
                    f"time limit of every env ({least:,} frames); raise train.frames for more")
    update = update_frames(base, gpus=gpus)
    if interval < update:
        raise bad_flag("--pbt-interval", interval, f"it is under one PPO update ({update:,} frames: "
                       "ppo.rollouts x env.num_envs), so a segment could not end on an update",
                       f"give --pbt-interval {update} or more")
    if interval >= frames:
        raise ConfigError(file="command line", key="--pbt-interval", value=interval,
                          rule=f"a segment of {interval:,} frames is not below train.frames "
                               f"({frames:,}), so no member would ever copy another",
                          fix="raise train.frames or lower --pbt-interval")
    most = max(update, most_update)
    segments = segment_count(frames, interval, most)
    if segments < 2:
        raise ConfigError(file="command line", key="--pbt-interval", value=interval,
                          rule=f"train.frames ({frames:,}) holds one segment of {interval:,} frames "
                               f"and less than one PPO update ({most:,} frames) after it, so no "
                               "member would ever copy another",
                          fix="raise train.frames or lower --pbt-interval")
    if segments < math.ceil(frames / interval):
        left = frames - segments * interval
        note = "; ".join(filter(None, [note, (
            f"the last {left:,} frames join the last segment: alone they would be less than one "
            f"PPO update ({most:,} frames)")]))
    def pick(flag: Any, in_file: Any, default: Any) -> Any:
        return flag if flag is not None else in_file if in_file is not None else default

    return PbtPlan(population=population, frames=frames, interval=interval,
                   fraction=options.fraction, factors=pick(options.factors, section.factors, FACTORS),
                   resample_probability=pick(options.resample_probability,
                                             section.resample_probability, RESAMPLE_PROBABILITY),
                   mutation_probability=pick(options.mutation_probability,
                                             section.mutation_probability, MUTATION_PROBABILITY),
                   mutate=section.mutate, exploit_after=options.exploit_after, init=options.init,
                   barrier=options.barrier, floor=float(base.scoring.plateau_min_delta),
                   seed=0 if seed is None else seed, note=note, segments=segments)
