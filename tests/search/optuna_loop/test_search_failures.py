"""Trials that go wrong (crash, NaN, hang, killed) and the limits that end a search (failure rate,
budget): each trial ends with exactly one stop reason, and no trial process outlives the search."""

from __future__ import annotations

import time

import pytest
import yaml
from optuna.trial import TrialState
from search_harness import (
    kill_leftovers,
    reason_of,
    rows,
    run_search,
    search_argv,
    skip_reports,
    standin_pids,
    trials,
    write_behaviour,
)

from automl import paths, reasons
from automl.paths import StudyPaths
from automl.search.study import records
from automl.search.trials import launcher

TRIAL_TIMEOUT_S = 8.0
"""Counted from a trial's launch until its first point: generous, so that the trials that are
not about timeouts never time out on a slow start on a loaded machine."""
HANG_GRACE_S = 1.5


@pytest.fixture(autouse=True)
def log_root(tmp_path, monkeypatch):
    root = tmp_path / "log"
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(root))
    skip_reports(monkeypatch)
    yield root
    kill_leftovers(str(root))


# ------------------------------------------------------------------------ one study, five fates
EPOCH_FATES = {4: "fine", 5: "crash", 6: "nan", 7: "hang", 8: "die"}
"""ppo.learning_epochs (tests/spaces/epochs.yaml) -> what the stand-in does with it."""


@pytest.fixture(scope="module")
def fates(tmp_path_factory):
    """Grid over the five epochs values, one trial each; failures allowed (rate 1.0).

    Returns (exit code, study paths, {fate: trial_final row}, {fate: Optuna trial}).
    """
    tmp = tmp_path_factory.mktemp("fates")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp / "log"))
        skip_reports(monkeypatch)
        # The hung trial ignores SIGTERM: SIGKILL follows after this grace (4 s by default).
        monkeypatch.setattr(launcher, "TERMINATE_GRACE_S", HANG_GRACE_S)
        behaviour = write_behaviour(tmp, "fates", seconds_per_point=0.03, rules=[
            {"when": {"ppo.learning_epochs": 5}, "crash_at": 30_000},
            {"when": {"ppo.learning_epochs": 6}, "nan_at": 30_000},
            {"when": {"ppo.learning_epochs": 7}, "hang_at": 30_000},
            {"when": {"ppo.learning_epochs": 8}, "die_at": 30_000}])
        # The budget (54 s) bounds the run should the hung trial never be killed.
        argv = search_argv(study="fates", space="epochs.yaml", behaviour=behaviour, hp_trials=5,
                           budget_hours=0.015, flags=["--search-method", "grid", "--pruner", "none",
                                  "--max-failure-rate", "1.0",
                                  "--trial-timeout", str(TRIAL_TIMEOUT_S)])
        try:
            code = run_search(argv)
            sp = StudyPaths.for_study("fates")
            by_fate = {EPOCH_FATES[int(r["learning_epochs"])]: r for r in rows(sp)}
            study_trials = {EPOCH_FATES[t.params["learning_epochs"]]: t for t in trials(sp)}
            yield code, sp, by_fate, study_trials
        finally:
            kill_leftovers(str(tmp / "log"))


def test_every_fate_ends_once_and_the_study_still_succeeds(fates):
    code, sp, by_fate, study_trials = fates
    assert code == 0
    assert sorted(by_fate) == sorted(EPOCH_FATES.values())
    assert len(rows(sp)) == 5
    assert by_fate["fine"]["stop_reason"] == reasons.COMPLETED
    assert study_trials["fine"].state == TrialState.COMPLETE
    for t in study_trials.values():
        assert t.state.is_finished()


def test_a_crash_is_an_error_with_the_stderr_tail(fates):
    _, _, by_fate, study_trials = fates
    row = by_fate["crash"]
    assert row["stop_reason"] == reasons.ERROR
    assert "RuntimeError: standin_worker: scripted crash at 30000 frames" in row["error_tail"]
    assert "exit code 1" in row["error_tail"]
    t = study_trials["crash"]
    assert t.state == TrialState.FAIL
    assert "scripted crash" in t.user_attrs[records.ERROR_TAIL]


