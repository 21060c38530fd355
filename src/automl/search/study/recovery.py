"""Trials whose orchestrator died: who owns a RUNNING trial, whether that owner still runs, and the
recovery of a dead owner's trials: each is failed (once, by whichever orchestrator notices first),
gets its trial_final.csv row, and its configuration is queued to run again.

On a database storage the owner keeps a heartbeat (automl.search.study.storage.Heartbeat) and a trial
whose heartbeat is stale is failed, on any machine. On this machine (and on the single-machine
journal file) the owner is a process identified by host, boot id, pid namespace, pid and the
process's start time, so a reused pid is not mistaken for the orchestrator that died, and a process
of another container (another pid namespace) is not looked up here at all.

A trial is failed together with its stop reason (error, interrupted: not its own fault), in one
step; the look for trials to retry is made without the study's lock, and only when it finds one
are the look and the queueing of retries made again under the lock
(automl.search.study.storage.study_lock, which no frozen holder keeps for long), so that
orchestrators recovering at the same moment, on any machine, queue each retry once.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl import reasons
from automl.paths import StudyPaths
from automl.search.space import SearchSpace
from automl.search.study import records, reports
from automl.search.study.storage import LockTimeout, fail_trial, stale_trial_ids, study_lock
from automl.summary import load_summary

ORPHAN_GRACE_S = 120.0
"""A RUNNING trial with no owner recorded (its orchestrator died between ask() and recording
itself, a few milliseconds) is taken to be dead once it is this old."""
HOST_ENV = "AUTOML_HOST"
"""Environment variable naming this machine on its trials (default: the host name); set it where
several machines or containers share one host name."""
FIXED_PARAMS = "fixed_params"
"""Optuna's system attribute holding an enqueued trial's parameters until they are suggested."""
LOCK_FILE = ".recovery.lock"
"""The study folder's lock file: the study's lock on the journal file (see storage.study_lock)."""


def queued_values(trial: FrozenTrial) -> dict[str, Any]:
    """A trial's configuration as it was meant to run: the values it was queued with (Optuna's
    fixed params, where it was enqueued), overlaid with every value it suggested. A trial stopped
    between two of its suggests has only some params: its queued values fill in the rest, so that
    its retry runs the same configuration, not one whose missing values are sampled afresh."""
    return {**(trial.system_attrs.get(FIXED_PARAMS) or {}), **trial.params}


# ------------------------------------------------------------------------------------ owner
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks since boot), None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the command name


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def owner() -> dict[str, Any]:
    """This orchestrator, as stored on each trial it runs."""
    pid = os.getpid()
    return {records.HOST: os.environ.get(HOST_ENV) or socket.gethostname(),
            records.BOOT_ID: _boot_id(), records.PID_NAMESPACE: _pid_namespace(),
            records.PID: pid, records.PROCESS_START: process_start(pid)}


def owner_of(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The owner recorded in a trial's user attributes (None: none recorded yet)."""
    recorded = attrs.get(records.OWNER)
    if isinstance(recorded, dict):
        return recorded
    if records.HOST in attrs:  # a study of an earlier version: host and pid only
        return {records.HOST: attrs[records.HOST], records.PID: attrs.get(records.LEGACY_PID)}
    return None


def owner_alive(attrs: dict[str, Any], *, mine: Collection[int] = (), number: int = -1,
                rebooted_is_dead: bool = True) -> bool | None:
    """Whether the orchestrator `attrs` (an owner_of) still runs the trial; None: cannot tell (another
    machine or container). This process owns only the trials in `mine` (an earlier search in this
    same process that ended is dead). `rebooted_is_dead`: the same host name with another boot id
    is this machine rebooted (the journal file), not another machine of the same name."""
    me = owner()
    if attrs.get(records.HOST) != me[records.HOST]:
        return None
    if attrs.get(records.BOOT_ID) not in (None, me[records.BOOT_ID]):
        return False if rebooted_is_dead else None
    if attrs.get(records.PID_NAMESPACE) not in (None, me[records.PID_NAMESPACE]):
        return None  # another container: its pids mean nothing here
    pid = attrs.get(records.PID)
    if not isinstance(pid, int):
        return False
    if pid == me[records.PID] and attrs.get(records.PROCESS_START) in (None, me[records.PROCESS_START]):
        return number in mine
    from automl.search.trials.forkserver import pid_exists

    if not pid_exists(pid):
        return False
    started = attrs.get(records.PROCESS_START)
    return started is None or process_start(pid) in (None, started)


