"""The default sampler's random start-up counts configurations it drew: confirmations and
validation runs re-train a configuration and must not end the start-up."""

from __future__ import annotations

import optuna
import pytest

from automl.search.optuna_loop.sampling import StartupTPESampler, drew_configuration
from automl.search.plan import derived_seed
from automl.search.study import records

SEED = 7
DISTRIBUTIONS = {"x": optuna.distributions.FloatDistribution(0.0, 1.0),
                 "layers": optuna.distributions.CategoricalDistribution([1, 2, 3])}


def run_with_confirmations(sampler: optuna.samplers.BaseSampler, drawn: int) -> list[dict]:
    """`drawn` sampled trials, each followed by a confirmation of it (as a search confirms every
    new best); returns the sampled trials' parameters."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    params = []
    for _ in range(drawn):
        trial = study.ask(DISTRIBUTIONS)
        params.append(dict(trial.params))
        study.tell(trial, trial.params["x"])
        study.enqueue_trial(trial.params, user_attrs={records.CONFIRMS: trial.number,
                                                      records.CONFIRM_SEED: 501})
        again = study.ask(DISTRIBUTIONS)
        assert again.params == trial.params  # the confirmation re-trains, draws nothing
        study.tell(again, trial.params["x"] - 0.01)
    return params


def random_draws(count: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=SEED))
    return [dict(study.ask(DISTRIBUTIONS).params) for _ in range(count)]


def test_confirmations_do_not_use_up_the_startup() -> None:
    # 4 random configurations, although 8 trials finished before the fifth draw
    drawn = run_with_confirmations(StartupTPESampler(startup=4, seed=SEED), drawn=5)
    assert drawn[:4] == random_draws(4)
    assert drawn[4] != random_draws(5)[4]  # then TPE models


def test_optunas_own_count_would_leave_the_startup_after_two_configurations() -> None:
    # the behaviour the sampler exists to avoid (and the proof the test above can fail)
    plain = optuna.samplers.TPESampler(multivariate=True, seed=SEED, n_startup_trials=4,
                                       constant_liar=True)
    drawn = run_with_confirmations(plain, drawn=4)
    assert drawn[:2] == random_draws(2)
    assert drawn[2:] != random_draws(4)[2:]


@pytest.mark.parametrize(("attrs", "drew"), [
    ({}, True), ({"prior": True}, True), ({records.RETRY_OF: 3}, True),
    ({records.CONFIRMS: 3}, False), ({records.PHASE: "validation"}, False),
    ({records.INTERRUPTED: True}, False)])
def test_which_trials_drew_their_configuration(attrs: dict, drew: bool) -> None:
    trial = optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": DISTRIBUTIONS["x"]},
                                      value=1.0, user_attrs=attrs)
    assert drew_configuration(trial) is drew


def test_a_resized_sampler_does_not_share_another_seeds_draws() -> None:
    # the sampler that replaces the first once the budget sizes the plan gets a seed of its own;
    # with seed + 1, study seed s would replay study seed s + 1's first draws
    seeds = range(200)
    derived = [derived_seed(s) for s in seeds]
    assert derived == [derived_seed(s) for s in seeds]  # reproducible
    assert len(set(derived)) == len(derived)
    assert not set(derived) & set(range(1000))


def test_under_hyperband_the_startup_counts_within_the_trials_bracket() -> None:
    # Optuna hands the sampler a bracket's view of the study; with a start-up of 3 per bracket
    # every bracket's first 3 configurations are random draws
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = StartupTPESampler(startup=3, seed=SEED)
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    # Optuna assigns brackets by a hash of the study's name and the trial's number: a fixed name
    study = optuna.create_study(study_name="brackets", direction="maximize", sampler=sampler,
                                pruner=pruner)
    brackets: dict[int, list[int]] = {}
    for _ in range(40):
        trial = study.ask(DISTRIBUTIONS)
        drawn_at_random = trial.number in sampler._random_for  # noqa: SLF001
        trial.report(trial.params["x"], 1)
        trial.should_prune()  # the pruner sets its brackets up on its first decision
        frozen = study.tell(trial, trial.params["x"])
        bracket = pruner._get_bracket_id(study, frozen)  # noqa: SLF001 - Optuna's own bracket id
        brackets.setdefault(bracket, []).append(drawn_at_random)
    assert len(brackets) == 3
    for draws in brackets.values():
        assert len(draws) > 3 and draws[:3] == [True, True, True] and not any(draws[3:])
