"""Plain batches of runs in asynchronous slots, without Optuna and without pruning: the validation
and final stages. A freed slot starts the next job at once; at the deadline every job stops."""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from automl import reasons
from automl.paths import RunPaths
from automl.search.trials.forkserver import ForkServer
from automl.search.trials.launcher import Slot, TrialProcess, launch, pause, run_overrides
from automl.summary import load_summary

POLL_S = 0.25


@dataclass(frozen=True)
class Job:
    """One run: a name, the trial command's overrides and where it writes."""

    name: str
    overrides: list[str]
    run_dir: Path


@dataclass
class JobResult:
    """How a job ended: a stop reason from automl.reasons and the run's final score."""

    job: Job
    reason: str
    score: float
    frames: int
    wall_s: float
    message: str = ""


def _result(job: Job, proc: TrialProcess, code: int, stopped: bool) -> JobResult:
    summary = load_summary(proc.run.summary)
    completed = code == 0 and summary is not None and summary.completed
    reason = reasons.BUDGET if stopped else (reasons.COMPLETED if completed else reasons.ERROR)
    message = "" if completed else ((summary.message if summary else "") or proc.stderr_tail(5))
    score = summary.score if completed and summary is not None else None
    return JobResult(job=job, reason=reason, score=math.nan if score is None else score,
                     frames=summary.frames if summary is not None else 0,
                     wall_s=time.monotonic() - proc.started, message=message)


BUDGET = "budget"
INTERRUPTED = "interrupted"
"""Why run_jobs stopped before every job ran: the deadline, or Ctrl-C / SIGTERM."""


def run_jobs(jobs: list[Job], *, worker: list[str], slots: list[Slot], deadline: float,
             on_done: object = None, forkserver: ForkServer | None = None
             ) -> tuple[list[JobResult], str | None]:
    """Run every job (or until the deadline / Ctrl-C); returns the results and why it was cut
    (BUDGET, INTERRUPTED; None when every job ran). The caller tells an interrupt from a budget
    cut: the user's Ctrl-C stops the whole pipeline, a budget cut only this stage."""
    pending, free = list(jobs), list(slots)
    running: list[tuple[Job, TrialProcess]] = []
    results: list[JobResult] = []
    cut: dict[str, str | None] = {"why": None}
    previous = {s: signal.signal(s, lambda *_: cut.__setitem__("why", INTERRUPTED))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while pending or running:
            # Runs that ended are results first: a run that ended before the deadline check is
            # never counted as cut by it.
            for job, proc in list(running):
                code = proc.poll()
                if code is not None:
                    running.remove((job, proc))
                    free.append(proc.slot)
                    results.append(_result(job, proc, code, stopped=False))
                    if callable(on_done):
                        on_done(results[-1])
            if not (pending or running):
                break
            if cut["why"] is None and time.monotonic() >= deadline:
                cut["why"] = BUDGET
            if cut["why"] is not None:
                for job, proc in running:  # one that ended before the cut is a result
                    code = proc.poll()
                    stopped = code is None
                    if code is None:
                        code = proc.wait_gone()
                    results.append(_result(job, proc, code, stopped=stopped))
                running.clear()
                break
            while pending and free:
                job, slot = pending.pop(0), free.pop(0)
                ours = run_overrides(job.run_dir, slot)
                proc = launch(number=len(results) + len(running), command=[*worker, *job.overrides, *ours],
                              run=RunPaths(job.run_dir), slot=slot, forkserver=forkserver)
                running.append((job, proc))
            pause(POLL_S, forkserver)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return results, cut["why"]
