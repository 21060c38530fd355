"""How long runs will take, from the frames per second of the configuration at hand (never the
slowest trial seen), and how much validation fits in the time left."""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def seconds_for(frames: int, *, trained_frames: int, wall_s: float) -> float | None:
    """Time to train `frames` at the rate a run trained `trained_frames` in `wall_s` (start-up
    included, so a short run's estimate errs long)."""
    if trained_frames <= 0 or wall_s <= 0:
        return None
    return frames * wall_s / trained_frames


def median_rate(samples: Sequence[float]) -> float | None:
    """Running median of frames/s over the trials seen (None before the first)."""
    rates = [r for r in samples if r > 0]
    return statistics.median(rates) if rates else None


def makespan(durations: Sequence[float], slots: int) -> float:
    """Wall time of running jobs in this order, each started in the first free slot."""
    free = [0.0] * max(slots, 1)
    end = 0.0
    for duration in durations:
        start = heapq.heappop(free)
        end = max(end, start + duration)
        heapq.heappush(free, start + duration)
    return end


@dataclass(frozen=True)
class ValidationFit:
    """How much validation the time left allows."""

    configs: int
    """Top configurations validated."""
    seeds: int
    """Fresh seeds each (every configuration gets the same number)."""
    seconds: float
    """Expected wall time."""
    note: str
    """What was cut and why, for the console and the state file ('' when nothing was)."""


def fit_validation(durations: Sequence[float], *, seeds: int, slots: int,
                   time_left: float) -> ValidationFit | None:
    """The most validation that fits: all `len(durations)` top configurations (their run times,
    best first) x `seeds` seeds if possible; else fewer configurations (down to the top one) on at
    least 2 seeds, then the top one on 1 seed; None when not even that fits."""
    top = len(durations)
    wanted = [(k, m) for k in range(top, 0, -1) for m in range(seeds, 1, -1)]
    wanted += [(k, 1) for k in range(top, 0, -1)] if seeds == 1 else [(1, 1)]
    for configs, count in wanted:
        jobs = [durations[c] for _ in range(count) for c in range(configs)]  # seed-major
        seconds = makespan(jobs, slots)
        if seconds <= time_left:
            note = "" if (configs, count) == (top, seeds) else (
                f"validation fits {configs} of {top} configuration(s) x {count} of {seeds} seed(s) "
                f"(~{seconds:.0f} s of {time_left:.0f} s left)")
            return ValidationFit(configs=configs, seeds=count, seconds=seconds, note=note)
    return None
