"""The study's storage: the journal file in the study folder, or a database URL (PostgreSQL for many
machines), checked before anything is written; the heartbeat of the trials this orchestrator
runs, which lets another orchestrator recover them when this one dies (see automl.search.study.recovery);
and the two steps that recovery needs to be atomic across machines: a lock on the study, and the
fail of a trial together with its stop reason."""

from __future__ import annotations

import contextlib
import fcntl
import math
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, _CachedStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from automl.errors import ConfigError
from automl.paths import StudyPaths

HEARTBEAT_S = 10
"""Default seconds between two heartbeats of a running trial (`--heartbeat-interval`)."""
GRACE_HEARTBEATS = 3
"""A trial whose last heartbeat is older than this many intervals is stale: its orchestrator is
taken to be dead (one slow write or a short network stall does not fail a live trial)."""
CREATE_ATTEMPTS = 5
"""Tries to open a database whose tables other machines create at the same moment."""
CONNECT_TIMEOUT_S = 10
"""An unreachable PostgreSQL host fails after this long instead of the system's TCP timeout."""
LOCK_WAIT_S = 60.0
"""Seconds a process tries to take the study's lock before it gives up (LockTimeout)."""
LOCK_IDLE_S = 20.0
"""On PostgreSQL, seconds a holder's lock transaction may sit idle before the server ends its
session, releasing the lock: the work under the lock takes milliseconds; a stopped holder is cut off."""
LOCK_POLL_S = 0.2
"""Seconds between two tries of a lock someone else holds."""


class LockTimeout(RuntimeError):
    """The study's lock could not be taken in time (another orchestrator holds it)."""


STUDY_LOCK_SPACE = 0x61756D6C
"""First key of a study's PostgreSQL advisory lock (the study id is the second): "auml", so that
automl's locks are told from any other application's on the same database."""

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)")
URL_FORMS = ("postgresql://USER:PASSWORD@HOST:PORT/DATABASE, mysql+pymysql://USER:PASSWORD@HOST/DATABASE "
             "or sqlite:///FILE.db")


