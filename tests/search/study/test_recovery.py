"""Who owns a RUNNING trial and whether that owner still runs: host, boot id, pid namespace, pid and
process start time; and the recovery of a dead owner's trials, on the journal file and on a real
PostgreSQL server (failed once, one trial_final.csv row, its configuration queued once)."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState
from search_harness import SPACES, rows

from automl import reasons
from automl.paths import StudyPaths
from automl.search.optuna_loop.search_policy import counts_toward_limit
from automl.search.space import load_space
from automl.search.study import records, recovery
from automl.search.study.recovery import Recovery, owner, owner_alive, process_start
from automl.search.study.storage import fail_trial, open_storage

LR = "learning_rate"


@pytest.fixture
def sleeper():
    """A live process that is not an orchestrator."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def owned_by(process: int, **changes) -> dict:
    """This machine's owner record for `process`, with `changes`."""
    attrs = {**owner(), records.PID: process, records.PROCESS_START: process_start(process)}
    return {**attrs, **changes}


def test_a_live_process_with_its_own_start_time_is_alive(sleeper):
    assert owner_alive(owned_by(sleeper.pid)) is True


def test_a_reused_pid_is_not_the_orchestrator_that_died(sleeper):
    reused = owned_by(sleeper.pid, **{records.PROCESS_START: process_start(sleeper.pid) - 1})
    assert owner_alive(reused) is False


def test_a_dead_pid_is_dead(sleeper):
    attrs = owned_by(sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    assert owner_alive(attrs) is False


def test_this_process_owns_only_the_trials_it_runs():
    me = owner()
    assert owner_alive(me, mine={3}, number=3) is True
    assert owner_alive(me, mine={3}, number=4) is False  # an earlier search in this process


@pytest.mark.parametrize(("changes", "expected"), [
    ({records.HOST: "another-machine"}, None),
    ({records.PID_NAMESPACE: "pid:[1]"}, None),  # another container
    ({records.BOOT_ID: "another-boot"}, False),  # this machine, rebooted
    ({records.PID: None}, False),
])
def test_owner_elsewhere_or_before_a_reboot(sleeper, changes, expected):
    assert owner_alive(owned_by(sleeper.pid, **changes)) is expected


def test_a_reboot_is_not_assumed_where_the_heartbeat_decides(sleeper):
    attrs = owned_by(sleeper.pid, **{records.BOOT_ID: "another-boot"})
    assert owner_alive(attrs, rebooted_is_dead=False) is None


@pytest.fixture(params=["journal", "postgresql"])
def shared(request, tmp_path):
    """(study, its folder, a Recovery) on the journal file or on the PostgreSQL server."""
    sp = StudyPaths(tmp_path / "study")
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"rec_{tmp_path.name[-20:]}")
    rec = Recovery(sp, load_space(SPACES / "lr_prior.yaml", reward_terms=[]))
    storage = open_storage(sp, url, heartbeat_s=1 if url else None, on_stale=rec if url else None)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    return study, sp, rec


def asked(study: optuna.Study, lr: float, attrs: dict | None) -> optuna.trial.FrozenTrial:
    """A RUNNING trial with `lr`, owned as `attrs` says (None: no owner recorded)."""
    study.enqueue_trial({LR: lr})
    trial = study.ask()
    if attrs is not None:
        trial.set_user_attr(records.OWNER, attrs)
    trial.suggest_float(LR, 1e-6, 1e-1, log=True)
    return study._storage.get_trial(trial._trial_id)


def retries(study: optuna.Study, number: int) -> list:
    return [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get(records.RETRY_OF) == number]


def test_a_dead_owners_trial_is_failed_once_recorded_and_queued_once(shared, sleeper):
    study, sp, rec = shared
    reused = owned_by(sleeper.pid, **{records.PROCESS_START: process_start(sleeper.pid) + 7})
    dead = asked(study, 1e-3, reused)
    alive = asked(study, 2e-3, owned_by(sleeper.pid))
    elsewhere = asked(study, 3e-3, owned_by(sleeper.pid, **{records.HOST: "another-machine"}))
    assert rec.run(study) == [dead.number]
    assert rec.run(study) == []  # a second look (another orchestrator's) changes nothing
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert trials[dead.number].state == TrialState.FAIL
    assert trials[dead.number].user_attrs[records.STOP_REASON] == reasons.ERROR
    assert trials[dead.number].user_attrs[records.INTERRUPTED] is True
    assert trials[alive.number].state == TrialState.RUNNING
    assert trials[elsewhere.number].state == TrialState.RUNNING
    [retry] = retries(study, dead.number)
    assert retry.state == TrialState.WAITING
    assert retry.system_attrs["fixed_params"] == {LR: pytest.approx(1e-3)}
    assert retry.user_attrs[records.RETRY_REASON] == "error: the orchestrator running it died"
    assert [(r["trial"], r["stop_reason"]) for r in rows(sp)] == [(str(dead.number), "error")]