def test_a_nan_score_is_an_error_never_a_result(fates):
    _, _, by_fate, study_trials = fates
    row = by_fate["nan"]
    assert row["stop_reason"] == reasons.ERROR
    assert "score is nan at 30000 frames" in row["error_tail"]
    t = study_trials["nan"]
    assert t.state == TrialState.FAIL
    assert t.value is None
    assert 30_000 not in t.intermediate_values


def test_a_hung_trial_times_out_and_is_killed_though_it_ignores_sigterm(fates):
    _, sp, by_fate, study_trials = fates
    row = by_fate["hang"]
    assert row["stop_reason"] == reasons.TIMEOUT
    assert "hanging at 30000 frames" in row["error_tail"]
    assert "exit code -9" in row["error_tail"]  # SIGTERM was ignored: SIGKILL ended it
    assert TRIAL_TIMEOUT_S + HANG_GRACE_S <= float(row["wall_s"]) < 60
    assert study_trials["hang"].state == TrialState.FAIL
    assert standin_pids(str(sp.root)) == []


def test_a_trial_killed_from_outside_is_an_error(fates):
    _, _, by_fate, study_trials = fates
    row = by_fate["die"]
    assert row["stop_reason"] == reasons.ERROR
    assert "exit code -9" in row["error_tail"]
    assert study_trials["die"].state == TrialState.FAIL


# ------------------------------------------------------------------------------ failure rate
def test_mostly_crashing_trials_stop_the_study_with_exit_code_1(tmp_path, capsys):
    # Every trial crashes at its second point, but the prior (lr = 3e-4 exactly), which completes.
    behaviour = write_behaviour(tmp_path, "crashy", seconds_per_point=0.02, crash_at=20_000,
                                rules=[{"when": {"ppo.learning_rate": 3e-4}, "crash_at": None}])
    argv = search_argv(study="crashy", space="lr_prior.yaml", behaviour=behaviour, hp_trials=30,
                       flags=["--search-method", "random", "--pruner", "none",
                              "--confirm-seeds", "1"])  # the prior completes once
    assert run_search(argv) == 1
    sp = StudyPaths.for_study("crashy")
    table = rows(sp)
    assert 4 <= len(table) < 30
    errors = [r for r in table if r["stop_reason"] == reasons.ERROR]
    assert len(errors) / len(table) > 0.5
    assert all("scripted crash at 20000 frames" in r["error_tail"] for r in errors)
    captured = capsys.readouterr()
    assert "search ended (failures)" in captured.out
    assert "trials failed (error or timeout), more than --max-failure-rate 0.5" in captured.err
    assert "error_tail" in captured.err
    assert all(t.state.is_finished() for t in trials(sp))


def test_a_study_whose_every_trial_failed_exits_1_however_few(tmp_path, capsys):
    behaviour = write_behaviour(tmp_path, "broken", seconds_per_point=0.02, exit_code=3)
    argv = search_argv(study="broken", space="two_by_two.yaml", behaviour=behaviour, hp_trials=2)
    assert run_search(argv) == 1
    table = rows(StudyPaths.for_study("broken"))
    assert [r["stop_reason"] for r in table] == [reasons.ERROR, reasons.ERROR]
    assert all("scripted exit 3" in r["error_tail"] for r in table)
    out = capsys.readouterr().out
    assert "search ended (failures)" in out
    assert out.strip().splitlines()[-1] == "automl: result: nothing chosen: no completed trial"


# ----------------------------------------------------------------------------------- budget
DEADLINE_SLACK_S = 2.5
"""How late after the deadline (plus the SIGKILL grace, for a trial deaf to SIGTERM) a trial may
end: one poll of the loop, the signal, the stand-in's exit, on a loaded machine."""


