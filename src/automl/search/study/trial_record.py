"""The one writer of what the search learns about its trials: Optuna (ownership, tags, score points,
user attributes, tell), trial_final.csv, threshold_hits.csv and the console's line per ended trial,
plus the tally of ended trials by stop reason and the best so far that follow from them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from automl import reasons
from automl.paths import StudyPaths
from automl.search.space import SearchSpace
from automl.search.study import confirm, records, reports
from automl.search.study.recovery import FIXED_PARAMS, owner
from automl.search.study.storage import Heartbeat
from automl.search.trials.watch import Pruner, Report, TrialGone

STATE_OF_REASON = {
    reasons.COMPLETED: TrialState.COMPLETE, reasons.PLATEAU: TrialState.COMPLETE,
    reasons.DROP: TrialState.COMPLETE, reasons.PRUNED: TrialState.PRUNED,
    reasons.CONSTRAINT: TrialState.PRUNED,
    # Cut by the budget or Ctrl-C: no verdict on the configuration, so not PRUNED (which TPE reads
    # as a bad trial); FAIL, which samplers ignore, with stop_reason budget and `interrupted`.
    reasons.BUDGET: TrialState.FAIL,
    reasons.ERROR: TrialState.FAIL, reasons.TIMEOUT: TrialState.FAIL,
}

Best = tuple[float, int, dict[str, Any]]
"""The best configuration so far: (mean score over its seeds, its first trial's number, values)."""


@dataclass
class Tally:
    """Search trials ended, by stop reason (this session's and earlier sessions'), and the best."""

    finished: dict[str, int] = field(default_factory=lambda: {r: 0 for r in reasons.ALL})
    """Ended in this session: the failure rate counts only these."""
    earlier: dict[str, int] = field(default_factory=lambda: {r: 0 for r in reasons.ALL})
    """Ended by sessions before this one (--resume)."""
    best: Best | None = None
    best_seeds: int = 0
    """Completed seeds the best configuration's mean rests on (1: one run, not confirmed)."""

    @classmethod
    def of_study(cls, study: optuna.Study, space: SearchSpace, seeds: int) -> Tally:
        """--resume: trials ended before count in the state and the best so far (not in this
        session's failure rate, so a fixed cause of failures does not stop the study again)."""
        tally = cls()
        for t in study.get_trials(deepcopy=False):
            reason = t.user_attrs.get(records.STOP_REASON) or (
                reasons.ERROR if t.state == TrialState.FAIL else None)  # failed as stale
            if (not records.in_search(t)
                    or reason not in tally.earlier or not t.state.is_finished()):
                continue
            tally.earlier[reason] += 1
        tally.rank(confirm.ranked(study, seeds), space)
        return tally

    def rank(self, configs: list[confirm.Configuration], space: SearchSpace) -> None:
        """The best is the first of the ranked configurations (study/confirm.py): its mean over seeds."""
        if not configs:
            return
        top = configs[0]
        try:
            values = space.from_optuna(top.trial.params)
        except (KeyError, ValueError):  # resumed with another space file
            values = dict(top.trial.params)
        self.best = (top.mean, top.number, values)
        self.best_seeds = len(top.scores)

    def total(self) -> dict[str, int]:
        """Trials ended in this session and earlier ones, by stop reason (none left at 0)."""
        return {k: v + self.earlier[k] for k, v in self.finished.items() if v + self.earlier[k]}


class TrialRecorder:
    """Writes every trial of this process to the study and the study's files; the trials it asked
    and has not told yet are its own, kept alive by the storage heartbeat."""

    def __init__(self, study: optuna.Study, study_paths: StudyPaths, space: SearchSpace,
                 console: Any, tally: Tally, *, confirm_seeds: int = 1,
                 room: Callable[[int], bool] = lambda count: True, ranks: bool = True) -> None:
        self.study, self.paths, self.space, self.console, self.tally = (
            study, study_paths, space, console, tally)
        self.ranks = ranks
        """The search's configurations are ranked (and confirmed) after each trial; a population's
        segments are not configurations, and nothing is ranked for them."""
        self.confirm_seeds, self.room = confirm_seeds, room
        """--confirm-seeds: a new best is trained on this many seeds in all (study/confirm.py), when
        `room` says that many more trials can still start (a queued trial that cannot would
        stay queued, and confirm nothing)."""
        self.asked: dict[int, optuna.Trial] = {}
        """Trials this process asked for and has not yet told: each is recorded before it exits."""
        self.heartbeat = Heartbeat.for_storage(study._storage)
        self.aborting = False
        """Set once the loop raised: recording tolerates a failing storage from then on."""

    # ------------------------------------------------------------------------- while it runs
    def own(self, trial: optuna.Trial) -> None:
        """A trial just asked is this process's: heartbeat first (a dead owner goes stale), then
        the owner attribute that recovery reads."""
        self.asked[trial.number] = trial
        if self.heartbeat is not None:
            self.heartbeat.add(trial._trial_id)
        trial.set_user_attr(records.OWNER, owner())

    def give_up(self, trial: optuna.Trial) -> None:
        """Several orchestrators asked at once and the study is full: the trial ends outside the
        search, and a queued configuration it took goes back to the queue."""
        trial.set_user_attr(records.PHASE, records.PHASE_UNUSED)
        fixed = self.study._storage.get_trial(trial._trial_id).system_attrs.get(FIXED_PARAMS)
        self._tell(trial, None, TrialState.FAIL)
        self._release(trial)
        if fixed:
            self.study.enqueue_trial(fixed, user_attrs={
                k: v for k, v in trial.user_attrs.items() if k in records.QUEUED_ATTRS})

    def tag_search(self, trial: optuna.Trial, config_values: dict[str, Any],
                   violated: list[str]) -> None:
        """A search trial with its config values and how many constraints its values violate."""
        trial.set_user_attr(records.PHASE, records.PHASE_SEARCH)
        trial.set_user_attr(records.CONFIG_VALUES, config_values)
        trial.set_constraint("space", float(len(violated)))

    def tag_run_dir(self, trial: optuna.Trial, run_dir: str) -> None:
        """Where the trial trains, relative to the study folder."""
        trial.set_user_attr(records.RUN_DIR, run_dir)

    def pruner(self, trial: optuna.Trial) -> Pruner:
        """The trial's pruner for the watcher: stores a point, then asks Optuna's pruner."""
        def should_prune(step: int, value: float) -> bool:
            """Report the point at `step` frames, then Optuna's verdict on it."""
            self._report(trial, step, value)
            return trial.should_prune()
        return should_prune

    def reporter(self, trial: optuna.Trial) -> Report:
        """Stores the trial's points without asking the pruner (its process has ended)."""
        return lambda step, value: self._report(trial, step, value)

    @staticmethod
    def _report(trial: optuna.Trial, step: int, value: float) -> None:
        try:
            trial.report(value, step)
        except optuna.exceptions.UpdateFinishedTrialError as err:
            raise TrialGone(str(err)) from err

    def target_hit(self, number: int, frames: int, score: float, elapsed_s: float) -> None:
        """First time a trial's score reaches --target-score."""
        reports.append_threshold_hit(self.paths, {
            "trial": number, "frames": frames, "score": score, "elapsed_s": round(elapsed_s, 1),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")})

    # ------------------------------------------------------------------------------- its end
    def record(self, trial: optuna.Trial, values: dict[str, Any], reason: str, *, frames: int,
               wall: float, score: float, error_tail: str,
               metrics: dict[str, Any] | None = None) -> None:
        """A trial ended: once to the study, a row of trial_final.csv, a line on the console."""
        state = STATE_OF_REASON[reason]
        if reason in (reasons.ERROR, reasons.TIMEOUT):
            score = math.nan  # a failed trial has no result, whatever it reported before
        if state == TrialState.COMPLETE and not math.isfinite(score):
            state, reason = TrialState.FAIL, reasons.ERROR  # completed without any score point
        attrs: dict[str, Any] = {records.STOP_REASON: reason, records.FRAMES: frames,
                                 records.WALL_S: round(wall, 2)}
        if metrics is not None:
            attrs[records.METRICS] = metrics
        if error_tail:
            attrs[records.ERROR_TAIL] = error_tail[-2000:]
        if reason in (reasons.BUDGET, *([reasons.ERROR] if self.aborting else [])):
            attrs[records.INTERRUPTED] = True  # the trial was not at fault: it runs again
        not_stored = self._store(trial, attrs, score if state == TrialState.COMPLETE else None,
                                 state)
        error_tail = not_stored + error_tail
        self.tally.finished[reason] += 1
        if self.ranks and not not_stored and not self.aborting:  # aborting: the storage may fail
            self._confirm()
        row = {"trial": trial.number, "frames": frames,
               "score": score if math.isfinite(score) else None, "stop_reason": reason,
               "wall_s": round(wall, 2), **values, "error_tail": error_tail[-500:]}
        reports.append_trial_final(self.paths, row, self.space.names)
        self.console.trial_finished(trial.number, reason, score, frames)

    def _confirm(self) -> None:
        """A trial ended: queue the configuration to confirm now (if any, and if its runs can
        still start), and rank the configurations again for the best so far."""
        configs = confirm.ranked(self.study, self.confirm_seeds)
        chosen = confirm.next_to_confirm(configs, self.confirm_seeds)
        if chosen is not None and self.room(self.confirm_seeds - 1):
            confirm.enqueue_confirmations(self.study, chosen, self.confirm_seeds)
        self.tally.rank(configs, self.space)

    def _store(self, trial: optuna.Trial, attrs: dict[str, Any], value: float | None,
               state: TrialState) -> str:
        """The end into the study; returns what the error tail gains when it could not be."""
        try:
            for key, item in attrs.items():
                trial.set_user_attr(key, item)
            self._tell(trial, value, state)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another orchestrator failed it as stale (this one's heartbeats did not reach the
            # storage) and queued it again: the row still says how it ended here.
            return "failed meanwhile by another orchestrator (stale heartbeat)\n"
        except Exception as err:
            if not self.aborting:
                raise
            return f"not stored in the study ({type(err).__name__}: {err})\n"
        finally:
            self._release(trial)
        return ""

    def _release(self, trial: optuna.Trial) -> None:
        self.asked.pop(trial.number, None)
        if self.heartbeat is not None:
            self.heartbeat.discard(trial._trial_id)

    def _tell(self, trial: optuna.Trial, value: float | None, state: TrialState) -> None:
        try:
            self.study.tell(trial, value, state=state)
        except RuntimeError as err:
            # GridSampler.after_trial calls study.stop() once every grid point has ended, and
            # Optuna allows that only inside study.optimize. The state is stored before it
            # raises, and the loop sees the finished grid itself.
            if not isinstance(self.study.sampler, optuna.samplers.GridSampler) or \
                    "Study.stop" not in str(err):
                raise

    def close(self) -> None:
        """Stop the heartbeat (every trial of this process has been told by now)."""
        if self.heartbeat is not None:
            self.heartbeat.close()
