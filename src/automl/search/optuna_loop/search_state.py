"""automl_state.yaml, rewritten every few seconds: the search's phase, its running trials, the trials
ended by stop reason, the best so far, the budget and the expected time left."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from automl.search.optuna_loop.search_policy import Budget
from automl.search.study.trial_record import Tally
from automl.search.trials.watch import Running


def best_basis(seeds: int) -> str:
    """What the search's best score is: one run, or a mean over confirmed seeds."""
    return "one run, not confirmed" if seeds <= 1 else f"search mean over {seeds} seeds"


def search_state(study: str, phase: str, *, running: Mapping[int, Running], tally: Tally,
                 trained: int, hp_trials: int, budget: Budget, slots: int) -> dict[str, Any]:
    """The content of automl_state.yaml (reports.write_state writes it), in the order written;
    `trained`: the trials that count toward --hp-trials so far."""
    now = time.monotonic()
    elapsed = now - budget.start
    estimate = budget.expected_duration(running.values())
    eta = None
    if estimate is not None:
        remaining = max(0, hp_trials - trained)
        eta = min(budget.time_left(), estimate * math.ceil(remaining / slots))
    best = None
    if tally.best is not None:
        best = {"trial": tally.best[1], "score": tally.best[0], "seeds": tally.best_seeds,
                "basis": best_basis(tally.best_seeds), "params": tally.best[2]}
    return {
        "phase": phase,
        "study": study,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "running": [{"trial": n, "frames": r.frames,
                     "score": r.score if math.isfinite(r.score) else None,
                     "elapsed_s": round(time.monotonic() - r.proc.started, 1)}
                    for n, r in sorted(running.items())],
        "finished": tally.total(),
        "trained": trained,
        "hp_trials": hp_trials,
        "best": best,
        "budget": {"total_s": round(budget.total_s, 1), "used_s": round(elapsed, 1),
                   "left_s": round(budget.time_left(), 1)},
        "estimated_time_left_s": None if eta is None else round(eta, 1),
    }
