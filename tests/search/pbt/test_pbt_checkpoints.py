"""Segment states through the study's artifact store: which store a machine uses, a parent's state
from this machine's folder or the store, and the retention rule."""

from __future__ import annotations

import math

import optuna
import pytest
from search_harness import SPACES

from automl.errors import ConfigError
from automl.paths import StudyPaths
from automl.search.pbt import checkpoints
from automl.search.pbt.checkpoints import CheckpointMissing, Checkpoints, kept, store_url
from automl.search.pbt.plan import PbtPlan
from automl.search.pbt.population import NO_PARENT, Population, Segment
from automl.search.space import load_space
from automl.search.study import records

SPACE = load_space(SPACES / "pbt.yaml", reward_terms=["torques"])


def plan(population: int = 2) -> PbtPlan:
    return PbtPlan(population=population, frames=100_000, interval=20_000, fraction=0.25,
                   factors=(1.1, 1.5), resample_probability=0.25, init="start", floor=0.0, seed=0,
                   barrier=False)


def segment(number: int, member: int, generation: int, parent: int = NO_PARENT, *,
            score: float | None = 0.5, **attrs: object) -> Segment:
    values = {"learning_rate": 3e-4, "entropy_loss_scale": 0.005,
              "policy_hidden_layer_sizes": [64, 64], "torques": -1e-5}
    user = {records.PHASE: records.PHASE_PBT, records.MEMBER: member, records.GENERATION: generation,
            records.PARENT: parent, **attrs}
    if score is None:
        state, value = optuna.trial.TrialState.RUNNING, None
    else:
        state, value = optuna.trial.TrialState.COMPLETE, score
        user[records.STOP_REASON] = "completed"
    trial = optuna.trial.create_trial(state=state, value=value, params=SPACE.to_optuna(values),
                                      distributions=SPACE.distributions(), user_attrs=user)
    trial.number = number
    return Segment.of(trial, SPACE)


def view(made: PbtPlan, *segments: Segment) -> Population:
    return Population.from_segments(made, list(segments))


# --------------------------------------------------------------------------------- the store
def test_the_first_orchestrator_records_its_store_and_a_joining_one_uses_it(tmp_path):
    study = optuna.create_study()
    paths = StudyPaths(tmp_path / "a" / "automl" / "s")
    assert store_url(None, study, paths) == str(paths.root / "artifacts")  # the default, recorded
    assert study.user_attrs[checkpoints.STORE_ATTR] == str(paths.root / "artifacts")
    (paths.root / "artifacts").mkdir(parents=True)
    other = StudyPaths(tmp_path / "b" / "automl" / "s")
    assert store_url(None, study, other) == str(paths.root / "artifacts")  # reachable here
    assert store_url(str(tmp_path / "mounted"), study, other) == str(tmp_path / "mounted")
    assert study.user_attrs[checkpoints.STORE_ATTR] == str(paths.root / "artifacts")  # unchanged


def test_a_recorded_folder_this_machine_lacks_exits_2_naming_the_flag(tmp_path):
    study = optuna.create_study()
    study.set_user_attr(checkpoints.STORE_ATTR, str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="--artifact-store") as err:
        store_url(None, study, StudyPaths(tmp_path / "automl" / "s"))
    assert "this machine does not have" in str(err.value)


@pytest.mark.parametrize("url, words", [("s3://bucket/prefix", "a whole bucket"),
                                        ("s3://", "a whole bucket"),
                                        ("s3://bucket", "boto3")])
def test_an_s3_store_is_a_whole_bucket_and_needs_boto3(url, words):
    try:
        import boto3  # noqa: F401
        if words == "boto3":
            pytest.skip("boto3 is installed")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match=words):
        checkpoints.open_store(url)


