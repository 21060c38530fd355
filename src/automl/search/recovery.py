"""Trials whose orchestrator died: who owns a RUNNING trial, whether that owner still runs, and the
recovery of a dead owner's trials: each is failed (once, by whichever orchestrator notices first),
gets its trial_final.csv row, and its configuration is queued to run again.

On a database storage the owner keeps a heartbeat (automl.search.storage.Heartbeat) and Optuna's
`fail_stale_trials` fails trials whose heartbeat is stale, on any machine. On this machine (and on
the single-machine journal file) the owner is a process identified by host, boot id, pid namespace,
pid and the process's start time, so a reused pid is not mistaken for the orchestrator that died,
and a process of another container (another pid namespace) is not looked up here at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from automl import reasons
from automl.paths import StudyPaths
from automl.search import records, reports
from automl.search.space import SearchSpace
from automl.search.storage import quiet_optuna_warnings
from automl.summary import load_summary

ORPHAN_GRACE_S = 120.0
"""A RUNNING trial with no owner recorded (its orchestrator died between ask() and recording
itself, a few milliseconds) is taken to be dead once it is this old."""
HOST_ENV = "AUTOML_HOST"
"""Environment variable naming this machine on its trials (default: the host name); set it where
several machines or containers share one host name."""
FIXED_PARAMS = "fixed_params"
"""Optuna's system attribute holding an enqueued trial's parameters until they are suggested."""


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
    from automl.search.forkserver import pid_exists

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

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's heartbeat-stale callback: runs once, in the process that failed the trial."""
        host = (owner_of(trial.user_attrs) or {}).get(records.HOST, "an unknown host")
        self._after_fail(study, trial, f"its orchestrator (on {host}) stopped sending heartbeats")

    def run(self, study: optuna.Study, *, mine: Collection[int] = ()) -> list[int]:
        """Fail every dead orchestrator's RUNNING search trial and queue its configuration once;
        returns the numbers recovered in this call."""
        before = len(self.recovered)
        heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()
        if heartbeat:
            quiet_optuna_warnings()
            optuna.storages.fail_stale_trials(study)  # calls self for each trial it failed
        with self._lock(heartbeat is None):
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                why = self._dead(t, mine, heartbeat=bool(heartbeat))
                if why and records.in_search(t):
                    self._fail(study, t, why)
        return self.recovered[before:]

    def running_elsewhere(self, study: optuna.Study, *, mine: Collection[int]) -> int:
        """RUNNING search trials of other orchestrators that may still end or be recovered: any on a
        database storage (the heartbeat tells), only live local ones on the journal file."""
        heartbeat = getattr(study._storage, "get_heartbeat_interval", lambda: None)()
        count = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number in mine or not records.in_search(t):
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

    def _lock(self, needed: bool) -> contextlib.AbstractContextManager[Any]:
        """The journal file cannot fail a trial atomically (two writers both "succeed"): local
        orchestrators recover one at a time, under a lock file in the study folder."""
        return _flock(self.paths.root / ".recovery.lock") if needed else contextlib.nullcontext()

    def _fail(self, study: optuna.Study, trial: FrozenTrial, why: str) -> None:
        storage = study._storage
        try:
            storage.set_trial_user_attr(trial._trial_id, records.STOP_REASON, reasons.ERROR)
            storage.set_trial_user_attr(trial._trial_id, records.ERROR_TAIL, why)
            storage.set_trial_user_attr(trial._trial_id, records.INTERRUPTED, True)
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                return
        except UpdateFinishedTrialError:
            return  # another orchestrator got there first (or its owner just ended it)
        self._after_fail(study, storage.get_trial(trial._trial_id), why)

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
        params = trial.params or trial.system_attrs.get(FIXED_PARAMS) or {}
        if params and records.in_search(trial):
            enqueue_retry(study, trial, params)
        self.recovered.append(trial.number)


def enqueue_retry(study: optuna.Study, trial: FrozenTrial, params: dict[str, Any]) -> None:
    """Queue `trial`'s configuration to run again, with what it said of itself (a confirmation
    keeps its seed), unless a retry of it exists already."""
    if any(t.user_attrs.get(records.RETRY_OF) == trial.number
           for t in study.get_trials(deepcopy=False)):
        return
    kept = {k: v for k, v in trial.user_attrs.items() if k in records.QUEUED_ATTRS}
    study.enqueue_trial(params, user_attrs={**kept, records.RETRY_OF: trial.number})


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
