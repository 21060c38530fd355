"""TPE whose random start-up counts configurations the search drew, not trials that finished.

Optuna's TPESampler leaves its random start-up once `n_startup_trials` trials are complete or
pruned. In automl some of those trials draw nothing: a confirmation re-trains a configuration on
another seed (search/study/confirm.py), and validation re-trains the best ones. The first configuration
is always confirmed, and so is every new best, so at the 7-17 trials of a budget-sized study a
start-up of 5 held fewer random configurations (4 on a navigation search, docs/benchmarks.md)
before TPE began to model: too few in a space of a dozen parameters. Here the start-up counts
only trials whose configuration the sampler drew, in the trial's Hyperband bracket as Optuna's own
count does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from automl.search.study import records

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def drew_configuration(trial: FrozenTrial) -> bool:
    """Whether `trial`'s configuration was drawn for it: not a confirmation or validation run, and
    not an interrupted trial (its retry, which counts, trains the same configuration)."""
    return (records.in_search(trial) and records.CONFIRMS not in trial.user_attrs
            and not trial.user_attrs.get(records.INTERRUPTED))


class StartupTPESampler(optuna.samplers.TPESampler):
    """Multivariate TPE (constant liar) that samples at random until `startup` finished trials of
    the study (of the trial's bracket, under Hyperband) drew their own configuration."""

    def __init__(self, *, startup: int, seed: int | None) -> None:
        super().__init__(multivariate=True, seed=seed, n_startup_trials=0, constant_liar=True)
        self._startup = startup
        self._startup_sampler = optuna.samplers.RandomSampler(seed=seed)
        self._random_for: set[int] = set()
        """Trial numbers still sampled at random (decided once, when the trial starts)."""

    def drawn(self, study: optuna.Study) -> int:
        """Finished trials of `study` that drew their configuration."""
        return sum(drew_configuration(t)
                   for t in study.get_trials(deepcopy=False, states=_FINISHED))

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        self._startup_sampler.before_trial(study, trial)
        if self.drawn(study) < self._startup:
            self._random_for.add(trial.number)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.number in self._random_for:
            return {}
        return super().sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if trial.number in self._random_for:
            return self._startup_sampler.sample_independent(study, trial, param_name,
                                                            param_distribution)
        return super().sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._random_for.discard(trial.number)
        super().after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        super().reseed_rng()
        self._startup_sampler.reseed_rng()
