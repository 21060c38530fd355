"""summary.json of a run: what the orchestrator and people read when a run ends."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from automl import paths, reasons

PACKAGES = ("automl", "torch", "skrl", "gymnasium", "optuna", "hydra-core", "omegaconf", "mujoco",
            "isaaclab", "warp-lang", "newton")


@dataclass
class RunSummary:
    """Keys of summary.json: status, score, frames, wall_s, seed, git_sha, metrics."""

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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """A summary read back: a key that is missing, null or of the wrong type takes its empty
        value (status "", score None, frames 0, ...), as in a file of an older version."""
        return cls(
            status=_str(data.get("status")), score=_float(data.get("score")),
            frames=_int(data.get("frames")), wall_s=_float(data.get("wall_s")) or 0.0,
            seed=_int(data.get("seed")), git_sha=_str(data.get("git_sha")) or None,
            metrics=_dict(data.get("metrics")), packages=_dict(data.get("packages")),
            message=_str(data.get("message")), started_at=_float(data.get("started_at")),
            first_step_at=_float(data.get("first_step_at")))

    @property
    def completed(self) -> bool:
        """The run trained all its frames (status `completed`)."""
        return self.status == reasons.STATUS_COMPLETED


def git_sha() -> str | None:
    """The repository's HEAD commit, None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.repo_root(), text=True,
                             capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    """Installed versions of PACKAGES (those not installed are left out)."""
    from importlib import metadata  # here, not at import: 20-40 ms of every process that imports this

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


def _read_summary(path: Path) -> dict[str, Any] | None:
    """The summary as a plain dict, or None when missing or half-written (see load_summary)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_summary(path: Path) -> RunSummary | None:
    """The summary as a RunSummary, or None when missing or half-written."""
    data = _read_summary(path)
    return None if data is None else RunSummary.from_dict(data)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _float(value: Any) -> float | None:
    """A JSON number as a float; None for anything else."""
    return float(value) if isinstance(value, (int, float)) else None


def _int(value: Any) -> int:
    """A JSON number as an int; 0 for anything else (null, NaN, text)."""
    number = _float(value)
    return int(number) if number is not None and math.isfinite(number) else 0


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}
