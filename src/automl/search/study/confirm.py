"""A new best is confirmed on more seeds inside the search, and configurations are ranked by their
mean over seeds (racing, as SMAC's intensification does).

One training run's score varies with its seed about as much as between good configurations
(Pendulum: ~300 between two seeds of one configuration, docs/benchmarks.md), so a search's best
single run is mostly its luckiest one. After every trial that ends, the best configuration not yet
tried on more seeds whose score beats the mean of every configuration confirmed or being confirmed
is queued again on `--confirm-seeds` - 1 more seeds (CONFIRM_SEED_BASE + 1, + 2, ...: every
configuration meets the same seeds); the pruner never stops those runs. The search's best is the
confirmed configuration (every seed completed) with the highest mean; then come the configurations
on fewer seeds, and last those a confirmation refuted (it failed).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.errors import ConfigError
from automl.requests import SearchOptions
from automl.search.study import records

CONFIRM_SEED_BASE = 500
"""Confirmation k trains with train.seed = this + k: apart from the search's seed (conf: 42) and
validation's fresh seeds (1000 on)."""


@dataclass(frozen=True)
class Configuration:
    """One configuration of the search: its first trial and the scores of its completed seeds."""

    trial: FrozenTrial
    """The trial that sampled it (its number names the configuration)."""
    scores: tuple[float, ...]
    """Completed seeds' scores, first trial first."""
    tried: bool
    """Confirmations of it were queued (whatever became of them)."""
    pending: bool
    """A confirmation of it is queued or running."""
    confirmed: bool
    """Every seed asked for completed."""

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def mean(self) -> float:
        """Mean score over its completed seeds."""
        return statistics.fmean(self.scores)

    @property
    def refuted(self) -> bool:
        """Tried, and a confirmation ended without a score (error, timeout, pruned)."""
        return self.tried and not self.pending and not self.confirmed


def group_of(trial: FrozenTrial | optuna.Trial) -> int:
    """The number of the trial whose configuration `trial` trains (its own when it sampled it)."""
    confirms = trial.user_attrs.get(records.CONFIRMS)
    return int(confirms) if isinstance(confirms, int) else trial.number


def configurations(trials: Iterable[FrozenTrial], seeds: int) -> list[Configuration]:
    """The search's configurations whose first trial completed, best first: confirmed ones by mean,
    then the others by mean, refuted ones last (`seeds`: --confirm-seeds; with 1, single runs by
    their score)."""
    search = [t for t in trials if records.in_search(t)]
    done = {t.number: t for t in search if t.state == TrialState.COMPLETE and t.value is not None}
    later: dict[int, list[FrozenTrial]] = {}
    for t in search:
        if group_of(t) != t.number:
            later.setdefault(group_of(t), []).append(t)
    found = []
    for number, first in done.items():
        if group_of(first) != number:
            continue  # a confirmation: its score belongs to the configuration it confirms
        extra = later.get(number, [])
        scores = (float(first.value),  # type: ignore[arg-type]
                  *(float(t.value) for t in extra if t.number in done))  # type: ignore[arg-type]
        found.append(Configuration(
            trial=first, scores=scores, tried=bool(extra),
            pending=any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in extra),
            confirmed=len(scores) >= seeds))
    return sorted(found, key=lambda c: (not c.confirmed, c.refuted, -c.mean, c.number))


def ranked(study: optuna.Study, seeds: int) -> list[Configuration]:
    """`configurations` of the whole study."""
    return configurations(study.get_trials(deepcopy=False), seeds)


def next_to_confirm(configs: list[Configuration], seeds: int) -> Configuration | None:
    """The configuration to queue on more seeds now: of those never tried, the best one whose score
    beats the mean of every configuration confirmed or being confirmed; None when none does."""
    if seeds < 2:
        return None
    bar = max((c.mean for c in configs if c.confirmed or c.pending), default=-math.inf)
    fresh = [c for c in configs if not c.tried and not c.confirmed and c.mean > bar]
    return max(fresh, key=lambda c: (c.mean, -c.number), default=None)


def enqueue_confirmations(study: optuna.Study, config: Configuration, seeds: int) -> None:
    """Queue `config` on seeds 1 .. `seeds` - 1."""
    for k in range(1, seeds):
        study.enqueue_trial(config.trial.params, user_attrs={
            records.CONFIRMS: config.number, records.CONFIRM_SEED: CONFIRM_SEED_BASE + k})


def study_seeds(study: optuna.Study, search: SearchOptions, *, source: str) -> int:
    """The seeds the study confirms on: those it was created with (a study from before
    --confirm-seeds: the command's). Another --confirm-seeds for it is refused (exit 2)."""
    stored = study.user_attrs.get(records.STUDY_CONFIRM_SEEDS)
    if not isinstance(stored, int):
        return search.seeds
    if search.confirm_seeds is not None and search.seeds != stored:
        raise ConfigError(file=source, key="--confirm-seeds", value=search.confirm_seeds,
                          rule=f"the study confirms a new best on {stored} seed(s) since it was "
                          "created (its ranking rests on that)",
                          fix=f"drop --confirm-seeds, or give --confirm-seeds {stored}")
    return stored
