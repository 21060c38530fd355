"""What the search loop is given: the space, the worker, the slots and every limit, decided by the
plan before the first trial starts (a module of its own, so that the loop's parts can name it
without importing the loop)."""

from __future__ import annotations

from dataclasses import dataclass

from automl.search.optuna_loop.sizing import PlanSizing
from automl.search.space import SearchSpace
from automl.search.study.recovery import Recovery
from automl.search.trials.forkserver import ForkServer
from automl.search.trials.launcher import Slot


@dataclass
class SearchSettings:
    """Everything the loop needs, checked by the CLI before anything is launched."""

    space: SearchSpace
    worker: list[str]
    """Command prefix of a trial (python -P -m automl.run.train_one); overrides are appended."""
    user_overrides: list[str]
    """Hydra overrides from the command line: they win over the space's fixed values."""
    hp_trials: int
    budget_s: float
    frames: int
    eval_frequency: int
    slots: list[Slot]
    plateau_patience: int
    plateau_min_delta: float
    drop: float
    grace_frames: int
    trial_timeout: float
    max_failure_rate: float
    target_score: float | None
    confirm_seeds: int = 1
    """--confirm-seeds: a trial that beats the standing best is trained on this many seeds in all
    (study/confirm.py); 1: never."""
    forkserver: ForkServer | None = None
    """Trials are forked from it (fast start) when set; else each is a cold `python` start."""
    recovery: Recovery | None = None
    """Fails the trials of dead orchestrators and queues them again (None: never looked for)."""
    sizing: PlanSizing | None = None
    """Settles a new study's pruning plan on the budget at the first measured rate (None: the plan
    stands, as on --resume)."""
