"""Segment checkpoints through the study's artifact store (Optuna's artifacts), so that a segment
continues its parent's state on whichever machine takes it.

When a segment completes, its orchestrator uploads its state.pt and model.pt to the store
(`optuna.artifacts.upload_artifact`, before the trial is told, so no decision can name a parent
whose state is not stored) and records the artifact ids on the trial (`pbt_state_artifact`,
`pbt_model_artifact`). A segment with a parent starts from the parent's state.pt in this machine's
study folder where it is there (the machine ran the parent, or the folder is shared), else from the
store, downloaded into the segment's own run folder. The winner's model.pt reaches the reports the
same way.

The store: `--artifact-store PATH` (a folder: `FileSystemArtifactStore`) or `s3://BUCKET` (an
S3-compatible bucket: `Boto3ArtifactStore`, with boto3's own settings: AWS_ENDPOINT_URL,
credentials), default the study folder's `artifacts/`. The first orchestrator records it in the
study (`pbt_artifact_store`); one that joins uses it unless given its own (the same store mounted
elsewhere). A recorded folder this machine does not have exits 2 naming the flag.

Retention (`Checkpoints.retain`, `kept`): a state is kept while anything may still need it: what a
decision still to come may copy, each member's last two segments with a result, every parent of a
queued, running or interrupted segment, and every ancestor of a member's latest segment (the
lineages still alive, among them the eventual winner's); once the population is finished, the
winner's lineage and each member's last two. The others are removed from the store and from this
machine's folder (its model.pt stays there).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from automl.errors import ConfigError
from automl.paths import RunPaths, StudyPaths
from automl.search.pbt.population import NO_PARENT, Population, Segment

STORE_ATTR = "pbt_artifact_store"
"""The study's artifact store, as its first orchestrator was given it (a folder or s3://BUCKET)."""
STATE_ARTIFACT = "pbt_state_artifact"
MODEL_ARTIFACT = "pbt_model_artifact"
PARENT_STATE = "parent_state.pt"
"""Where a segment's parent state lands in its run folder when it comes from the store."""
KEEP_LAST = 2
"""Segments with a result per member whose states are always kept."""
S3_CHECK_TIMEOUT_S = 10.0
"""Seconds the S3 store's check waits for a connection or an answer (two tries) before it says the
bucket cannot be used."""


class CheckpointMissing(Exception):
    """A parent's state is neither in this machine's study folder nor in the store."""


def store_url(flag: str | None, study: optuna.Study, paths: StudyPaths) -> str:
    """The store this orchestrator uses: the flag, else the study's recorded one, else the study
    folder's artifacts/ (`record_store` records it, once opened, for the orchestrators that join)."""
    recorded = study.user_attrs.get(STORE_ATTR)
    url = flag or recorded or str(paths.root / "artifacts")
    if not url.startswith("s3://") and flag is None and recorded is not None and not Path(url).is_dir():
        raise ConfigError(file="command line", key="--artifact-store", value=url,
                          rule="the study's segment states are stored in this folder (its first "
                               "orchestrator's), which this machine does not have",
                          fix="give --artifact-store with the folder (or s3://BUCKET) where this "
                              "machine reaches the same store")
    return url


def record_store(study: optuna.Study, url: str) -> None:
    """The study's store, recorded by its first orchestrator once the store opened."""
    if study.user_attrs.get(STORE_ATTR) is None:
        study.set_user_attr(STORE_ATTR, url)


def open_store(url: str) -> Any:
    """The artifact store of `url`: s3://BUCKET or a folder (made if missing)."""
    if url.startswith("s3://"):
        bucket = url.removeprefix("s3://").strip("/")
        if not bucket or "/" in bucket:
            raise ConfigError(file="command line", key="--artifact-store", value=url,
                              rule="an S3 store is a whole bucket", fix="give s3://BUCKET")
        return _s3_store(url, bucket)
    folder = Path(url).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(file="command line", key="--artifact-store", value=url,
                          rule=f"the folder cannot be made ({err.strerror})",
                          fix="give a folder this machine can write") from err
    return FileSystemArtifactStore(folder)


