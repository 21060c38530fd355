"""summary.json of a run: what the orchestrator and people read when a run ends."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from automl import paths

PACKAGES = ("automl", "torch", "skrl", "gymnasium", "optuna", "hydra-core", "omegaconf")


@dataclass
class RunSummary:
    """Keys of summary.json (DESIGN.md): status, score, frames, wall_s, seed, git_sha, metrics."""

    status: str
    """completed / diverged / error / stopped (automl.reasons.STATUS_*)."""
    score: float | None
    """Final score (conf/scoring), null when no evaluation point was reached."""
    frames: int
    """Frames trained."""
    wall_s: float
    """Seconds from start to end."""
    seed: int
    git_sha: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    """Task metrics of the last evaluation point, plus episode_reward_mean and frames_per_second."""
    packages: dict[str, str] = field(default_factory=dict)
    message: str = ""
    """Why the run ended, when it did not complete."""
    started_at: float | None = None
    """Unix time the trainer started (building the env and agent); wall_s counts from here."""
    first_step_at: float | None = None
    """Unix time of the first environment step (trial start latency = this - launch time)."""


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.repo_root(), text=True,
                             capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def write_summary(summary: RunSummary, path: Path) -> None:
    """Atomically, with NaN/inf written as null (JSON has no NaN)."""
    paths.atomic_write_text(path, json.dumps(_finite_or_none(asdict(summary)), indent=2) + "\n")


def read_summary(path: Path) -> dict[str, Any] | None:
    """The summary as a dict, or None when missing or half-written."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
