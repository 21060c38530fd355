"""The search loop: ask Optuna, check constraints, launch trials in free slots, read their event
files, report to the pruner, apply the stoppers, the budget and the timeouts, record every end."""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from automl import reasons, records, reports
from automl.budget import median_rate
from automl.forkserver import ForkServer
from automl.launcher import Slot, launch, pause
from automl.paths import StudyPaths, atomic_write_text
from automl.recovery import Recovery
from automl.space import SearchSpace
from automl.storage import hide_password
from automl.summary import load_summary
from automl.tb_reader import EventTail
from automl.trial_record import Best, Tally, TrialRecorder
from automl.trial_watch import (
    OnTarget,
    Running,
    WatchRules,
    ending,
    make_stoppers,
    settle,
    take_point,
    watch,
)

POLL_S = 0.1
"""Seconds between two polls of the running trials: a freed slot waits at most this long."""
STATE_EVERY_S = 5.0
TRAINED_REFRESH_S = 2.0
RECOVER_EVERY_S = 5.0
"""Seconds between two looks for trials of dead orchestrators on the journal file; on a database,
one look per heartbeat interval."""
MAX_CONSTRAINT_REJECTIONS = 1000
"""Consecutive constraint rejections after which the space is taken to be infeasible."""

def counts_toward_limit(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts toward --hp-trials: every search trial asked, running or ended, but
    not one queued and not started yet, one rejected by a constraint, one interrupted, or one that
    failed with its orchestrator (those two run again, and their re-runs count)."""
    attrs = trial.user_attrs
    if trial.state == TrialState.WAITING or attrs.get(records.PHASE, "search") != "search":
        return False
    if attrs.get(records.STOP_REASON) == reasons.CONSTRAINT or attrs.get(records.INTERRUPTED):
        return False
    # Failed by Optuna's stale-heartbeat check, which leaves no stop reason: no result of its own.
    return not (trial.state.is_finished() and records.STOP_REASON not in attrs)


@dataclass
class SearchSettings:
    """Everything the loop needs, checked by the CLI before anything is launched."""

    space: SearchSpace
    worker: list[str]
    """Command prefix of a trial (python train_one.py); overrides are appended."""
    user_overrides: list[str]
    """Hydra overrides from the command line: they win over the space's fixed values."""
    hp_trials: int
    budget_s: float
    frames: int
    eval_frequency: int
    slots: list[Slot]
    plateau_patience: int
    plateau_min_delta: float
    drop: float
    grace_frames: int
    trial_timeout: float
    max_failure_rate: float
    target_score: float | None
    forkserver: ForkServer | None = None
    """Trials are forked from it (fast start) when set; else each is a cold `python` start."""
    recovery: Recovery | None = None
    """Fails the trials of dead orchestrators and queues them again (None: never looked for)."""


@dataclass
class Outcome:
    """How the search ended."""

    finished: dict[str, int]
    stopped_by: str
    """hp_trials / grid / budget / interrupted / failures / infeasible"""
    message: str = ""


class Scheduler:
    """Fills free slots with new trials and drives the running ones to exactly one stop reason."""

    def __init__(self, study: optuna.Study, study_paths: StudyPaths, settings: SearchSettings,
                 console: Any) -> None:
        self.study, self.paths, self.s, self.console = study, study_paths, settings, console
        self.running: dict[int, Running] = {}
        self.free: list[Slot] = list(settings.slots)
        self.tally = Tally.of_study(study, settings.space)
        self.finished = self.tally.finished
        self.recorder = TrialRecorder(study, study_paths, settings.space, console, self.tally)
        self.rates: list[float] = []
        """Frames per second of every trial that ended having trained (start-up included)."""
        self.start = time.monotonic()
        self.deadline = self.start + settings.budget_s
        self.interrupted = False
        self.rejections = 0
        self.next_state = 0.0
        self._trained: int | None = None
        self._trained_at = 0.0
        self.next_recovery = 0.0
        self.waiting_for = 0
        self._others_at = -math.inf
        """RUNNING trials of other orchestrators this one waits for once no new trial may start."""
        self.rules = WatchRules(eval_frequency=settings.eval_frequency,
                                trial_timeout=settings.trial_timeout,
                                target_score=settings.target_score)

    @property
    def best(self) -> Best | None:
        """(score, trial number, values) of the best trial so far, earlier sessions' included."""
        return self.tally.best

    # -------------------------------------------------------------------------------- main loop
    def run(self) -> Outcome:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            stopped_by, message = self._loop()
        except BaseException as err:
            # A storage error, a broken pipe, a bug: no trial this process asked stays RUNNING.
            self._abort(err)
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.recorder.close()
        if stopped_by == "infeasible":
            message = (f"{MAX_CONSTRAINT_REJECTIONS} sampled configurations in a row violated the "
                       f"constraints of {self.s.space.source}; loosen them or the ranges")
        self.write_state("search finished")
        return Outcome(finished=dict(self.finished), stopped_by=stopped_by, message=message)

    def _loop(self) -> tuple[str, str]:
        while True:
            # Poll first: a slot freed by a trial that just ended is filled in this pass,
            # unless that end stops the search (deadline, failure rate).
            self._poll_all()
            now = time.monotonic()
            if self.interrupted or now >= self.deadline:
                self._stop_all(reasons.BUDGET)
                return ("interrupted" if self.interrupted else "budget"), ""
            failed = self._failure_message()
            if failed:
                self._stop_all(reasons.BUDGET)
                return "failures", failed
            if now >= self.next_recovery:
                self._recover()
            why_not = self._fill_slots()
            if not self.running and why_not and not self._wait_for_others(why_not):
                # A study that ran out of trials (or grid points) mostly failing has failed,
                # however few trials it had.
                message = self._failure_message(minimum=1)
                return ("failures" if message else why_not), message
            if now >= self.next_state:
                self.write_state("search")
                self.next_state = now + STATE_EVERY_S
            self.console.update(self)
            pause(POLL_S, self.s.forkserver)

    def _recover(self) -> None:
        """Fail the trials of dead orchestrators; their configurations are queued to run again."""
        heartbeat = self.recorder.heartbeat
        every = heartbeat.interval_s if heartbeat is not None else RECOVER_EVERY_S
        self.next_recovery = time.monotonic() + every
        if self.s.recovery is None:
            return
        recovered = self.s.recovery.run(self.study, mine=self.recorder.asked)
        if recovered:
            self._trained = None  # a recovered trial no longer counts; its re-run will
            self.console.message(f"automl: trial(s) {', '.join(map(str, recovered))} of a dead "
                                 "orchestrator failed; their configurations run again")

    def _wait_for_others(self, why_not: str) -> bool:
        """No new trial may start here: wait while other orchestrators run trials of the study, so
        that one whose orchestrator dies is recovered and run again here."""
        if why_not not in ("hp_trials", "grid") or self.s.recovery is None:
            return False
        now = time.monotonic()
        if now - self._others_at >= TRAINED_REFRESH_S:
            self.waiting_for = self.s.recovery.running_elsewhere(self.study,
                                                                 mine=self.recorder.asked)
            self._others_at = now
        return self.waiting_for > 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self.interrupted = True

    # ------------------------------------------------------------------------------- launching
    def trained_count(self) -> int:
        """Trials of the study that count toward --hp-trials (all but constraint/interrupted).

        Read from the storage at most every TRAINED_REFRESH_S (other orchestrators may share the
        study); launches of this process are added in between, so the loop does not re-read every
        trial on each poll."""
        now = time.monotonic()
        if self._trained is None or now - self._trained_at > TRAINED_REFRESH_S:
            self._trained, self._trained_at = self._count_trained(), now
        return self._trained

    def _count_trained(self, below: int | None = None) -> int:
        """Trials of the whole study that count toward --hp-trials (those numbered below `below`)."""
        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if counts_toward_limit(t) and (below is None or t.number < below))

    def _budget_allows_start(self) -> bool:
        """No trial starts that cannot finish before the deadline, given durations seen so far."""
        estimate = self._expected_duration()
        return estimate is None or time.monotonic() + estimate <= self.deadline

    def _expected_duration(self) -> float | None:
        """A new trial's time: its frames at the running median of the trials' frames/s (ended
        ones, and the running ones so far); never the slowest trial seen."""
        now = time.monotonic()
        running = [r.frames / (now - r.proc.started) for r in self.running.values()
                   if r.frames > 0 and now > r.proc.started]
        rate = median_rate([*self.rates, *running])
        return None if rate is None else self.s.frames / rate

    def _fill_slots(self) -> str | None:
        """Launch into free slots; returns why no more trials can start (None while they can)."""
        grid = isinstance(self.study.sampler, optuna.samplers.GridSampler)
        while self.free:
            if self.trained_count() >= self.s.hp_trials:
                return "hp_trials"
            if grid and self._grid_taken():
                return "grid"
            if not self._budget_allows_start():
                return "budget"
            if self.rejections >= MAX_CONSTRAINT_REJECTIONS:
                return "infeasible"
            self._start_one()
        return None

    def _grid_taken(self) -> bool:
        """Grid search: every point has a trial, ended or running, and no trial is queued.

        GridSampler.is_exhausted counts only ended trials: a slot freed while the last points
        run would start a copy of a running point.
        """
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return False
        taken = {t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs}
        return len(taken) >= self.s.space.grid_size()

    def _ask(self) -> optuna.Trial | None:
        """A new trial of the study, owned by this process; None when the study reached
        --hp-trials meanwhile (another orchestrator asked first)."""
        trial = self.study.ask()
        self.recorder.own(trial)
        if self._count_trained(below=trial.number) < self.s.hp_trials:
            return trial
        self.recorder.give_up(trial)
        self._trained = None
        return None

    def _start_one(self) -> None:
        trial = self._ask()
        if trial is None:
            return
        values = self.s.space.suggest(trial)
        config_values = self.s.space.config_values(values)
        base = [*self.s.space.fixed_overrides(), *self.s.space.overrides(values), *self.s.user_overrides]
        violated = self.s.space.check(values, self.s.user_overrides)
        self.recorder.tag_search(trial, config_values, violated)
        if violated:  # recorded like any trial (its config too), never trained
            self.rejections += 1
            self._write_trial_config(trial.number, values, config_values, base, [])
            self.recorder.record(trial, values, reasons.CONSTRAINT, frames=0, wall=0.0,
                                 score=math.nan, error_tail="violates: " + "; ".join(violated))
            return
        self.rejections = 0
        if self._trained is not None:
            self._trained += 1
        slot = self.free.pop(0)
        run = self.paths.trial_run(trial.number)
        self.recorder.tag_run_dir(trial, str(run.root.relative_to(self.paths.root)))
        overrides = [*base, *self._run_overrides(run.root, slot)]
        self._write_trial_config(trial.number, values, config_values, base, overrides)
        proc = launch(number=trial.number, command=[*self.s.worker, *overrides], run=run, slot=slot,
                      forkserver=self.s.forkserver)
        stoppers = make_stoppers(plateau_patience=self.s.plateau_patience,
                                 plateau_min_delta=self.s.plateau_min_delta, drop=self.s.drop,
                                 grace_reports=max(1, self.s.grace_frames // self.s.eval_frequency))
        self.running[trial.number] = Running(trial=trial, proc=proc, values=values,
                                             tail=EventTail(run.tb), stoppers=stoppers)

    @staticmethod
    def _run_overrides(run_dir: Any, slot: Slot) -> list[str]:
        """Where and how this run happens (not part of the configuration)."""
        ours = [f"run_dir={run_dir}", "train.quiet=true", f"train.threads={slot.threads}"]
        if slot.gpu is not None:
            ours.append("env.device=cuda")
        return ours

    def _write_trial_config(self, number: int, values: dict[str, Any], config_values: dict[str, Any],
                            base: list[str], overrides: list[str]) -> None:
        payload = {"trial": number, "search_space_id": self.s.space.space_id, "params": values,
                   "config_values": config_values, "base_overrides": base,
                   "user_overrides": self.s.user_overrides, "overrides": overrides,
                   "command": [*self.s.worker, *overrides]}
        atomic_write_text(self.paths.trial_config(number), json.dumps(payload, indent=2) + "\n")

    # --------------------------------------------------------------------------------- polling
    def _poll_all(self) -> None:
        for r in list(self.running.values()):
            # Exit first: the last points of a process that ended by itself must not prune or
            # stop it after the fact (_finish takes them without a decision).
            code = r.proc.poll()
            if code is not None:
                self._finish(r, code)
            elif watch(r, self.rules, should_prune=self.recorder.pruner(r.trial),
                       on_target=self._on_target(r), now=time.monotonic()):
                r.proc.terminate()

    def _report(self, r: Running, frames: int, value: float) -> None:
        """One score point of a running trial, decided on as _poll_all does."""
        if take_point(r, frames, value, self.rules, store=self.recorder.pruner(r.trial),
                      on_target=self._on_target(r)):
            r.proc.terminate()

    def _on_target(self, r: Running) -> OnTarget:
        return lambda frames, score: self.recorder.target_hit(
            r.trial.number, frames, score, elapsed_s=time.monotonic() - self.start)

    def _finish(self, r: Running, code: int) -> None:
        """The process is gone: free its slot, settle the stop reason and record the trial once."""
        del self.running[r.trial.number]
        self.free.append(r.proc.slot)
        self.free.sort(key=lambda s: s.index)
        settle(r, self.rules, report=self.recorder.reporter(r.trial), on_target=self._on_target(r))
        end = ending(r, code, load_summary(r.proc.run.summary), now=time.monotonic())
        if end.frames > 0 and end.wall_s > 0:
            self.rates.append(end.frames / end.wall_s)
        self.recorder.record(r.trial, r.values, end.reason, frames=end.frames, wall=end.wall_s,
                             score=end.score, error_tail=end.error_tail, metrics=end.metrics)

    def _record(self, trial: optuna.Trial, values: dict[str, Any], reason: str, **end: Any) -> None:
        """A trial ended (TrialRecorder.record); the pruning test drives it directly."""
        self.recorder.record(trial, values, reason, **end)

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

    def _failure_message(self, minimum: int = 4) -> str:
        """Why the study has failed, once `minimum` trials have ended; "" while it has not."""
        failed = self.finished[reasons.ERROR] + self.finished[reasons.TIMEOUT]
        ended = sum(v for k, v in self.finished.items() if k != reasons.CONSTRAINT)
        if ended >= minimum and failed / ended > self.s.max_failure_rate:
            return (f"{failed} of {ended} trials failed (error or timeout), more than "
                    f"--max-failure-rate {self.s.max_failure_rate}; see the error_tail column of "
                    f"{self.paths.trial_final_csv}")
        return ""

    # ----------------------------------------------------------------------------------- state
    def time_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def write_state(self, phase: str) -> None:
        elapsed = time.monotonic() - self.start
        remaining = max(0, self.s.hp_trials - self.trained_count())
        estimate = self._expected_duration()
        eta = None
        if estimate is not None:
            eta = min(self.time_left(), estimate * math.ceil(remaining / len(self.s.slots)))
        best = None
        if self.tally.best is not None:
            best = {"trial": self.tally.best[1], "score": self.tally.best[0],
                    "params": self.tally.best[2]}
        reports.write_state(self.paths, {
            "phase": phase,
            "study": self.paths.name,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "running": [{"trial": n, "frames": r.frames,
                         "score": r.score if math.isfinite(r.score) else None,
                         "elapsed_s": round(time.monotonic() - r.proc.started, 1)}
                        for n, r in sorted(self.running.items())],
            "finished": self.tally.total(),
            "trained": self.trained_count(),
            "hp_trials": self.s.hp_trials,
            "best": best,
            "budget": {"total_s": round(self.s.budget_s, 1), "used_s": round(elapsed, 1),
                       "left_s": round(self.time_left(), 1)},
            "estimated_time_left_s": None if eta is None else round(eta, 1),
        })
