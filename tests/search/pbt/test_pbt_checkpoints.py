"""Segment states through the study's artifact store: which store a machine uses, a parent's state
from this machine's folder or the store, and the retention rule."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import optuna
import pytest
from search_harness import SPACES

from automl.errors import ConfigError
from automl.paths import StudyPaths
from automl.search.pbt import checkpoints
from automl.search.pbt.checkpoints import CheckpointMissing, Checkpoints, kept, record_store, store_url
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
    assert store_url(None, study, paths) == str(paths.root / "artifacts")  # the default
    assert checkpoints.STORE_ATTR not in study.user_attrs  # recorded once it opened
    record_store(study, str(paths.root / "artifacts"))
    assert study.user_attrs[checkpoints.STORE_ATTR] == str(paths.root / "artifacts")
    (paths.root / "artifacts").mkdir(parents=True)
    other = StudyPaths(tmp_path / "b" / "automl" / "s")
    assert store_url(None, study, other) == str(paths.root / "artifacts")  # reachable here
    assert store_url(str(tmp_path / "mounted"), study, other) == str(tmp_path / "mounted")
    record_store(study, str(tmp_path / "mounted"))
    assert study.user_attrs[checkpoints.STORE_ATTR] == str(paths.root / "artifacts")  # unchanged


def test_a_recorded_folder_this_machine_lacks_exits_2_naming_the_flag(tmp_path):
    study = optuna.create_study()
    study.set_user_attr(checkpoints.STORE_ATTR, str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="--artifact-store") as err:
        store_url(None, study, StudyPaths(tmp_path / "automl" / "s"))
    assert "this machine does not have" in str(err.value)


@pytest.mark.parametrize("url", ["s3://bucket/prefix", "s3://"])
def test_an_s3_store_is_a_whole_bucket(url):
    with pytest.raises(ConfigError, match="a whole bucket"):
        checkpoints.open_store(url)


def test_an_s3_store_without_boto3_exits_2_naming_the_extra():
    # A process where boto3 cannot be imported (this one has it: the tests' own S3 store).
    done = subprocess.run([sys.executable, "-P", "-c", "import sys; sys.modules['boto3'] = None\n"
                           "from automl.search.pbt.checkpoints import open_store\n"
                           "from automl.errors import ConfigError\n"
                           "try:\n    open_store('s3://bucket')\n"
                           "except ConfigError as err:\n    print(err)"],
                          capture_output=True, text=True, check=True)
    assert "needs boto3" in done.stdout and "uv sync --extra s3" in done.stdout, done


def test_an_s3_bucket_that_cannot_be_used_exits_2_before_any_segment(s3_bucket, monkeypatch):
    with pytest.raises(ConfigError, match="cannot be written to and removed") as err:
        checkpoints.open_store(s3_bucket.url + "-typo")  # no such bucket on the server
    assert err.value.key == "--artifact-store" and "AWS_ENDPOINT_URL" in err.value.fix
    checkpoints.open_store(s3_bucket.url)  # a usable bucket: its check leaves nothing in it
    assert s3_bucket.keys() == set()
    monkeypatch.setattr(checkpoints, "S3_CHECK_TIMEOUT_S", 0.5)
    for listening in (False, True):  # refused at once; or accepted, then never answered
        with socket.socket() as endpoint:
            endpoint.bind(("127.0.0.1", 0))
            if listening:
                endpoint.listen()
            monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{endpoint.getsockname()[1]}")
            started = time.monotonic()
            with pytest.raises(ConfigError, match="cannot be written to and removed"):
                checkpoints.open_store(s3_bucket.url)
            assert time.monotonic() - started < 10  # boto3's own: 60 s a try, several tries


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path) -> tuple[str, Callable[[], set[str]]]:
    """The store's URL, and what it holds: the artifact ids stored (a folder's file names, a
    bucket's keys)."""
    if request.param == "folder":
        return str(tmp_path / "store"), lambda: {p.name for p in (tmp_path / "store").rglob("*")
                                                  if p.is_file()}
    bucket = request.getfixturevalue("s3_bucket")
    return bucket.url, bucket.keys


# ------------------------------------------------------------------------- a parent's state
def test_a_parent_state_comes_from_this_folder_else_from_the_store(tmp_path, store):
    study = optuna.create_study()
    paths = StudyPaths(tmp_path / "automl" / "s")
    url, holds = store
    store = Checkpoints(study, paths, url)
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
    assert parent.attr(checkpoints.STATE_ARTIFACT) in holds()
    store.store.remove(parent.attr(checkpoints.STATE_ARTIFACT))
    assert parent.attr(checkpoints.STATE_ARTIFACT) not in holds()
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


def test_retention_removes_the_dropped_states_from_the_store_and_this_folder(tmp_path, store):
    study = optuna.create_study()
    paths = StudyPaths(tmp_path / "automl" / "s")
    url, holds = store
    store = Checkpoints(study, paths, url)
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
    stored = holds()
    assert ids[0] not in stored and ids[1] not in stored and {ids[2], ids[3]} <= stored
    assert not paths.trial_run(0).state.exists() and paths.trial_run(3).state.exists()
    assert math.isfinite(population.segments[0].score)
