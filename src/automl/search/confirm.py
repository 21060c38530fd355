"""A new best is confirmed on more seeds inside the search, and configurations are ranked by their
mean over seeds (racing, as SMAC's intensification does).

One training run's score varies with its seed about as much as between configurations (Pendulum:
~300 between two seeds of one configuration, docs/benchmarks.md), so a search's best single run is
mostly its luckiest one. A trial that completes above every configuration already under
confirmation is queued again on `--confirm-seeds` - 1 more seeds (CONFIRM_SEED_BASE + 1, + 2, ...:
every configuration meets the same seeds), trained in full (the pruner stores their points and
never stops them). The search's best is the confirmed configuration (every seed completed) with the
highest mean; configurations on fewer seeds rank after every confirmed one.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.search import records

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
    confirming: bool
    """Confirmations of it were queued (ended or not)."""
    confirmed: bool
    """Every seed asked for completed."""

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def mean(self) -> float:
        """Mean score over its completed seeds."""
        return statistics.fmean(self.scores)


def group_of(trial: FrozenTrial | optuna.Trial) -> int:
    """The number of the trial whose configuration `trial` trains (its own when it sampled it)."""
    confirms = trial.user_attrs.get(records.CONFIRMS)
    return int(confirms) if isinstance(confirms, int) else trial.number


def configurations(trials: Iterable[FrozenTrial], seeds: int) -> list[Configuration]:
    """The search's configurations whose first trial completed, best first: confirmed ones by mean,
    then the others by mean (`seeds`: --confirm-seeds; 1 ranks single runs by their score)."""
    search = [t for t in trials if t.user_attrs.get(records.PHASE, "search") == "search"]
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
        found.append(Configuration(trial=first, scores=scores, confirming=bool(extra),
                                   confirmed=len(scores) >= seeds))
    return sorted(found, key=lambda c: (not c.confirmed, -c.mean, c.number))


def ranked(study: optuna.Study, seeds: int) -> list[Configuration]:
    """`configurations` of the whole study."""
    return configurations(study.get_trials(deepcopy=False), seeds)


def to_confirm(trial: FrozenTrial | optuna.Trial, score: float, configs: list[Configuration], seeds: int) -> bool:
    """Whether a trial that just completed with `score` is to be confirmed: it sampled its own
    configuration, and it beats the mean of every configuration confirmed or being confirmed."""
    if seeds < 2 or group_of(trial) != trial.number:
        return False
    standing = [c.mean for c in configs if (c.confirming or c.confirmed) and c.number != trial.number]
    return not standing or score > max(standing)


def enqueue_confirmations(study: optuna.Study, trial: FrozenTrial | optuna.Trial,
                          params: dict[str, object], seeds: int) -> None:
    """Queue `trial`'s configuration on seeds 1 .. `seeds` - 1 (Optuna-space `params`)."""
    for k in range(1, seeds):
        study.enqueue_trial(params, user_attrs={records.CONFIRMS: trial.number,
                                                records.CONFIRM_SEED: CONFIRM_SEED_BASE + k})
