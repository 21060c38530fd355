"""A search stopped from outside (kill -9 of the orchestrator, Ctrl-C) leaves no trial process
behind, and `--resume` continues it with nothing lost: interrupted configurations run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import optuna
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
    start_orchestrator,
    trials,
    wait_for,
    write_behaviour,
)

from automl import paths, reasons
from automl.paths import StudyPaths
from automl.search.optuna_loop.search_policy import Budget
from automl.search.study import records

LR_SCORE = {"param": "ppo.learning_rate", "target": 3e-4, "log": True, "width": 0.5}
"""Score 1 at the prior's learning rate (3e-4, trial 0), less elsewhere."""
SLOW_POINT_S = 0.25
"""2.5 s per trial in the first session: time to catch a trial running."""
START_TIMEOUT_S = 90
"""automl.py's own start-up (Hydra, Optuna) plus a trial, on a loaded machine."""


def searched(sp: StudyPaths) -> list:
    return [t for t in trials(sp) if t.user_attrs.get(records.PHASE) == "search"]


def counted(sp: StudyPaths) -> int:
    """Trials that count toward --hp-trials."""
    return sum(1 for t in searched(sp) if not t.user_attrs.get(records.INTERRUPTED)
               and reason_of(t) != reasons.CONSTRAINT)


