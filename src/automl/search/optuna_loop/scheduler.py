"""The search loop: fill free slots with new trials, watch the running ones until each has exactly one
stop reason, and end the search on the deadline, Ctrl-C, too many failures or no trial left to run.

Its parts: trial_start (ask, suggest, constraints, launch), trials.watch (one running trial's points,
pruner, stoppers, timeout), trial_record (the one writer of the study and trial_final.csv),
search_policy (trial count, grid, budget, failure rate, other orchestrators), search_state (the
state file)."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import optuna

from automl import reasons
from automl.paths import StudyPaths
from automl.search.optuna_loop.search_policy import (
    Budget,
    TrialCount,
    counts_toward_limit,
    failure_message,
    grid_taken,
)
from automl.search.optuna_loop.search_state import search_state
from automl.search.optuna_loop.settings import SearchSettings
from automl.search.optuna_loop.trial_start import REJECTED, TrialStarter
from automl.search.study import reports
from automl.search.study.shared import Outcome, SharedStudy, guarded
from automl.search.study.storage import hide_password
from automl.search.study.trial_record import Best, Tally, TrialRecorder
from automl.search.trials.launcher import Slot, pause
from automl.search.trials.watch import (
    OnTarget,
    Pruner,
    Running,
    WatchRules,
    ending,
    settle,
    take_point,
    watch,
)
from automl.summary import load_summary

POLL_S = 0.1
"""Seconds between two polls of the running trials: a freed slot waits at most this long."""
STATE_EVERY_S = 5.0
"""Seconds between two writes of automl_state.yaml."""
SETTLE_SAMPLES = 3
"""Trials whose frames/s the budget-sized pruning plan waits for (one configuration's rate alone
was off by up to 2x on Pendulum). Every pruner needs at least this many trials before it prunes:
median 3 completed, successive halving and Hyperband 6 completed (the rung gate)."""
MAX_CONSTRAINT_REJECTIONS = 1000
"""Consecutive constraint rejections after which the space is taken to be infeasible."""


class Scheduler:
    """Fills free slots with new trials and drives the running ones to exactly one stop reason."""

    def __init__(self, study: optuna.Study, study_paths: StudyPaths, settings: SearchSettings,
                 console: Any) -> None:
        self.study, self.paths, self.s, self.console = study, study_paths, settings, console
        self.budget = Budget(settings.budget_s, frames=settings.frames)
        self.budget.seen_before(study)
        self.start = self.budget.start
        self.running: dict[int, Running] = {}
        self.free: list[Slot] = list(settings.slots)
        self.tally = Tally.of_study(study, settings.space, settings.confirm_seeds)
        self.finished = self.tally.finished
        self.recorder = TrialRecorder(study, study_paths, settings.space, console, self.tally,
                                      confirm_seeds=settings.confirm_seeds, room=self._room)
        self.starter = TrialStarter(study, study_paths, settings, self.recorder)
        self.count = TrialCount(study)
        heartbeat = self.recorder.heartbeat
        self.shared = SharedStudy(study, settings.recovery, mine=self.recorder.asked,
                                  every_s=heartbeat.interval_s if heartbeat is not None else None)
        self.rules = WatchRules(eval_frequency=settings.eval_frequency,
                                trial_timeout=settings.trial_timeout,
                                target_score=settings.target_score)
        self.interrupted = False
        self.stopping = False
        """Set when every trial is being stopped (deadline, Ctrl-C, failures): nothing is queued."""
        self.rejections = 0
        self.next_state = 0.0

    # -------------------------------------------------------------------------------- main loop
    def run(self) -> Outcome:
        """Search until the deadline, Ctrl-C, too many failures or no trial left to start."""
        stopped_by, message = guarded(self._loop, on_signal=self._on_signal, abort=self._abort,
                                      close=self.recorder.close)
        if stopped_by == "infeasible":
            message = (f"{MAX_CONSTRAINT_REJECTIONS} sampled configurations in a row violated the "
                       f"constraints of {self.s.space.source} or could not run (see the error_tail "
                       "column of trial_final.csv); loosen them or change the ranges")
        self.write_state("search finished")
        return Outcome(finished=dict(self.finished), stopped_by=stopped_by, message=message)

    def _loop(self) -> tuple[str, str]:
        while True:
            # Poll first: a slot freed by a trial that just ended is filled in this pass,
            # unless that end stops the search (deadline, failure rate).
            self._poll_all()
            now = time.monotonic()
            if self.interrupted or now >= self.budget.deadline:
                self._stop_all(reasons.BUDGET)
                return ("interrupted" if self.interrupted else "budget"), ""
            failed = self._failures()
            if failed:
                self._stop_all(reasons.BUDGET)
                return "failures", failed
            self._recover(now)
            why_not = self._fill_slots()
            if not self.running and why_not and not self.shared.wait_for_others(why_not):
                # A study that ran out of trials (or grid points) mostly failing has failed,
                # however few trials it had.
                message = self._failures(minimum=1)
                return ("failures" if message else why_not), message
            if now >= self.next_state:
                self.write_state("search")
                self.next_state = now + STATE_EVERY_S
            self.console.update(self)
            pause(POLL_S, self.s.forkserver)

    def _fill_slots(self) -> str | None:
        """Launch into free slots; returns why no more trials can start (None while they can)."""
        grid = isinstance(self.study.sampler, optuna.samplers.GridSampler)
        while self.free:
            if self.trained_count() >= self.s.hp_trials:
                return "hp_trials"
            if grid and grid_taken(self.study, self.s.space):
                return "grid"
            if not self.budget.allows_start(self.running.values()):
                return "budget"
            if self.rejections >= MAX_CONSTRAINT_REJECTIONS:
                return "infeasible"
            started = self.starter.start(self.free[0])
            if isinstance(started, Running):
                self.free.pop(0)
                self.rejections = 0
                self.count.launched()
                self.running[started.trial.number] = started
            elif started == REJECTED:
                self.rejections += 1
            else:  # given up: the study filled meanwhile
                self.count.forget()
        return None

    def _room(self, count: int) -> bool:
        """Whether `count` more trials (queued now) can still start: the search is not stopping,
        they fit below --hp-trials with the trials already queued, and one more trial fits before
        the deadline."""
        if self.stopping:
            return False
        trials = self.study.get_trials(deepcopy=False)  # one read of the storage
        queued = sum(1 for t in trials if t.state == optuna.trial.TrialState.WAITING)
        return (sum(map(counts_toward_limit, trials)) + queued + count <= self.s.hp_trials
                and self.budget.allows_start(self.running.values()))

    def _poll_all(self) -> None:
        for r in list(self.running.values()):
            # Exit first: the last points of a process that ended by itself must not prune or
            # stop it after the fact (_finish takes them without a decision).
            code = r.proc.poll()
            if code is not None:
                self._finish(r, code)
            elif watch(r, self.rules, should_prune=self._pruner(r),
                       on_target=self._on_target(r), now=time.monotonic()):
                r.proc.terminate()

    def _pruner(self, r: Running) -> Pruner:
        """The trial's pruner; before it decides, the plan is settled on the budget (once). A
        confirmation's points are stored, and it is never pruned."""
        ask = self.recorder.pruner(r.trial)
        if r.confirmation:
            store = self.recorder.reporter(r.trial)

            def keep(step: int, value: float) -> bool:
                store(step, value)
                return False
            return keep

        def should_prune(step: int, value: float) -> bool:
            """Settle the plan (once, when enough rates exist), then store the point and ask."""
            self._settle_plan()
            return ask(step, value)
        return should_prune

    def _settle_plan(self) -> None:
        """Size the pruning plan to the budget once the rate rests on SETTLE_SAMPLES trials (or one
        per slot, when fewer): no pruner decides before that many trials reported a point."""
        sizing, running = self.s.sizing, self.running.values()
        if sizing is None or sizing.settled:
            return
        if self.budget.rate_samples(running) < min(len(self.s.slots), SETTLE_SAMPLES):
            return
        line = sizing.settle(self.study, self.budget.expected_duration(running))
        if line:
            self.console.message(line)

    def _finish(self, r: Running, code: int) -> None:
        """The process is gone: free its slot, settle the stop reason and record the trial once."""
        del self.running[r.trial.number]
        self.free.append(r.proc.slot)
        self.free.sort(key=lambda s: s.index)
        settle(r, self.rules, report=self.recorder.reporter(r.trial), on_target=self._on_target(r))
        end = ending(r, code, load_summary(r.proc.run.summary), now=time.monotonic())
        self.budget.trial_ended(end.frames, end.wall_s)
        self.recorder.record(r.trial, r.values, end.reason, frames=end.frames, wall=end.wall_s,
                             score=end.score, error_tail=end.error_tail, metrics=end.metrics)

    def _on_target(self, r: Running) -> OnTarget:
        return lambda frames, score: self.recorder.target_hit(
            r.trial.number, frames, score, elapsed_s=time.monotonic() - self.start)

    # ------------------------------------------------------------------------------- stopping
    def _on_signal(self, signum: int, frame: object) -> None:
        self.interrupted = True

    def _failures(self, minimum: int = 4) -> str:
        return failure_message(self.finished, max_failure_rate=self.s.max_failure_rate,
                               csv=self.paths.trial_final_csv, minimum=minimum)

    def _recover(self, now: float) -> None:
        """Fail the trials of dead orchestrators; their configurations are queued to run again."""
        recovered = self.shared.recover(now)
        if recovered:
            self.count.forget()  # a recovered trial no longer counts; its re-run will
            self.console.message(f"automl: trial(s) {', '.join(map(str, recovered))} of a dead "
                                 "orchestrator failed; their configurations run again")

    def _abort(self, err: BaseException) -> None:
        """The loop raised: stop every trial this process asked (running or not yet launched),
        record each (error, to run again) as far as the storage still allows, then re-raise."""
        self.recorder.aborting = True
        why = hide_password(f"the orchestrator stopped: {type(err).__name__}: {err}".strip())
        print(f"automl: {why}; stopping and recording its {len(self.recorder.asked)} trial(s)",
              file=sys.stderr)
        for r in self.running.values():
            if r.reason is None:
                r.error = why
        self._stop_all(reasons.ERROR)
        for trial in list(self.recorder.asked.values()):  # asked, never launched
            self.recorder.record(trial, {}, reasons.ERROR, frames=0, wall=0.0, score=math.nan,
                                 error_tail=why)

    def _stop_all(self, reason: str) -> None:
        """Deadline, Ctrl-C or too many failures: stop every trial, record each, leave no child."""
        self.stopping = True
        for r in list(self.running.values()):
            if r.reason is None:
                r.reason = reason
            r.proc.terminate()
        for r in list(self.running.values()):
            code = r.proc.wait_gone()
            try:
                self._finish(r, code)
            except Exception:
                if not self.recorder.aborting:
                    raise
                self.running.pop(r.trial.number, None)  # _abort records it from recorder.asked

    # ----------------------------------------------------------------- what others read of it
    @property
    def best(self) -> Best | None:
        """(mean score, first trial's number, values) of the best configuration so far, earlier
        sessions' included (automl.search.study.confirm ranks them)."""
        return self.tally.best

    def trained_count(self) -> int:
        """Trials of the study that count toward --hp-trials (all but constraint/interrupted)."""
        return self.count.get()

    def time_left(self) -> float:
        """Seconds to the search's deadline."""
        return self.budget.time_left()

    def write_state(self, phase: str) -> None:
        """automl_state.yaml: what the search is doing now."""
        reports.write_state(self.paths, search_state(
            self.paths.name, phase, running=self.running, tally=self.tally,
            trained=self.trained_count(), hp_trials=self.s.hp_trials, budget=self.budget,
            slots=len(self.s.slots)))

    # Seams for tests that drive the pruner through the loop's own steps.
    def _report(self, r: Running, frames: int, value: float) -> None:
        """One score point of a running trial, decided on as _poll_all does."""
        if take_point(r, frames, value, self.rules, store=self._pruner(r),
                      on_target=self._on_target(r)):
            r.proc.terminate()

    def _record(self, trial: optuna.Trial, values: dict[str, Any], reason: str, **end: Any) -> None:
        """A trial ended (TrialRecorder.record)."""
        self.recorder.record(trial, values, reason, **end)