def _s3_store(url: str, bucket: str) -> Any:
    """Optuna's Boto3ArtifactStore on `bucket`, checked usable now (exit 2 naming the flag, not a
    failed store at the end of each segment). The check writes and removes a small object, as the
    store does (credentials limited to objects, without the s3:ListBucket a HeadBucket needs, serve
    the store and pass it), through a client of its own that gives up on an endpoint that does not
    answer in seconds; the store's client keeps boto3's settings (uploads of states take long)."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
        from optuna.artifacts import Boto3ArtifactStore
    except ImportError as err:
        raise ConfigError(file="command line", key="--artifact-store", value=url,
                          rule=f"an S3 store needs boto3 ({err})",
                          fix="install it: uv sync --extra s3") from err
    probe = f"automl-probe-{os.getpid()}-{time.time_ns()}"
    try:
        checker = boto3.client("s3", config=Config(
            connect_timeout=S3_CHECK_TIMEOUT_S, read_timeout=S3_CHECK_TIMEOUT_S,
            retries={"max_attempts": 2, "mode": "standard"}))
        checker.put_object(Bucket=bucket, Key=probe, Body=b"")
        checker.delete_object(Bucket=bucket, Key=probe)
        return Boto3ArtifactStore(bucket, client=boto3.client("s3"))
    except (BotoCoreError, ClientError, ValueError) as err:  # ValueError: a malformed endpoint URL
        raise ConfigError(file="command line", key="--artifact-store", value=url,
                          rule=f"an object cannot be written to and removed from the bucket "
                               f"({type(err).__name__}: {err})",
                          fix="create the bucket, or give boto3 the endpoint and credentials that "
                              "reach it (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                              "AWS_SECRET_ACCESS_KEY)") from err


class Checkpoints:
    """A study's segment states and policies in its artifact store."""

    def __init__(self, study: optuna.Study, paths: StudyPaths, url: str) -> None:
        self.study, self.paths, self.url = study, paths, url
        self.store = open_store(url)
        self.removed: set[int] = set()
        """Segments whose stored files this process removed (not looked at again)."""

    def upload(self, trial: optuna.Trial, run: RunPaths) -> None:
        """Store a completed segment's state.pt and model.pt, their ids on the trial (raises
        OSError and the store's errors)."""
        for attr, path in ((STATE_ARTIFACT, run.state), (MODEL_ARTIFACT, run.model)):
            if path.exists():
                artifact = upload_artifact(artifact_store=self.store, file_path=str(path),
                                           study_or_trial=trial)
                trial.set_user_attr(attr, artifact)

    def state_of(self, parent: Segment, run: RunPaths) -> Path:
        """The parent's state.pt for a segment that runs in `run`: this machine's copy, else the
        store's, downloaded into `run` (CheckpointMissing where neither has it)."""
        return self._local_or_fetched(parent, STATE_ARTIFACT, self.paths.trial_run(parent.number).state,
                                      run.root / PARENT_STATE)

    def model_of(self, segment: Segment) -> Path | None:
        """The segment's model.pt on this machine (downloaded into its run folder if need be);
        None where neither this folder nor the store has it."""
        local = self.paths.trial_run(segment.number).model
        try:
            return self._local_or_fetched(segment, MODEL_ARTIFACT, local, local)
        except CheckpointMissing:
            return None

    def _local_or_fetched(self, segment: Segment, attr: str, local: Path, dest: Path) -> Path:
        if local.exists():
            return local
        artifact = segment.attr(attr)
        if artifact is None:
            raise CheckpointMissing(f"segment {segment.number} stored no {attr.split('_')[1]} file "
                                    f"(its run folder {local.parent} is not on this machine)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        try:
            download_artifact(artifact_store=self.store, artifact_id=str(artifact),
                              file_path=str(partial))
        except (ArtifactNotFound, OSError) as err:
            raise CheckpointMissing(f"segment {segment.number}'s {attr.split('_')[1]} file "
                                    f"(artifact {artifact}) is not in the store {self.url}: {err}") from err
        os.replace(partial, dest)
        return dest

    # ----------------------------------------------------------------------------- retention
    def retain(self, population: Population, *, winner: Segment | None = None) -> int:
        """Remove the stored files of the segments no one can need (module docstring); `winner`:
        the population is finished, keep its lineage. Returns how many segments were cleared."""
        keep = kept(population, winner=winner)
        cleared = 0
        for s in population.segments:
            if s.number in keep or s.number in self.removed or not s.has_result:
                continue
            for attr in (STATE_ARTIFACT, MODEL_ARTIFACT):
                artifact = s.attr(attr)
                if artifact is not None:
                    try:
                        self.store.remove(str(artifact))
                    except (ArtifactNotFound, OSError):
                        pass  # removed by another orchestrator
            self.paths.trial_run(s.number).state.unlink(missing_ok=True)
            self.removed.add(s.number)
            cleared += 1
        return cleared


def kept(population: Population, *, winner: Segment | None = None) -> set[int]:
    """Trial numbers of the segments whose states the retention rule keeps: what a decision still
    to come may copy (each member's results from the slowest member's generation on, and its
    latest one before it: `Population.pool`), each member's last two, the parents of what is
    queued, running or to run again; during the run every live lineage, once finished the
    winner's."""
    by_number = {s.number: s for s in population.segments}
    members = range(population.plan.population)
    reached = [max((g for g, ms in population.queued.items() if m in ms), default=0) for m in members]
    slowest = min(reached, default=0)
    keep: set[int] = set()
    for member in members:
        own = sorted((s for s in population.segments if s.member == member and s.has_result),
                     key=lambda s: (s.generation, s.number))
        before = [s for s in own if s.generation < slowest]
        keep.update(s.number for s in [*own[-KEEP_LAST:], *before[-1:]])
        keep.update(s.number for s in own if s.generation >= slowest)
        if winner is None and own:
            keep.update(_lineage(own[-1], by_number))
    live_or_again = [s for s in population.segments if s.live] + population.orphans()
    keep.update(s.parent for s in live_or_again if s.parent != NO_PARENT)
    if winner is not None:
        keep.update(_lineage(winner, by_number))
    return keep


def _lineage(segment: Segment, by_number: dict[int, Segment]) -> Iterable[int]:
    """The segment and its ancestors (parent, parent's parent, ...)."""
    seen = segment
    while True:
        yield seen.number
        if seen.parent == NO_PARENT or seen.parent not in by_number:
            return
        seen = by_number[seen.parent]
