"""Two machines that `--resume` one PostgreSQL study at the same instant: each interrupted trial
(stopped by the budget, its orchestrator dead, or its heartbeat stale) is failed at most once, has
one trial_final.csv row, and its configuration is queued exactly once, by one of the two."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from search_harness import SPACES, rows

from automl import reasons
from automl.paths import StudyPaths
from automl.search.plan import recover_trials
from automl.search.space import load_space
from automl.search.study import records
from automl.search.study.recovery import Recovery, owner
from automl.search.study.storage import open_storage

LR = "learning_rate"
ROUNDS = 12
"""Studies raced in one test: the race window is a few milliseconds, so one round may miss it."""
EACH = 3
"""Trials of each kind (budget, dead orchestrator, stale heartbeat) in a round."""


def add_interrupted(study: optuna.Study, lr: float) -> None:
    """A search trial stopped by the budget (a session that ran out of time)."""
    study.add_trial(create_trial(
        state=TrialState.PRUNED, params={LR: lr}, distributions={LR: FloatDistribution(
            1e-6, 1e-1, log=True)}, intermediate_values={},
        user_attrs={records.PHASE: records.PHASE_SEARCH, records.STOP_REASON: reasons.BUDGET,
                    records.INTERRUPTED: True}))


def add_running(study: optuna.Study, lr: float, who: dict) -> int:
    """A RUNNING search trial owned by `who`; returns its trial id."""
    study.enqueue_trial({LR: lr})
    trial = study.ask()
    trial.set_user_attr(records.OWNER, who)
    trial.suggest_float(LR, 1e-6, 1e-1, log=True)
    return trial._trial_id


def make_study(url: str, name: str) -> set[int]:
    """A study with EACH trials of every kind to recover; returns their numbers."""
    storage = open_storage(StudyPaths(Path(name)), url, heartbeat_s=1)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for i in range(EACH):
        add_interrupted(study, 1e-4 * (i + 1))
        # This test process with no trial of its own: an orchestrator that ended (dead).
        add_running(study, 2e-4 * (i + 1), owner())
        stale = add_running(study, 3e-4 * (i + 1), {records.HOST: "another-machine", records.PID: 1})
        study._storage.record_heartbeat(stale)
    backend = study._storage._backend
    with backend.engine.begin() as conn:  # their last beat, an hour ago
        conn.exec_driver_sql("UPDATE trial_heartbeats SET heartbeat = now() - interval '1 hour'")
    backend.engine.dispose()
    return {t.number for t in study.get_trials(deepcopy=False)}


def resume_at_once(url: str, name: str, folders: list[Path]) -> list[list[int]]:
    """Both machines' recover step, started at the same instant; what each says it queued."""
    space = load_space(SPACES / "lr_prior.yaml", reward_terms=[])
    studies, recoveries = [], []
    for folder in folders:  # each its own connections and study folder: a machine of its own
        sp = StudyPaths(folder / name)
        recovery = Recovery(sp, space)
        storage = open_storage(sp, url, heartbeat_s=1, on_stale=recovery)
        studies.append(optuna.load_study(study_name=name, storage=storage))
        recoveries.append(recovery)
    barrier = threading.Barrier(len(folders))
    queued: list[list[int]] = [[] for _ in folders]
    errors: list[BaseException] = []

    def resume(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            queued[i] = recover_trials(studies[i], recoveries[i])
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    threads = [threading.Thread(target=resume, args=(i,)) for i in range(len(folders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for study in studies:
        study._storage._backend.engine.dispose()
    assert not errors, errors
    return queued


def test_two_machines_resuming_at_once_queue_each_retry_once(postgres, tmp_path):
    url = postgres.create_database("resume_race")
    folders = [tmp_path / "m0", tmp_path / "m1"]
    for round_ in range(ROUNDS):
        name = f"race{round_}"
        interrupted = make_study(url, name)
        queued = resume_at_once(url, name, folders)
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        retried = Counter(t.user_attrs.get(records.RETRY_OF) for t in trials
                          if records.RETRY_OF in t.user_attrs)
        assert retried == dict.fromkeys(interrupted, 1), f"round {round_}: retries {retried}"
        # Each machine reports the retries it queued itself: together, each trial once.
        assert sorted(queued[0] + queued[1]) == sorted(interrupted), f"round {round_}: {queued}"
        failed = [t.number for t in trials if t.number in interrupted and
                  t.state == TrialState.FAIL]
        rows_of = Counter(int(r["trial"]) for folder in folders
                          if StudyPaths(folder / name).trial_final_csv.exists()
                          for r in rows(StudyPaths(folder / name)))
        assert rows_of == dict.fromkeys(failed, 1), f"round {round_}: rows {rows_of}"
        assert all(t.state in (TrialState.FAIL, TrialState.PRUNED, TrialState.WAITING)
                   for t in trials)


def test_a_resume_alone_queues_each_retry_once_with_its_reason(postgres, tmp_path):
    """The lock taken by one machine alone (and again, inside, by the recovery it runs): every
    trial recovered, each retry saying why the trial it re-runs ended."""
    url = postgres.create_database("resume_alone")
    interrupted = make_study(url, "alone")
    [queued] = resume_at_once(url, "alone", [tmp_path / "m0"])
    assert sorted(queued) == sorted(interrupted)
    trials = optuna.load_study(study_name="alone", storage=url).get_trials(deepcopy=False)
    why = {t.user_attrs[records.RETRY_OF]: t.user_attrs[records.RETRY_REASON] for t in trials
           if records.RETRY_OF in t.user_attrs}
    assert sorted(why) == sorted(interrupted)
    assert sorted(Counter(why.values()).items()) == [
        ("budget", EACH), ("error: its orchestrator (on another-machine) stopped sending heartbeats",
                           EACH), ("error: the orchestrator running it died", EACH)]
