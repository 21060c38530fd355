"""What the scripted-loop tests share (pruning, confirmation): a study's frames, evaluation step and
grace frames, the pruner the CLI builds for it, and a stand-in for a trial process."""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna

from automl.search.optuna_loop.pruning import make_pruner, plan_pruning
from automl.search.trials.launcher import Slot

FRAMES = 100_000
EVAL = 10_000
GRACE = 20_000
JITTER = 256
"""A real run reports at multiples of its rollout size, a little past each evaluation step."""
TRIALS = 24
SLOTS = 3
RUNGS = {
    # 24 trials: one asynchronous successive-halving bracket for both, halving from the grace
    # frames (20k, 40k, 80k; 160k > frames), keeping the last floor(log2(24 / 4)) = 2 rungs.
    "hyperband": {2 * GRACE, 4 * GRACE},
    "successive_halving": {2 * GRACE, 4 * GRACE},
    # The median rule applies at every step once the warm-up (the grace frames) is over.
    "median": set(range(GRACE, FRAMES + 1, EVAL)),
    "none": set(),
}


def pruner_for(name: str, *, grace: int = GRACE) -> optuna.pruners.BasePruner:
    """The pruner the CLI builds for this study (its plan for TRIALS trials)."""
    return make_pruner(plan_pruning(name, trials=TRIALS, frames=FRAMES, eval_frequency=EVAL,
                                    grace=grace, episode_frames=None))


@dataclass
class ScriptedProcess:
    """Stands for a trial process: the loop only asks it to terminate here."""

    slot: Slot = field(default_factory=lambda: Slot(index=0, threads=1))
    terminated: bool = False
    started: float = 0.0

    def terminate(self) -> None:
        self.terminated = True