def search_clock(monkeypatch) -> list[float]:
    """Wall-clock times at which each Scheduler started its budget clock."""
    from automl.search.optuna_loop.scheduler import Scheduler

    starts: list[float] = []
    real = Scheduler.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        starts.append(time.time() - (time.monotonic() - self.start))

    monkeypatch.setattr(Scheduler, "__init__", init)
    return starts


def test_the_deadline_stops_running_trials_within_seconds_and_leaves_no_process(
        tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, "TERMINATE_GRACE_S", HANG_GRACE_S)
    starts = search_clock(monkeypatch)
    budget_hours = 0.0015  # 5.4 s; a trial needs 20 s
    # Trial 0 (the prior, lr = 3e-4) hangs at its first point, deaf to SIGTERM; the other
    # slot runs a trial that would take 20 s and stops when asked.
    behaviour = write_behaviour(tmp_path, "slow", seconds_per_point=2.0, rules=[
        {"when": {"ppo.learning_rate": 3e-4}, "hang_at": 10_000}])
    argv = search_argv(study="budget", space="lr_prior.yaml", behaviour=behaviour,
                       hp_trials=4, budget_hours=budget_hours,
                       flags=["--search-method", "random", "--seed", "0"])
    assert run_search(argv) == 0
    returned = time.time()
    [start] = starts
    deadline = start + budget_hours * 3600
    # The hung trial is killed HANG_GRACE_S after the deadline's SIGTERM; nothing waits longer.
    assert returned <= deadline + HANG_GRACE_S + DEADLINE_SLACK_S, returned - deadline
    sp = StudyPaths.for_study("budget")
    assert standin_pids(str(sp.root)) == []
    table = rows(sp)
    assert [r["stop_reason"] for r in table] == [reasons.BUDGET, reasons.BUDGET]
    assert len({r["trial"] for r in table}) == 2  # one row per trial
    by_trial = {int(r["trial"]): r for r in table}
    # The obedient trial ended (wrote its summary) within seconds of the deadline.
    ended = (sp.trial_dir(1) / "summary.json").stat().st_mtime
    assert deadline - 0.5 <= ended <= deadline + DEADLINE_SLACK_S, ended - deadline
    assert yaml.safe_load((sp.trial_dir(1) / "summary.json").read_text())["status"] == "stopped"
    # The deaf one was killed: no summary, and it ran until the deadline plus the grace.
    assert not (sp.trial_dir(0) / "summary.json").exists()
    assert float(by_trial[0]["wall_s"]) >= budget_hours * 3600 - 1.0 + HANG_GRACE_S
    study_trials = trials(sp)
    assert len(study_trials) == 2
    for t in study_trials:
        assert t.state == TrialState.FAIL  # a cut, not a verdict: samplers ignore it
        assert reason_of(t) == reasons.BUDGET
        assert t.user_attrs[records.INTERRUPTED] is True


def test_no_trial_starts_that_cannot_finish_before_the_deadline(tmp_path, monkeypatch, capsys):
    # One slot, 9 s. A trial takes 5 s plus its start-up: once one has run, the 4 s or less left
    # cannot hold another, so none starts and the search ends at once, not at the deadline.
    starts = search_clock(monkeypatch)
    budget_hours = 0.0025
    behaviour = write_behaviour(tmp_path, "five_s", seconds_per_point=0.5)
    argv = search_argv(study="no_room", space="lr_prior.yaml", behaviour=behaviour,
                       hp_trials=3, workers=1, budget_hours=budget_hours,
                       flags=["--search-method", "random", "--seed", "0", "--pruner", "none"])
    assert run_search(argv) == 0
    returned = time.time()
    sp = StudyPaths.for_study("no_room")
    [row] = rows(sp)
    assert row["stop_reason"] == reasons.COMPLETED
    assert len(trials(sp)) == 1, "a trial was started that could not finish"
    assert "search ended (budget)" in capsys.readouterr().out
    [start] = starts
    wall = float(row["wall_s"])
    assert returned - start < budget_hours * 3600, "the search waited for the deadline"
    assert returned - start < wall + DEADLINE_SLACK_S
