"""Watching one running trial: its new score points go to the pruner and the stoppers, a silent trial
times out, a score past --target-score is noted; once its process is gone, how it ended.

Nothing here touches the study or a file of the study: the pruner and the target hook come in as
callables, so these rules run with a scripted event tail and a fake pruner."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from automl import reasons, tags
from automl.search.trials.stoppers import DropStopper, PlateauStopper, StopperSet

if TYPE_CHECKING:
    import optuna

    from automl.search.trials.launcher import TrialProcess
    from automl.search.trials.tb_reader import EventTail
    from automl.summary import RunSummary

Pruner = Callable[[int, float], bool]
"""Takes a score point (step, value) into the study and says whether to prune the trial there."""
Report = Callable[[int, float], None]
"""Takes a score point (step, value) into the study, deciding nothing."""
OnTarget = Callable[[int, float], None]
"""Called with (frames, score) the first time a trial's score reaches --target-score."""


class TrialGone(Exception):
    """The study takes no more points of the trial: another orchestrator failed it meanwhile."""


@dataclass(frozen=True)
class WatchRules:
    """What decides on a running trial, besides the pruner and its stoppers."""

    eval_frequency: int
    """Frames between two evaluation points: a point counts at its step, frames rounded down."""
    trial_timeout: float
    """Seconds without a new event-file point after which a trial has failed (timeout)."""
    target_score: float | None = None


@dataclass
class Running:
    """A launched trial and what the loop knows of it."""

    trial: optuna.Trial
    proc: TrialProcess
    values: dict[str, Any]
    tail: EventTail
    stoppers: StopperSet
    last_step: int = -1
    frames: int = 0
    score: float = math.nan
    last_progress: float = field(default_factory=time.monotonic)
    reason: str | None = None
    """Decided by the loop (pruned, plateau, ...); recorded once the process is gone."""
    hit_target: bool = False
    error: str = ""
    """What went wrong, when the loop itself decided the trial failed (NaN score)."""
    confirmation: bool = False
    """It trains a configuration again on another seed (study/confirm.py): never pruned."""


def make_stoppers(*, plateau_patience: int, plateau_min_delta: float, drop: float,
                  grace_reports: int) -> StopperSet:
    """The plateau and drop stoppers of a new trial (each off at 0); none fires in the grace."""
    return StopperSet(
        plateau=PlateauStopper(patience=plateau_patience, min_delta=plateau_min_delta,
                               grace=grace_reports) if plateau_patience > 0 else None,
        drop=DropStopper(window=max(plateau_patience, 3), drop=drop, grace=grace_reports)
        if drop > 0 else None)


def watch(r: Running, rules: WatchRules, *, should_prune: Pruner, on_target: OnTarget,
          now: float) -> str | None:
    """Read the trial's new event-file points and decide on it: returns the stop reason decided in
    this call (pruned, plateau, drop, error, timeout), None when none was; the caller stops it."""
    if r.reason is not None:  # decided before: its process is on its way out
        r.tail.poll()
        return None
    new = r.tail.poll()
    if new:
        r.last_progress = now
    for frames, value in new.get(tags.SCORE, []):
        if r.reason is None:
            take_point(r, frames, value, rules, store=should_prune, on_target=on_target)
    if r.reason is None and now - r.last_progress > rules.trial_timeout:
        r.reason = reasons.TIMEOUT
    return r.reason


def settle(r: Running, rules: WatchRules, *, report: Report, on_target: OnTarget) -> None:
    """The process is gone: take the points it wrote just before it exited, deciding nothing
    (only a NaN score still makes it an error), so that none prunes or stops it after the fact."""
    for frames, value in r.tail.poll().get(tags.SCORE, []):
        if r.reason is None:
            take_point(r, frames, value, rules, store=report, on_target=on_target, decide=False)


def take_point(r: Running, frames: int, value: float, rules: WatchRules, *,
               store: Callable[[int, float], bool | None], on_target: OnTarget,
               decide: bool = True) -> str | None:
    """One score point of the trial: a new step is stored (`store`) and, with `decide`, the pruner's
    answer and the stoppers set the trial's stop reason; returns it (None: it runs on)."""
    r.frames = max(r.frames, frames)
    step = frames // rules.eval_frequency * rules.eval_frequency
    if step <= r.last_step:
        return None
    r.last_step = step
    if not math.isfinite(value):
        r.reason, r.error = reasons.ERROR, f"score is {value} at {frames} frames"
        return r.reason
    r.score = value
    try:
        prune = store(step, value)
    except TrialGone:
        r.reason, r.error = reasons.ERROR, "failed meanwhile by another orchestrator"
        return r.reason
    if rules.target_score is not None and not r.hit_target and value >= rules.target_score:
        r.hit_target = True
        on_target(frames, value)
    if decide:
        r.reason = reasons.PRUNED if prune else r.stoppers.update(value)
    return r.reason


@dataclass(frozen=True)
class Ending:
    """How a trial ended: what the study, trial_final.csv and the console get."""

    reason: str
    score: float
    frames: int
    wall_s: float
    error_tail: str
    metrics: dict[str, Any]


def ending(r: Running, code: int, summary: RunSummary | None, *, now: float) -> Ending:
    """How the trial ended, from the loop's verdict (r.reason), its exit code and its summary."""
    reason = r.reason
    finished_anyway = code == 0 and summary is not None and summary.completed
    if reason == reasons.PRUNED and finished_anyway:
        # It trained all its frames before the stop reached it: a full-budget result, not a
        # pruned one. (A stopper's verdict stands: plateau and drop trials keep their score.)
        reason = None
    if reason is None:
        reason = reasons.COMPLETED if finished_anyway else reasons.ERROR
    error_tail = ""
    if reason in (reasons.ERROR, reasons.TIMEOUT):
        detail = r.error or (summary.message if summary is not None else "")
        error_tail = "\n".join(x for x in (detail, f"exit code {code}", r.proc.stderr_tail()) if x)
    final = summary.score if summary is not None and reason == reasons.COMPLETED else None
    return Ending(reason=reason, score=r.score if final is None else final,
                  frames=(summary.frames if summary is not None else 0) or r.frames,
                  wall_s=now - r.proc.started, error_tail=error_tail,
                  metrics=summary.metrics if summary is not None else {})