def test_a_trial_whose_owner_died_before_recording_itself_is_failed_after_the_grace(
        shared, monkeypatch):
    study, sp, rec = shared
    study.enqueue_trial({LR: 5e-4})
    orphan = study.ask()  # popped from the queue, never given an owner or its parameter
    assert rec.run(study) == []  # within the grace: it may be an orchestrator between two calls
    monkeypatch.setattr(recovery, "ORPHAN_GRACE_S", 0.0)
    assert rec.run(study) == [orphan.number]
    assert study._storage.get_trial(orphan._trial_id).state == TrialState.FAIL
    [retry] = retries(study, orphan.number)
    assert retry.system_attrs["fixed_params"] == {LR: pytest.approx(5e-4)}


def test_a_stale_heartbeat_fails_the_trial_on_any_machine_with_its_reason(postgres, tmp_path):
    """A trial of another machine whose heartbeat stopped is failed, on any machine, with its stop
    reason (not its own fault: run again, not counted), which its row and its retry carry."""
    import time

    sp = StudyPaths(tmp_path / "study")
    url = postgres.create_database("stale_beat")
    rec = Recovery(sp, load_space(SPACES / "lr_prior.yaml", reward_terms=[]))
    study = optuna.create_study(study_name="s", direction="maximize",
                                storage=open_storage(sp, url, heartbeat_s=1, on_stale=rec))
    trial = asked(study, 1e-3, owned_by(1, **{records.HOST: "another-machine"}))
    study._storage.record_heartbeat(trial._trial_id)
    assert rec.run(study) == []  # fresh heartbeat
    time.sleep(3.5)  # 3 intervals without a beat
    assert rec.run(study) == [trial.number]
    why = "its orchestrator (on another-machine) stopped sending heartbeats"
    # Another machine reads it from the database afresh: failed, and with its reason, at once.
    failed = optuna.load_study(study_name="s", storage=url).trials[trial.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[records.STOP_REASON] == reasons.ERROR
    assert failed.user_attrs[records.ERROR_TAIL] == why
    assert failed.user_attrs[records.INTERRUPTED] is True
    assert not counts_toward_limit(failed)  # its retry counts, as a dead orchestrator's trial's
    [row] = rows(sp)
    assert (row["trial"], row["stop_reason"], row["error_tail"]) == (
        str(trial.number), reasons.ERROR, why)
    [retry] = retries(study, trial.number)
    assert retry.state == TrialState.WAITING
    assert retry.user_attrs[records.RETRY_REASON] == f"{reasons.ERROR}: {why}"
    assert retry.system_attrs["fixed_params"] == {LR: pytest.approx(1e-3)}
    assert rec.run(study) == []  # failed once, queued once


def test_a_trial_its_owner_ended_first_is_not_failed(shared):
    """An owner that ends its trial just before another orchestrator fails it wins: the trial
    keeps its own end and reason, and nothing of the failed attempt."""
    study, _, _ = shared
    trial = asked(study, 1e-3, owned_by(1, **{records.HOST: "another-machine"}))
    study._storage.set_trial_user_attr(trial._trial_id, records.STOP_REASON, reasons.COMPLETED)
    study._storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [0.5])
    attrs = {records.STOP_REASON: reasons.ERROR, records.INTERRUPTED: True}
    assert fail_trial(study._storage, trial._trial_id, attrs) is False
    ended = study._storage.get_trial(trial._trial_id)
    assert ended.state == TrialState.COMPLETE
    assert ended.user_attrs[records.STOP_REASON] == reasons.COMPLETED
    assert records.INTERRUPTED not in ended.user_attrs