# --------------------------------------------------------------------------------- recovery
class Recovery:
    """Finds the search trials of dead orchestrators and runs their configurations again."""

    def __init__(self, study_paths: StudyPaths, space: SearchSpace) -> None:
        self.paths, self.space = study_paths, space
        self.recovered: list[int] = []
        """Trial numbers this process failed as dead and queued again."""
        self._held = threading.RLock()
        self._depth = 0
        """How many `locked` blocks of this process are open (the study's lock is taken once)."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's heartbeat-stale callback, for a trial Optuna's own `fail_stale_trials` failed
        (`study.optimize` calls it; automl fails stale trials itself, in `run`, with their reason)."""
        with self.locked(study):
            self._after_fail(study, trial, _stale_why(trial))

    @contextlib.contextmanager
    def locked(self, study: optuna.Study) -> Iterator[None]:
        """The study's lock (storage.study_lock: one orchestrator at a time, on every machine),
        re-entrant in this process: what the holder reads of the trials and their retries stays
        true until it has failed them and queued their retries."""
        with self._held:
            outer = self._depth == 0
            self._depth += 1
            try:
                with (study_lock(study._storage, study._study_id, self.paths.root / LOCK_FILE)
                      if outer else contextlib.nullcontext()):
                    yield
            finally:
                self._depth -= 1

    def run(self, study: optuna.Study, *, mine: Collection[int] = ()) -> list[int]:
        """Fail every dead orchestrator's RUNNING search trial (and every trial whose heartbeat is
        stale) and queue its configuration once; returns the numbers recovered in this call."""
        before = len(self.recovered)
        if not self._to_recover(study, mine):  # the common case: looked for without the lock
            return []
        heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()
        try:
            with self.locked(study):
                for trial_id in stale_trial_ids(study._storage, study._study_id):
                    trial = study._storage.get_trial(trial_id)
                    self._fail(study, trial, _stale_why(trial))
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    why = self._dead(t, mine, heartbeat=bool(heartbeat))
                    if why and records.retried(t):
                        self._fail(study, t, why)
        except LockTimeout as err:  # another orchestrator holds it: the next look tries again
            print(f"automl: recovery deferred: {err}", file=sys.stderr)
        return self.recovered[before:]

    def _to_recover(self, study: optuna.Study, mine: Collection[int]) -> bool:
        """Whether some trial is stale or its orchestrator dead (read without the study's lock,
        which is taken only then)."""
        if stale_trial_ids(study._storage, study._study_id):
            return True
        heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()
        return any(records.retried(t) and self._dead(t, mine, heartbeat=bool(heartbeat))
                   for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    def running_elsewhere(self, study: optuna.Study, *, mine: Collection[int]) -> int:
        """RUNNING search trials of other orchestrators that may still end or be recovered: any on a
        database storage (the heartbeat tells), only live local ones on the journal file."""
        heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()
        count = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number in mine or not records.retried(t):
                continue
            if heartbeat or owner_alive(owner_of(t.user_attrs) or {}, mine=mine,
                                        number=t.number, rebooted_is_dead=True):
                count += 1
        return count

    @staticmethod
    def _dead(trial: FrozenTrial, mine: Collection[int], *, heartbeat: bool) -> str:
        """Why the trial's orchestrator is dead ("" when it is alive or this cannot tell)."""
        attrs = owner_of(trial.user_attrs)
        if attrs is None:
            start = trial.datetime_start
            age = (datetime.now(start.tzinfo) - start).total_seconds() if start else ORPHAN_GRACE_S
            return "its orchestrator died before recording itself" if age >= ORPHAN_GRACE_S else ""
        if owner_alive(attrs, mine=mine, number=trial.number, rebooted_is_dead=not heartbeat) is False:
            return "the orchestrator running it died"
        return ""

    def _fail(self, study: optuna.Study, trial: FrozenTrial, why: str) -> None:
        """Fail the trial with its stop reason, unless another orchestrator (or its owner) ended
        it first; then its row and its retry."""
        attrs = {records.STOP_REASON: reasons.ERROR, records.ERROR_TAIL: why,
                 records.INTERRUPTED: True}  # not the trial's fault: it runs again, uncounted
        if fail_trial(study._storage, trial._trial_id, attrs):
            self._after_fail(study, study._storage.get_trial(trial._trial_id), why)

    def _after_fail(self, study: optuna.Study, trial: FrozenTrial, why: str) -> None:
        """Its trial_final.csv row (every ended trial has one), and its configuration once more."""
        names = self.space.names
        values = {}
        with contextlib.suppress(KeyError, ValueError):
            values = self.space.from_optuna(trial.params) if set(names) <= trial.params.keys() else {}
        summary = load_summary(self.paths.trial_run(trial.number).summary)
        reports.append_trial_final(self.paths, {
            "trial": trial.number, "frames": summary.frames if summary else 0, "score": None,
            "stop_reason": reasons.ERROR, "wall_s": None, **values, "error_tail": why}, names)
        params = queued_values(trial)
        if params and records.retried(trial):
            enqueue_retry(study, trial, params, why=f"{reasons.ERROR}: {why}")
        self.recovered.append(trial.number)


def _stale_why(trial: FrozenTrial) -> str:
    host = (owner_of(trial.user_attrs) or {}).get(records.HOST, "an unknown host")
    return f"its orchestrator (on {host}) stopped sending heartbeats"


def retry_reason(trial: FrozenTrial) -> str | None:
    """Why `trial` ended without a result of its own, as its retry records it: its stop reason and
    the last line of its error tail ("budget", "error: the orchestrator running it died"); None
    where it recorded no stop reason."""
    reason = trial.user_attrs.get(records.STOP_REASON)
    if not reason:
        return None
    tail = str(trial.user_attrs.get(records.ERROR_TAIL) or "").strip().splitlines()
    return f"{reason}: {tail[-1]}" if tail else str(reason)


def enqueue_retry(study: optuna.Study, trial: FrozenTrial, params: dict[str, Any], *,
                  why: str | None = None) -> bool:
    """Queue `trial`'s configuration to run again, with what it said of itself (a confirmation
    keeps its seed) and why it ended (`why`, else its retry_reason), unless a retry of it exists
    already; True when this call queued it. Orchestrators that share the study call it under
    Recovery.locked, which makes the look and the queueing one step."""
    if any(t.user_attrs.get(records.RETRY_OF) == trial.number
           for t in study.get_trials(deepcopy=False)):
        return False
    kept = {k: v for k, v in trial.user_attrs.items() if k in records.QUEUED_ATTRS}
    why = why or retry_reason(trial)
    attrs = {**kept, records.RETRY_OF: trial.number, records.RETRY_REASON: why}
    if records.in_pbt(trial):  # the same segment: member, generation, parent, frames
        attrs[records.PHASE] = records.PHASE_PBT
    study.enqueue_trial(params, user_attrs={k: v for k, v in attrs.items() if v is not None})
    return True
