"""The population-based training plan: population, segment length, the exploit and explore settings
and how the members start, settled once from the flags, the config and the slots, printed, stored
in meta.yaml and in the study (every machine and every --resume follows the stored plan).

A member trains `frames` frames (train.frames) in segments of about `interval` frames; after each
generation (every member's segment of that number ended) the bottom `fraction` copies a top member
(exploit.py) and perturbs its values (explore.py). The total compute is that of `population`
independent runs of train.frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from automl.errors import ConfigError, bad_flag
from automl.requests import PbtOptions
from automl.schema import CPU_ENVS, GPU_ENVS, RunConfig
from automl.search.pbt.exploit import group_size

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

    @property
    def generations(self) -> int:
        """Segments per member."""
        return math.ceil(self.frames / self.interval)

    def segment_end(self, generation: int, update_frames: int) -> int:
        """The frames a member's segment `generation` trains up to: the interval's multiple rounded up
        to a whole PPO update (`update_frames` = rollouts x num_envs, so no rollout is dropped
        between segments), the last one train.frames."""
        if generation >= self.generations - 1:
            return self.frames
        end = math.ceil((generation + 1) * self.interval / update_frames) * update_frames
        return min(end, self.frames)

    def seed_of(self, member: int, generation: int) -> int:
        """The train.seed of a member's segment."""
        return SEGMENT_SEED_BASE + 100_000 * self.seed + 1_000 * member + generation

    def as_dict(self) -> dict[str, Any]:
        """For meta.yaml and the study's attribute."""
        out = asdict(self)
        out["factors"] = list(self.factors)
        out["generations"] = self.generations
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PbtPlan:
        """A stored plan (the study's attribute)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["factors"] = tuple(fields["factors"])
        return cls(**fields)

    def describe(self) -> str:
        """One line for the console."""
        k = group_size(self.population, self.fraction)
        text = (f"population-based training: {self.population} members x {self.frames:,} frames "
                f"in {self.generations} segments of ~{self.interval:,} frames; after each, the worst "
                f"{k} copy one of the best {k} (margin max({self.floor:g}, 0.5 std)) and perturb "
                f"by x/÷ U({self.factors[0]:g}, {self.factors[1]:g}), resampling with probability "
                f"{self.resample_probability:g}; members start from "
                + ("the starting configuration (all but the first perturbed once)"
                   if self.init == "start" else "samples of the space (the first: the start)"))
        return f"{text} ({self.note})" if self.note else text


def update_frames(cfg: RunConfig, *, gpus: int) -> int:
    """Frames of one PPO update of a run of `cfg`: rollouts x num_envs (null: the device's count)."""
    on_gpu = cfg.env.device == "cuda" or (cfg.env.device == "auto" and gpus > 0)
    return cfg.ppo.rollouts * (cfg.env.num_envs or (GPU_ENVS if on_gpu else CPU_ENVS))


def plan_pbt(options: PbtOptions, base: RunConfig, *, slots: int, episode_frames: int | None,
             seed: int | None, gpus: int = 0) -> PbtPlan:
    """The plan for `options` (the flags) on the base config; exit 2 for an interval under one
    evaluation point or one PPO update, or not below the frames."""
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
    return PbtPlan(population=population, frames=frames, interval=interval,
                   fraction=options.fraction, factors=options.factors,
                   resample_probability=options.resample_probability, init=options.init,
                   floor=float(base.scoring.plateau_min_delta), seed=0 if seed is None else seed,
                   note=note)