def resume(tmp_path, monkeypatch, name: str, *, hp_trials: int, workers: int) -> int:
    """Continue the study in this process, with fast trials and the study's own space copy."""
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    fast = write_behaviour(tmp_path, "fast", seconds_per_point=0.02, score=LR_SCORE)
    return run_search(search_argv(study=name, space=None, behaviour=fast, hp_trials=hp_trials,
                                  workers=workers, flags=["--resume", "--pruner", "none"]))


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A search (1 slot, 3 trials) killed with SIGKILL while trial 1 runs, then resumed twice
    (the second resume finds nothing to do, and must not retry trial 1 again).

    Returns (study paths, trial_final.csv bytes before the kill, exit codes of the resumes).
    """
    tmp = tmp_path_factory.mktemp("killed")
    log = tmp / "log"
    sp = StudyPaths(log / "automl" / "killed")
    # Trial 0 (the prior, lr = 3e-4) takes 1 s; the others 30 s: an orphan would outlive the
    # wait below by far.
    slow = write_behaviour(tmp, "slow", seconds_per_point=3.0, score=LR_SCORE, rules=[
        {"when": {"ppo.learning_rate": 3e-4}, "seconds_per_point": 0.1}])
    proc = start_orchestrator(search_argv(
        study="killed", space="lr_prior.yaml", behaviour=slow, hp_trials=3, workers=1,
        flags=["--pruner", "none", "--search-method", "random", "--seed", "5"]), log, tmp)
    try:
        # The stand-in writes config.yaml once its signal handlers are in place.
        wait_for(lambda: sp.trial_final_csv.exists() and (sp.trial_dir(1) / "config.yaml").exists()
                 and standin_pids(str(sp.trial_dir(1))),
                 timeout=START_TIMEOUT_S, what="trial 0 to end and trial 1 to run")
        before = sp.trial_final_csv.read_bytes()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)  # reaped: a zombie would still look alive to --resume
        # PR_SET_PDEATHSIG: the trial hears of its orchestrator's death and stops.
        wait_for(lambda: not standin_pids(str(sp.root)), timeout=30,
                 what="the killed orchestrator's trial to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_leftovers(str(sp.root))
    with pytest.MonkeyPatch.context() as monkeypatch:
        code = resume(tmp, monkeypatch, "killed", hp_trials=3, workers=1)
        again = resume(tmp, monkeypatch, "killed", hp_trials=3, workers=1)
    return sp, before, (code, again)


def test_kill_9_leaves_the_trial_then_resume_keeps_earlier_trials(killed):
    sp, before, codes = killed
    assert codes == (0, 0)
    assert before.count(b"\n") >= 2  # header and trial 0
    after = sp.trial_final_csv.read_bytes()
    assert after.startswith(before), "rows written before the kill were changed"
    first = rows(sp)[0]
    assert first["trial"] == "0" and first["stop_reason"] == reasons.COMPLETED


def test_kill_9_state_yaml_counts_and_best_span_both_sessions(killed):
    sp, _, _ = killed
    state = yaml.safe_load(sp.state.read_text())
    ended = [t for t in trials(sp) if t.state.is_finished()]
    assert sum(state["finished"].values()) == len(ended)
    assert state["finished"][reasons.ERROR] == 1  # the trial the kill interrupted
    assert state["best"]["trial"] == 0  # the prior, at the target rate, from the first session
    assert state["best"]["score"] == pytest.approx(1.0)
    assert state["trained"] == 3


def test_kill_9_interrupted_trial_is_failed_and_its_configuration_run_again(killed):
    sp, _, _ = killed
    by_number = {t.number: t for t in trials(sp)}
    dead = by_number[1]
    assert dead.state == TrialState.FAIL
    assert reason_of(dead) == reasons.ERROR
    assert dead.user_attrs[records.INTERRUPTED] is True
    assert "orchestrator" in dead.user_attrs[records.ERROR_TAIL]
    # It was told to stop (SIGTERM from PR_SET_PDEATHSIG), and wrote its outputs.
    assert json.loads((sp.trial_dir(1) / "summary.json").read_text())["status"] == "stopped"
    [retry] = [t for t in by_number.values() if t.user_attrs.get(records.RETRY_OF) == 1]
    assert retry.params == dead.params
    assert reason_of(retry) == reasons.COMPLETED
    assert counted(sp) == 3
    assert all(t.state.is_finished() for t in by_number.values())
    # The second resume found trial 1 retried already: no second retry, queued or run.
    meta = yaml.safe_load(sp.meta.read_text())
    assert [s["retried_trials"] for s in meta["sessions"]] == [[], [1], []]
    assert len(by_number) == 4


def test_kill_9_interrupted_trial_gets_its_trial_final_row(killed):
    sp, _, _ = killed
    by_trial = {r["trial"]: r for r in rows(sp)}
    assert by_trial["1"]["stop_reason"] == reasons.ERROR


def test_ctrl_c_stops_trials_with_budget_exits_and_resumes(tmp_path, monkeypatch):
    log = tmp_path / "log"
    sp = StudyPaths(log / "automl" / "ctrl_c")
    slow = write_behaviour(tmp_path, "slow", seconds_per_point=SLOW_POINT_S)
    proc = start_orchestrator(search_argv(
        study="ctrl_c", space="lr_prior.yaml", behaviour=slow, hp_trials=3, workers=2,
        flags=["--pruner", "none", "--search-method", "random", "--seed", "5"]), log, tmp_path)
    try:
        wait_for(lambda: all((sp.trial_dir(n) / "config.yaml").exists() for n in (0, 1)),
                 timeout=START_TIMEOUT_S, what="two trials to run")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        kill_leftovers(str(sp.root))
    out = (tmp_path / "stdout.txt").read_text()
    assert code == 1, out + (tmp_path / "stderr.txt").read_text()
    err = (tmp_path / "stderr.txt").read_text()
    assert f"continue with: uv run automl.py --mode search --resume --study-name {sp.name}" in err
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    assert standin_pids(str(sp.root)) == []
    stopped = rows(sp)
    assert sorted(r["trial"] for r in stopped) == ["0", "1"]
    assert {r["stop_reason"] for r in stopped} == {reasons.BUDGET}
    for t in trials(sp):
        assert t.state == TrialState.FAIL  # a cut, not a verdict: samplers ignore it
        assert t.user_attrs[records.INTERRUPTED] is True
        summary = json.loads((sp.trial_dir(t.number) / "summary.json").read_text())
        assert summary["status"] == "stopped"  # asked to stop (SIGTERM), not killed

    assert resume(tmp_path, monkeypatch, "ctrl_c", hp_trials=3, workers=2) == 0
    by_number = {t.number: t for t in trials(sp)}
    for number in (0, 1):
        [retry] = [t for t in by_number.values() if t.user_attrs.get(records.RETRY_OF) == number]
        assert retry.params == by_number[number].params
        assert reason_of(retry) == reasons.COMPLETED
    assert counted(sp) == 3
    assert [r["trial"] for r in rows(sp)][:2] == [r["trial"] for r in stopped]


def test_resume_beside_a_live_orchestrator_leaves_its_running_trial_alone(tmp_path, monkeypatch):
    """A second orchestrator joins a study while the first still runs trial 0: that trial is
    neither failed nor retried (only a dead orchestrator's trials are). The joiner runs its own
    trial, then waits for the live one to end (had its orchestrator died, it would run it again)."""
    log = tmp_path / "log"
    sp = StudyPaths(log / "automl" / "shared")
    slow = write_behaviour(tmp_path, "slow", seconds_per_point=0.8)  # 8 s a trial
    first = start_orchestrator(search_argv(
        study="shared", space="lr_prior.yaml", behaviour=slow, hp_trials=2, workers=1,
        flags=["--pruner", "none", "--search-method", "random", "--seed", "5"]), log, tmp_path)
    try:
        wait_for(lambda: (sp.trial_dir(0) / "config.yaml").exists(), timeout=START_TIMEOUT_S,
                 what="trial 0 to run")
        assert resume(tmp_path, monkeypatch, "shared", hp_trials=2, workers=1) == 0
        by_number = {t.number: t for t in trials(sp)}
        live = by_number[0]
        # Ended by its own orchestrator, as completed: never failed, interrupted or retried.
        assert reason_of(live) == reasons.COMPLETED and live.state == TrialState.COMPLETE
        assert not live.user_attrs.get(records.INTERRUPTED)
        assert not [t for t in by_number.values() if t.user_attrs.get(records.RETRY_OF) == 0]
        assert reason_of(by_number[1]) == reasons.COMPLETED  # the joiner ran its own trial
        meta = yaml.safe_load(sp.meta.read_text())
        assert meta["sessions"][-1]["retried_trials"] == []
        assert first.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        kill_leftovers(str(sp.root))


def test_a_trial_cut_soon_after_its_start_does_not_slow_the_next_sessions_plan():
    """A resumed study plans at the frames/s of the trials earlier sessions ended, but not of one
    the budget or Ctrl-C cut: a trial cut a minute in (start-up, 500 frames) would say a trial of
    100,000 frames takes 3 hours, and a session of 0.1 h would start none."""
    study = optuna.create_study(direction="maximize")
    for frames, wall_s, cut in ((100_000, 10.0, False), (500, 60.0, True), (400, 50.0, True)):
        attrs = {records.FRAMES: frames, records.WALL_S: wall_s,
                 **({records.INTERRUPTED: True} if cut else {})}
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.FAIL if cut else TrialState.COMPLETE, value=None if cut else 1.0,
            user_attrs=attrs))
    budget = Budget(360.0, frames=100_000)
    budget.seen_before(study)
    assert budget.expected_duration([]) == pytest.approx(10.0)
    assert budget.allows_start([])


def test_a_resumed_study_keeps_its_trial_count_and_starts_no_trial_it_cannot_finish(
        tmp_path, monkeypatch, capsys):
    """A session whose budget cannot hold a trial at the earlier sessions' frames/s starts none:
    it stops on the budget at once and prints the command that continues it; a session
    continued without --hp-trials trains to the study's own count (2), not the default 8."""
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    sp = StudyPaths(tmp_path / "log" / "automl" / "counted")
    slow = write_behaviour(tmp_path, "slow", seconds_per_point=0.3, score=LR_SCORE)  # ~3 s each
    first = search_argv(study="counted", space="lr_prior.yaml", behaviour=slow, hp_trials=1,
                        workers=1, flags=["--pruner", "none"])
    assert run_search(first) == 0
    assert counted(sp) == 1
    capsys.readouterr()
    flags = ["--resume", "--pruner", "none"]
    argv = search_argv(study="counted", space=None, behaviour=slow, hp_trials=2, workers=1,
                       budget_hours=1 / 3600, flags=flags)  # one second
    assert run_search(argv) == 0
    assert len(trials(sp)) == 1  # nothing started
    err = capsys.readouterr().err
    assert "search stopped (budget); continue with: uv run automl.py --mode search --resume" in err
    assert "--hp-trials 2" in err
    fast = write_behaviour(tmp_path, "fast", seconds_per_point=0.02, score=LR_SCORE)
    argv = search_argv(study="counted", space=None, behaviour=fast, hp_trials=0, workers=1,
                       flags=flags)
    del argv[argv.index("--hp-trials"):argv.index("--hp-trials") + 2]
    assert run_search(argv) == 0
    assert counted(sp) == 2
