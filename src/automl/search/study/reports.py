"""Files a person (or a script) reads while a study runs: trial_final.csv, threshold_hits.csv,
automl_state.yaml and meta.yaml. Every write is atomic (temp file, then rename)."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from automl.paths import StudyPaths, atomic_write_text
from automl.search.study import records
from automl.search.study.storage import hide_password, without_password
from automl.summary import git_sha, package_versions


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def _append_csv(path: Path, header: Sequence[str], row: Mapping[str, Any]) -> None:
    """Append one row (and the header to a new file) with a single O_APPEND write: readers never
    see half a row, several orchestrators sharing a study folder never overwrite each other's rows,
    and the cost does not grow with the file."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), extrasaction="ignore")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if os.fstat(fd).st_size == 0:
            writer.writeheader()
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
        os.write(fd, buffer.getvalue().encode())
    finally:
        os.close(fd)


def append_trial_final(study_paths: StudyPaths, row: Mapping[str, Any],
                       param_names: Sequence[str]) -> None:
    """One row the moment a trial ends."""
    _append_csv(study_paths.trial_final_csv,
                [*records.TRIAL_FINAL_COLUMNS, *param_names, "error_tail"], row)


def append_threshold_hit(study_paths: StudyPaths, row: Mapping[str, Any]) -> None:
    """First time a trial's score crosses --target-score."""
    _append_csv(study_paths.threshold_hits_csv, ["trial", "frames", "score", "elapsed_s", "time"],
                row)


def write_state(study_paths: StudyPaths, state: Mapping[str, Any]) -> None:
    """automl_state.yaml: what the search is doing now."""
    atomic_write_text(study_paths.state, yaml.safe_dump(dict(state), sort_keys=False))


STORAGE_KEY = "storage"
"""meta.yaml's storage URL, kept without its password."""


def write_meta(study_paths: StudyPaths, *, argv: Sequence[str], extra: Mapping[str, Any]) -> None:
    """meta.yaml: how the study was started (appended to on --resume, never overwritten).

    No password of a storage URL is written: the command line shows it as ***, the URL without it."""
    previous: list[Any] = []
    if study_paths.meta.exists():
        loaded = yaml.safe_load(study_paths.meta.read_text()) or {}
        previous = loaded.get("sessions", [])
    extra = {k: without_password(v) if k == STORAGE_KEY else v for k, v in extra.items()}
    session = {
        "command_line": hide_password(" ".join(["automl.py", *argv])),
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "git_sha": git_sha(),
        "packages": package_versions(),
        **extra,
    }
    meta = {"study_name": study_paths.name, STORAGE_KEY: extra.get(STORAGE_KEY),
            "sessions": [*previous, session]}
    atomic_write_text(study_paths.meta, yaml.safe_dump(meta, sort_keys=False))


def recorded(study_paths: StudyPaths, key: str) -> Any:
    """`key`'s value in meta.yaml's latest session that has it; None without one."""
    try:
        meta = yaml.safe_load(study_paths.meta.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    sessions = meta.get("sessions") if isinstance(meta, dict) else None
    return next((s[key] for s in reversed(sessions or []) if isinstance(s, dict) and key in s), None)


def update_meta(study_paths: StudyPaths, **fields: Any) -> None:
    """Set `fields` in meta.yaml's latest session (the one this process started)."""
    if not study_paths.meta.exists():
        return
    meta = yaml.safe_load(study_paths.meta.read_text()) or {}
    sessions = meta.get("sessions") or []
    if not sessions:
        return
    sessions[-1].update(fields)
    atomic_write_text(study_paths.meta, yaml.safe_dump(meta, sort_keys=False))