# ------------------------------------------------------------------------- a parent's state
def test_a_parent_state_comes_from_this_folder_else_from_the_store(tmp_path):
    study = optuna.create_study()
    paths = StudyPaths(tmp_path / "automl" / "s")
    store = Checkpoints(study, paths, str(tmp_path / "store"))
    trial = study.ask()
    ran = paths.trial_run(trial.number)
    ran.root.mkdir(parents=True)
    ran.state.write_bytes(b"state of 0")
    ran.model.write_bytes(b"policy of 0")
    store.upload(trial, ran)
    study.tell(trial, 0.5)
    parent = Segment.of(study.trials[0], SPACE)
    child = paths.trial_run(1)
    assert store.state_of(parent, child) == ran.state  # this machine ran it
    ran.state.unlink()
    ran.model.unlink()
    fetched = store.state_of(parent, child)  # another machine's folder: from the store
    assert fetched == child.root / checkpoints.PARENT_STATE and fetched.read_bytes() == b"state of 0"
    assert store.model_of(parent) == ran.model and ran.model.read_bytes() == b"policy of 0"
    store.store.remove(parent.attr(checkpoints.STATE_ARTIFACT))
    fetched.unlink()
    with pytest.raises(CheckpointMissing, match="not in the store"):
        store.state_of(parent, child)
    no_record = Segment.of(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE,
                                                     value=1.0), SPACE)
    with pytest.raises(CheckpointMissing, match="stored no state file"):
        store.state_of(no_record, child)


# ------------------------------------------------------------------------------- retention
def test_retention_keeps_live_lineages_and_what_a_decision_may_copy_and_drops_dead_branches():
    # Member 1 copied member 0 at generation 2 (segment 4's parent is 2): member 1's own
    # generations 0 and 1 (segments 1, 3) are a dead branch once both members are past them.
    segments = [segment(0, 0, 0), segment(1, 1, 0), segment(2, 0, 1, 0), segment(3, 1, 1, 1),
                segment(4, 1, 2, 2), segment(5, 0, 2, 2), segment(6, 0, 3, 5),
                segment(7, 1, 3, 4), segment(8, 0, 4, 6, score=None), segment(9, 1, 4, 7, score=None)]
    population = view(plan(), *segments)
    assert kept(population) == {0, 2, 4, 5, 6, 7}  # lineages 0-2-5-6 and 0-2-4-7; 1, 3 dropped
    finished = view(plan(), *segments[:8])  # say the last generation is 3, and 7 won
    winner = segments[7]
    assert kept(finished, winner=winner) == {0, 2, 4, 7, 5, 6}
    three = view(plan(3), *segments[:8], segment(10, 2, 0), segment(11, 2, 1, 10),
                 segment(12, 2, 2, 11), segment(13, 2, 3, 12))
    assert kept(three, winner=winner) == {0, 2, 4, 7, 5, 6, 12, 13}  # member 2's last two


def test_retention_removes_the_dropped_states_from_the_store_and_this_folder(tmp_path):
    study = optuna.create_study()
    paths = StudyPaths(tmp_path / "automl" / "s")
    store = Checkpoints(study, paths, str(tmp_path / "store"))
    ids = {}
    for number in range(4):
        trial = study.ask()
        run = paths.trial_run(number)
        run.root.mkdir(parents=True)
        run.state.write_bytes(b"s")
        store.upload(trial, run)
        ids[number] = trial.user_attrs[checkpoints.STATE_ARTIFACT]
        study.tell(trial, 0.5)
    attrs = {n: study.trials[n].user_attrs for n in range(4)}
    population = view(plan(1), *(segment(n, 0, n, n - 1 if n else NO_PARENT, **attrs[n])
                                 for n in range(4)))
    assert store.retain(population, winner=population.segments[-1]) == 0  # one lineage: all kept
    population = view(plan(1), *(segment(n, 0, n, NO_PARENT, **attrs[n]) for n in range(4)))
    assert store.retain(population, winner=population.segments[-1]) == 2  # 0 and 1 dropped
    stored = {p.name for p in (tmp_path / "store").rglob("*") if p.is_file()}
    assert ids[0] not in stored and ids[1] not in stored and {ids[2], ids[3]} <= stored
    assert not paths.trial_run(0).state.exists() and paths.trial_run(3).state.exists()
    assert math.isfinite(population.segments[0].score)
