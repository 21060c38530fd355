"""Several automl.py processes on one PostgreSQL study (a real server, started by the tests), each
with its own study folder as on separate machines: no trial runs twice, --hp-trials bounds the
study, and a killed orchestrator's trials are failed by heartbeat and run again by another."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from pg_server import PASSWORD
from search_harness import (
    kill_leftovers,
    reason_of,
    rows,
    search_argv,
    standin_pids,
    start_orchestrator,
    wait_for,
    write_behaviour,
)

from automl import reasons
from automl.paths import StudyPaths
from automl.search.optuna_loop.search_policy import counts_toward_limit
from automl.search.study import records
from automl.search.study.recovery import HOST_ENV
from automl.search.study.storage import open_storage

START_TIMEOUT_S = 120
"""automl.py's own start-up on a loaded 2-core machine, plus a trial."""


def machine(tmp_path, name: str) -> tuple:
    """A log folder and a folder for stdout/stderr: one "machine"."""
    folder = tmp_path / name
    folder.mkdir()
    return folder / "log", folder


def study_names(url: str) -> list[str]:
    """The studies in the database (opened as automl opens it: racing a new database's tables)."""
    return optuna.get_all_study_names(open_storage(StudyPaths(Path("unused")), url))


def study_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def finish(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    codes = []
    try:
        for proc in procs:
            codes.append(proc.wait(timeout=timeout))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return codes


def test_three_orchestrators_share_one_study_without_running_a_trial_twice(postgres, tmp_path):
    url = postgres.create_database("three")
    behaviour = write_behaviour(tmp_path, "steady", seconds_per_point=0.4, noise=0.05)
    argv = search_argv(study="three", space="lr_prior.yaml", behaviour=behaviour, hp_trials=7,
                       workers=1, budget_hours=0.2, flags=["--storage", url, "--pruner", "none"])
    machines = [machine(tmp_path, f"m{i}") for i in range(3)]
    procs = [start_orchestrator(argv, *machines[0])]
    try:
        # The first creates the study; the others join it once it exists.
        wait_for(lambda: "three" in study_names(url), timeout=START_TIMEOUT_S,
                 what="the first orchestrator to create the study")
        procs += [start_orchestrator([*argv, "--resume"], *m) for m in machines[1:]]
        codes = finish(procs, timeout=300)
    finally:
        for log, _ in machines:
            kill_leftovers(str(log))
    errors = [(m[1] / "stderr.txt").read_text() for m in machines]
    assert codes == [0, 0, 0], errors
    trials = study_trials(url, "three")
    search = [t for t in trials if t.user_attrs.get(records.PHASE) == "search"]
    assert all(t.state.is_finished() for t in trials)
    assert sum(counts_toward_limit(t) for t in search) == 7  # --hp-trials for the whole study
    # Every trial ran in exactly one place: one row and one run folder, in its runner's folder.
    by_folder = {m[0]: {int(r["trial"]) for r in rows(StudyPaths(m[0] / "automl" / "three"))}
                 if (m[0] / "automl" / "three" / "trial_final.csv").exists() else set()
                 for m in machines}
    counted = Counter(n for numbers in by_folder.values() for n in numbers)
    assert sorted(counted) == sorted(t.number for t in search)
    assert set(counted.values()) == {1}
    pids = {proc.pid: log for proc, (log, _) in zip(procs, machines, strict=True)}
    for t in search:
        log = pids[t.user_attrs[records.OWNER][records.PID]]
        assert t.number in by_folder[log]
        assert (StudyPaths(log / "automl" / "three").trial_dir(t.number) / "config.yaml").exists()
    assert sum(1 for numbers in by_folder.values() if numbers) >= 2, by_folder
    for log, _ in machines:
        assert PASSWORD not in (log / "automl" / "three" / "meta.yaml").read_text()


def test_a_killed_orchestrators_trials_are_failed_by_heartbeat_and_run_again(postgres, tmp_path,
                                                                            monkeypatch):
    url = postgres.create_database("killed")
    behaviour = write_behaviour(tmp_path, "slow", seconds_per_point=0.3)
    argv = search_argv(study="killed", space="lr_prior.yaml", behaviour=behaviour, hp_trials=4,
                       workers=1, budget_hours=0.2,
                       flags=["--storage", url, "--pruner", "none", "--heartbeat-interval", "1"])
    (log_a, out_a), (log_b, out_b) = machine(tmp_path, "a"), machine(tmp_path, "b")
    sp_a, sp_b = (StudyPaths(log / "automl" / "killed") for log in (log_a, log_b))
    # Two machines: only the heartbeat can tell one that the other died.
    monkeypatch.setenv(HOST_ENV, "machine-a")
    a = start_orchestrator(argv, log_a, out_a)
    monkeypatch.setenv(HOST_ENV, "machine-b")
    b = None
    try:
        wait_for(lambda: "killed" in study_names(url), timeout=START_TIMEOUT_S,
                 what="the first orchestrator to create the study")
        b = start_orchestrator([*argv, "--resume"], log_b, out_b)
        wait_for(lambda: standin_pids(str(log_a)) and standin_pids(str(log_b)),
                 timeout=START_TIMEOUT_S, what="both orchestrators to run a trial")
        running_a = [t for t in study_trials(url, "killed") if t.state == TrialState.RUNNING
                     and t.user_attrs[records.OWNER][records.PID] == a.pid]
        # kill -9 of the machine: the orchestrator and its trials, at once.
        os.kill(a.pid, signal.SIGKILL)
        for pid in standin_pids(str(log_a)):
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        a.wait(timeout=10)
        dead = {t.number for t in running_a}
        assert dead, "the killed orchestrator ran no trial"
        wait_for(lambda: all(t.state == TrialState.FAIL for t in study_trials(url, "killed")
                             if t.number in dead), timeout=60, what="the dead trials to be failed")
        recovered_s = time.monotonic() - killed_at
        [code] = finish([b], timeout=300)
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
        kill_leftovers(str(tmp_path))
    assert code == 0, (out_b / "stderr.txt").read_text()
    # Stale 3 heartbeat intervals (3 s) after the last beat, noticed within one more interval.
    assert 2.0 <= recovered_s < 3 + 1 + 5, f"recovered after {recovered_s:.1f} s"
    trials = study_trials(url, "killed")
    assert [t.number for t in trials if not t.state.is_finished()] == []
    why = "its orchestrator (on machine-a) stopped sending heartbeats"
    for number in dead:
        # Failed with a stop reason of its own: not its fault, so run again and not counted.
        assert reason_of(trials[number]) == reasons.ERROR
        assert trials[number].user_attrs[records.ERROR_TAIL] == why
        assert trials[number].user_attrs[records.INTERRUPTED] is True
        [retry] = [t for t in trials if t.user_attrs.get(records.RETRY_OF) == number]
        assert retry.params == trials[number].params
        assert retry.user_attrs[records.RETRY_REASON] == f"{reasons.ERROR}: {why}"
        assert reason_of(retry) == reasons.COMPLETED
        assert retry.user_attrs[records.OWNER][records.PID] == b.pid
    search = [t for t in trials if t.user_attrs.get(records.PHASE) == "search"]
    assert sum(counts_toward_limit(t) for t in search) == 4
    # B wrote the dead trial's row (every ended trial has one), once; A's folder has none for it.
    rows_b = Counter(int(r["trial"]) for r in rows(sp_b))
    assert all(rows_b[n] == 1 for n in dead)
    assert all(r["stop_reason"] == reasons.ERROR and r["error_tail"] == why
               for r in rows(sp_b) if int(r["trial"]) in dead)
    rows_a = {int(r["trial"]) for r in rows(sp_a)} if sp_a.trial_final_csv.exists() else set()
    assert not rows_a & dead
    assert not rows_a & set(rows_b)


@pytest.fixture
def failing_state(monkeypatch):
    """Scheduler.write_state raises on its first call in the search: trials are running then."""
    from automl.search.optuna_loop.scheduler import Scheduler

    original = Scheduler.write_state

    def write_state(self, phase: str) -> None:
        if phase == "search" and self.running:
            raise RuntimeError("scripted failure in the search loop")
        original(self, phase)

    monkeypatch.setattr(Scheduler, "write_state", write_state)


def test_an_exception_in_the_loop_stops_and_records_every_trial_it_asked(
        postgres, tmp_path, monkeypatch, failing_state):
    from search_harness import run_search, skip_reports

    from automl import paths

    url = postgres.create_database("crash")
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    slow = write_behaviour(tmp_path, "slow", seconds_per_point=1.0)
    argv = search_argv(study="crash", space="lr_prior.yaml", behaviour=slow, hp_trials=4,
                       workers=2, flags=["--storage", url, "--pruner", "none"])
    with pytest.raises(RuntimeError, match="scripted failure"):
        run_search(argv)
    sp = StudyPaths(tmp_path / "log" / "automl" / "crash")
    trials = study_trials(url, "crash")
    assert len(trials) >= 2
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == []
    for t in trials:
        assert t.state == TrialState.FAIL and reason_of(t) == reasons.ERROR
        assert t.user_attrs[records.INTERRUPTED] is True  # not the trial's fault: run again
        assert "scripted failure" in t.user_attrs[records.ERROR_TAIL]
    assert sorted(int(r["trial"]) for r in rows(sp)) == sorted(t.number for t in trials)
    assert standin_pids(str(sp.root)) == []


def test_a_trial_asked_once_the_study_is_full_is_given_up_and_its_queued_config_handed_back(
        postgres, tmp_path, monkeypatch):
    """Two orchestrators ask at the same moment for the last trial: the later one gives it up."""
    import threading

    from search_harness import run_search, skip_reports

    from automl import paths
    from automl.search.optuna_loop.scheduler import Scheduler

    url = postgres.create_database("full")
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    study = optuna.create_study(study_name="full", storage=url, direction="maximize")
    elsewhere = []
    for _ in range(2):  # the study's 2 trials, running on another machine
        trial = study.ask()
        trial.set_user_attr(records.OWNER, {records.HOST: "another-machine"})
        trial.suggest_float("learning_rate", 1e-6, 1e-1, log=True)
        elsewhere.append(trial)
    study.enqueue_trial({"learning_rate": 1e-3}, user_attrs={records.RETRY_OF: 0})
    calls = []
    real = Scheduler.trained_count

    def stale_count(self) -> int:  # the moment of the race: the count read before they asked
        calls.append(1)
        return 0 if len(calls) == 1 else real(self)

    monkeypatch.setattr(Scheduler, "trained_count", stale_count)

    def end_elsewhere() -> None:
        time.sleep(4)
        for trial in elsewhere:
            trial.set_user_attr(records.STOP_REASON, reasons.COMPLETED)
            study.tell(trial, 0.5)

    ender = threading.Thread(target=end_elsewhere)
    ender.start()
    fast = write_behaviour(tmp_path, "fast", seconds_per_point=0.01)
    try:
        code = run_search(search_argv(study="full", space="lr_prior.yaml", behaviour=fast,
                                      hp_trials=2, workers=1,
                                      flags=["--storage", url, "--resume", "--pruner", "none"]))
    finally:
        ender.join()
    assert code == 0
    trials = study_trials(url, "full")
    [unused] = [t for t in trials if t.user_attrs.get(records.PHASE) == records.PHASE_UNUSED]
    assert unused.state == TrialState.FAIL and unused.user_attrs[records.RETRY_OF] == 0
    [queued] = [t for t in trials if t.state == TrialState.WAITING]
    assert queued.system_attrs["fixed_params"] == {"learning_rate": pytest.approx(1e-3)}
    assert queued.user_attrs[records.RETRY_OF] == 0
    assert sum(counts_toward_limit(t) for t in trials) == 2
    assert not StudyPaths(tmp_path / "log" / "automl" / "full").trial_final_csv.exists()