def hide_password(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***` (for files and the console)."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", text)


def without_password(url: str | None) -> str | None:
    """The URL as files keep it: no password (psycopg then reads PGPASSWORD or ~/.pgpass)."""
    return None if url is None else _URL_PASSWORD.sub(
        lambda m: f"{m['head'][:-1]}{m['at']}", url)


def quiet_optuna_warnings() -> None:
    """Optuna warns that its heartbeat is experimental and "supposed to be used with optimize":
    automl drives ask/tell itself and calls fail_stale_trials, as Optuna's docs say to."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def open_storage(study_paths: StudyPaths, url: str | None, *, heartbeat_s: int | None = None,
                 on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None
                 ) -> BaseStorage:
    """`--storage URL` (a database, with heartbeats when `heartbeat_s` is set), else the study's
    journal file. A URL that cannot be used raises ConfigError naming it, what failed and the fix."""
    if not url:
        study_paths.root.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(study_paths.journal)))
    quiet_optuna_warnings()
    grace = None if heartbeat_s is None else GRACE_HEARTBEATS * heartbeat_s
    for attempt in range(CREATE_ATTEMPTS):
        try:
            return RDBStorage(url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=heartbeat_s,
                              grace_period=grace, heartbeat_stale_trial_callback=on_stale)
        except Exception as err:  # noqa: BLE001 - every way a URL fails becomes one message
            if _lost_table_race(err) and attempt + 1 < CREATE_ATTEMPTS:
                time.sleep(random.uniform(0.1, 0.5))
                continue
            raise storage_error(url, err) from None
    raise AssertionError("not reached")


def _lost_table_race(err: BaseException) -> bool:
    """Machines that open a new, empty database at once all create Optuna's tables; PostgreSQL
    lets one win and fails the others ("duplicate key ... pg_type_typname_nsp_index"): they try
    again and find the tables made."""
    text = str(err).lower()
    return type(err).__name__ in ("IntegrityError", "ProgrammingError") and (
        "duplicate key" in text or "already exists" in text)


def check_storage(url: str | None) -> None:
    """Connect to `--storage URL` once (creating Optuna's tables in an empty database): a bad URL,
    an unreachable host, a refused password or a missing database stop here, before any write."""
    if url:
        storage = open_storage(StudyPaths.for_study("_"), url)
        assert isinstance(storage, RDBStorage)
        storage.engine.dispose()


def _engine_kwargs(url: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a server restart does not break the study
    if url.startswith("postgresql") and "connect_timeout" not in url:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


def _what_failed(err: BaseException) -> tuple[str, str]:
    """(what failed, the fix) for an exception raised while opening a storage URL."""
    text = str(getattr(err, "orig", None) or err).strip().splitlines()[0] if str(err).strip() else ""
    low = text.lower()
    name = type(err).__name__
    if name == "NoSuchModuleError" or "can't load plugin" in low:
        return (f"SQLAlchemy knows no database of that kind ({text})", f"write it as {URL_FORMS}")
    if isinstance(err, ImportError):
        return ("the Python driver for that database is not installed",
                f"install it (e.g. `uv add pymysql` for mysql+pymysql://), or use {URL_FORMS}; "
                "PostgreSQL's driver, psycopg, comes with automl")
    if name == "ArgumentError" or "could not parse" in low:
        return f"it is not a database URL ({text})", f"write it as {URL_FORMS}"
    if "password authentication failed" in low or "access denied" in low or "no password" in low:
        return (f"the server refused the user or password ({text})",
                "check the user and password (or leave the password out of the URL and set "
                "PGPASSWORD / ~/.pgpass)")
    if "does not exist" in low and "database" in low or "unknown database" in low:
        return (f"the database does not exist ({text})",
                "create it first, e.g. `createdb -h HOST -U USER DATABASE`, or fix its name")
    if "unable to open database file" in low:
        return f"the SQLite file cannot be created ({text})", "give a path in an existing folder"
    return (f"the database server cannot be reached ({text or name})",
            "check the host and port, that the server runs and accepts connections from this "
            "machine")


def storage_error(url: str, err: BaseException) -> ConfigError:
    """A ConfigError on --storage saying what failed and the fix, with the password hidden."""
    what, fix = _what_failed(err)
    return ConfigError(file="command line", key="--storage", value=hide_password(url),
                       rule=hide_password(what), fix=fix)


class Heartbeat:
    """Records a heartbeat for every trial this orchestrator runs, from one background thread, so
    a busy search loop does not let its own trials go stale. Database storages only."""

    def __init__(self, storage: BaseStorage, interval_s: float) -> None:
        self.storage, self.interval_s = storage, interval_s
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: str = ""
        """The last failure to record a heartbeat ("" when the last round succeeded)."""
        self._thread = threading.Thread(target=self._loop, name="automl-heartbeat", daemon=True)
        self._thread.start()

    @staticmethod
    def for_storage(storage: BaseStorage) -> Heartbeat | None:
        """A running Heartbeat for a storage with a heartbeat interval (databases); None for the others."""
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        return Heartbeat(storage, interval) if interval else None

    def add(self, trial_id: int) -> None:
        """Start beating for a trial just asked for (its first beat is recorded now)."""
        self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        with self._lock:
            self._ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        """Stop beating for a trial that has ended."""
        with self._lock:
            self._ids.discard(trial_id)

    def close(self) -> None:
        """Stop the thread, waiting at most one interval plus 5 s for it."""
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                ids = sorted(self._ids)
            try:
                for trial_id in ids:
                    self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
                self.error = ""
            except Exception as err:  # noqa: BLE001 - a lost beat is retried next round
                self.error = hide_password(str(err).splitlines()[0] if str(err) else repr(err))


# --------------------------------------------------------------------------- atomic recovery
def rdb_of(storage: BaseStorage) -> RDBStorage | None:
    """The database storage behind `storage` (a study wraps it in Optuna's cache); None for the
    journal file and the in-memory storage."""
    if isinstance(storage, _CachedStorage):
        storage = storage._backend
    return storage if isinstance(storage, RDBStorage) else None


@contextlib.contextmanager
def study_lock(storage: BaseStorage, study_id: int, lock_file: Path, *,
               wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Held by one process of the study at a time, on every machine that shares it, for as long as
    the block runs: a PostgreSQL advisory lock (MySQL's named lock) on a database, `lock_file` for
    the journal file (one folder, one machine), a file beside an SQLite database. A process that
    dies holding it releases it (its connection or file closes): no claim is ever left behind.

    Nobody waits for ever: a waiter tries for `wait_s` seconds, then raises LockTimeout. On
    PostgreSQL a holder that stops (SIGSTOP, a network partition) while its lock's transaction sits
    idle is cut off by the server after LOCK_IDLE_S, which releases the lock (its later commit fails
    and is reported, not raised): a frozen machine delays the others' recovery by that, not by the
    server's TCP keepalive (about two hours by default)."""
    from sqlalchemy import text

    rdb = rdb_of(storage)
    dialect = rdb.engine.name if rdb is not None else None
    if rdb is not None and dialect == "postgresql":
        with _postgres_lock(rdb, study_id, wait_s=wait_s):
            yield
    elif rdb is not None and dialect == "mysql":
        # Named locks are per server: the database's name keeps two databases' studies apart.
        name = f"automl:{rdb.engine.url.database}:{study_id}"[-64:]
        with rdb.engine.connect() as conn:
            got = conn.execute(text("SELECT GET_LOCK(:name, :wait)"),
                               {"name": name, "wait": int(math.ceil(wait_s))}).scalar()
            if got != 1:
                raise LockTimeout(f"study {study_id}'s lock ({name}) was held for {wait_s:.0f} s")
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
    else:
        database = rdb.engine.url.database if rdb is not None else None
        if database and database != ":memory:":  # SQLite: any process that opens the same file
            lock_file = Path(f"{database}.recovery.lock")
        with file_lock(lock_file, wait_s=wait_s):
            yield


@contextlib.contextmanager
def _postgres_lock(rdb: RDBStorage, study_id: int, *, wait_s: float) -> Iterator[None]:
    """A transaction-level advisory lock, tried until `wait_s` (pg_try_advisory_xact_lock: a waiter
    never blocks inside the server), in a transaction the server ends if it idles LOCK_IDLE_S."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    conn = rdb.engine.connect()
    try:
        transaction = conn.begin()
        with contextlib.suppress(DBAPIError), conn.begin_nested():  # a server without it: no cut-off
            conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = {int(LOCK_IDLE_S * 1000)}"))
        deadline = time.monotonic() + wait_s
        while not conn.execute(text("SELECT pg_try_advisory_xact_lock(:space, :study)"),
                               {"space": STUDY_LOCK_SPACE, "study": study_id}).scalar():
            if time.monotonic() >= deadline:
                raise LockTimeout(f"study {study_id}'s lock was held by another orchestrator for "
                                  f"{wait_s:.0f} s")
            time.sleep(LOCK_POLL_S)
        yield
        try:
            transaction.commit()
        except DBAPIError as err:  # cut off while it held the lock (it stopped for LOCK_IDLE_S)
            warnings.warn(f"the study's lock was released by the server while this process held "
                          f"it (its work under the lock sat idle for {LOCK_IDLE_S:.0f} s: "
                          f"{str(err).splitlines()[0]}); another orchestrator may have queued the "
                          "same retries or segments at the same moment", stacklevel=3)
    finally:
        with contextlib.suppress(DBAPIError):
            conn.close()


@contextlib.contextmanager
def file_lock(path: Path, *, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing) for the block, for processes of this
    machine; LockTimeout after `wait_s` seconds of trying."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{path} was locked by another process for {wait_s:.0f} s") from None
                time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stale_trial_ids(storage: BaseStorage, study_id: int) -> list[int]:
    """RUNNING trials of the study whose heartbeat is older than the grace period (their
    orchestrator is taken to be dead); [] where the storage keeps no heartbeat."""
    if not getattr(storage, "get_heartbeat_interval", lambda: None)():
        return []
    return list(storage._get_stale_trial_ids(study_id))  # type: ignore[attr-defined]


def fail_trial(storage: BaseStorage, trial_id: int, user_attrs: Mapping[str, Any]) -> bool:
    """Fail a RUNNING trial with `user_attrs` (its stop reason and why); False when it is not
    running any more (another orchestrator failed it, or its own ended it first).

    On a database it is one transaction under the trial's row lock: no orchestrator ever reads the
    trial failed without its reason, and an owner still alive that tells the trial at the same
    moment either tells it first (this returns False and writes nothing) or finds it failed.
    Optuna's API writes attributes only to a trial not yet ended, one write at a time: written
    first, they would stay on a trial its owner then ends (interrupted, and run again)."""
    rdb = rdb_of(storage)
    if rdb is None:  # the journal: the caller holds study_lock and the owner is known dead
        try:
            for key, value in user_attrs.items():
                storage.set_trial_user_attr(trial_id, key, value)
            return storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            return False
    from optuna.storages._rdb import models
    from sqlalchemy.orm import Session

    with Session(rdb.engine) as session, session.begin():
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        if trial.state != TrialState.RUNNING:
            return False
        for key, value in user_attrs.items():
            rdb._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id,
                                               key, value)
        trial.state = TrialState.FAIL
        trial.datetime_complete = datetime.now()  # as Optuna's set_trial_state_values does
    return True
