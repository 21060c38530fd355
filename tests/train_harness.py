"""What the trainer's tests share: `python train_one.py ARGS` run as a user (or the search) runs it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from automl import paths

REPO = paths.repo_root()


def train_one(args: list[str], *, log_root: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python train_one.py ARGS` from the repository root, its outputs under `log_root`."""
    env = {**os.environ, paths.LOG_ROOT_ENV: str(log_root)}
    return subprocess.run([sys.executable, "train_one.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def train_one_here(args: list[str], *, log_root: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str, str]:
    """train_one's own start in this process, for a run that must stop at its checks: its exit
    code, stdout and stderr. A fresh interpreter per case would import torch (and Isaac Lab) each
    time; a test of Hydra's own start or of a real run goes through `train_one` above."""
    import torch

    import automl.run.train_one

    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(log_root))
    monkeypatch.setattr(sys, "argv", ["train_one.py", *args])
    # skrl's log handler holds the stderr of the test that imported skrl, closed since: the
    # process's own stderr for this one (skrl's log lines are not what a test reads).
    for handler in logging.getLogger("skrl").handlers:
        if type(handler) is logging.StreamHandler:  # not pytest's own log capture
            monkeypatch.setattr(handler, "stream", sys.__stderr__)
    threads = torch.get_num_threads()  # train.threads may set this process's
    try:
        with pytest.raises(SystemExit) as exited:  # any other exception fails the test
            automl.run.train_one.run()
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return exited.value.code, out, err
