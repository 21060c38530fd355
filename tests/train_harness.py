"""What the trainer's tests share: `python train_one.py ARGS` run as a user (or the search) runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from automl import paths

REPO = paths.repo_root()


def train_one(args: list[str], *, log_root: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python train_one.py ARGS` from the repository root, its outputs under `log_root`."""
    env = {**os.environ, paths.LOG_ROOT_ENV: str(log_root)}
    return subprocess.run([sys.executable, "train_one.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