def test_a_trial_failed_by_optunas_own_stale_check_is_recorded_and_queued(postgres, tmp_path):
    """Optuna's fail_stale_trials (study.optimize runs it) leaves no reason on the trial: the
    callback still writes its row and queues it, with the reason."""
    import time

    sp = StudyPaths(tmp_path / "study")
    url = postgres.create_database("optuna_stale")
    rec = Recovery(sp, load_space(SPACES / "lr_prior.yaml", reward_terms=[]))
    study = optuna.create_study(study_name="s", direction="maximize",
                                storage=open_storage(sp, url, heartbeat_s=1, on_stale=rec))
    trial = asked(study, 1e-3, owned_by(1, **{records.HOST: "another-machine"}))
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(3.5)
    optuna.storages.fail_stale_trials(study)
    assert rec.recovered == [trial.number]
    assert "stopped sending heartbeats" in rows(sp)[0]["error_tail"]
    [retry] = retries(study, trial.number)
    assert "stopped sending heartbeats" in retry.user_attrs[records.RETRY_REASON]


# ------------------------------------------------------------------ a lock holder that freezes
HOLDER = """
import sys, time
from pathlib import Path
import optuna
from automl.paths import StudyPaths
from automl.search.study import storage
from automl.search.study.storage import open_storage, study_lock
storage.LOCK_IDLE_S = float(sys.argv[3])  # the server's cut-off, shorter than the default's
sp = StudyPaths(Path(sys.argv[2]))
study = optuna.load_study(study_name="s", storage=open_storage(sp, sys.argv[1]))
with study_lock(study._storage, study._study_id, sp.root / "lock"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_frozen_lock_holder_delays_recovery_only_by_the_servers_idle_cut_off(postgres, tmp_path,
                                                                             sleeper):
    """Another orchestrator takes the study's lock and is stopped (SIGSTOP) while holding it: a
    recovery with nothing to recover does not wait for the lock at all, and one with a dead owner's
    trial gets the lock once the server ends the frozen holder's idle session: LOCK_IDLE_S (20 s by
    default; 5 s here, set in the holder's process as its lock's transaction reads it)."""
    import signal
    import time

    from automl.search.study import storage

    url = postgres.create_database("frozen_holder")
    sp = StudyPaths(tmp_path / "study")
    rec = Recovery(sp, load_space(SPACES / "lr_prior.yaml", reward_terms=[]))
    study = optuna.create_study(study_name="s", storage=open_storage(sp, url), direction="maximize")
    idle_s = 5.0
    assert storage.LOCK_IDLE_S <= 30.0  # a frozen machine delays the others by at most half a minute
    holder = subprocess.Popen([sys.executable, "-P", "-c", HOLDER, url, str(sp.root), str(idle_s)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        held_at = time.monotonic()  # its lock's transaction has been idle since just before
        holder.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        assert rec.run(study) == []  # nothing stale, nothing dead: no lock taken, no wait
        assert time.monotonic() - started < 2.0
        reused = owned_by(sleeper.pid, **{records.PROCESS_START: process_start(sleeper.pid) + 7})
        dead = asked(study, 1e-3, reused)
        assert rec.run(study) == [dead.number]
        waited = time.monotonic() - held_at
        assert idle_s - 1 <= waited <= idle_s + 10, waited  # once the frozen holder was cut off
        assert len(retries(study, dead.number)) == 1
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()


def test_a_lock_held_longer_than_the_wait_defers_recovery_instead_of_hanging(tmp_path, sleeper, capsys):
    from automl.search.study import storage

    sp = StudyPaths(tmp_path / "study")
    rec = Recovery(sp, load_space(SPACES / "lr_prior.yaml", reward_terms=[]))
    study = optuna.create_study(study_name="s", storage=open_storage(sp, None), direction="maximize")
    reused = owned_by(sleeper.pid, **{records.PROCESS_START: process_start(sleeper.pid) + 7})
    dead = asked(study, 1e-3, reused)
    with storage.file_lock(sp.root / recovery.LOCK_FILE):  # another process of this machine's
        held = subprocess.run(
            [sys.executable, "-P", "-c",
             "import sys; from pathlib import Path; from automl.search.study.storage import file_lock, "
             "LockTimeout\ntry:\n    with file_lock(Path(sys.argv[1]), wait_s=0.5): print('got')\n"
             "except LockTimeout as e: print('timeout', e)", str(sp.root / recovery.LOCK_FILE)],
            capture_output=True, text=True, check=True)
        assert held.stdout.startswith("timeout")
    assert rec.run(study) == [dead.number]  # free again: recovered
