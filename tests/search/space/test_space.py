"""Search-space files: parsing, Optuna distributions, sampling, grids, priors, overrides, errors."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from automl import paths
from automl.errors import ConfigError
from automl.search.space import SearchSpace, hydra_value, load_space, parse_space
from automl.search.space.params import CategoricalParam, ChoiceParam, LogUniformParam, RandIntParam

optuna.logging.set_verbosity(optuna.logging.WARNING)

NAV_TERMS = ("position_tracking", "fine_position_tracking", "heading_tracking", "forward_velocity",
             "approach_scale", "arrival_bonus", "stop_scale", "zero_ang_bonus", "orientation",
             "lin_vel_z", "ang_vel_xy", "torques", "dof_vel", "dof_acc", "action_rate",
             "termination")
CARTPOLE_TERMS = ("env_reward",)
SOURCE = "space.yaml"


def make(*, ppo: dict | None = None, reward: dict | None = None, fixed: dict | None = None,
         constraints: list | None = None) -> SearchSpace:
    data: dict[str, Any] = {"search_space_id": "test"}
    for section, value in (("ppo_params", ppo), ("reward_weights", reward), ("fixed", fixed),
                           ("constraints", constraints)):
        if value is not None:
            data[section] = value
    return parse_space(data, source=SOURCE, reward_terms=NAV_TERMS)


def one(section: str, name: str, spec: dict) -> SearchSpace:
    return make(**{"ppo" if section == "ppo_params" else "reward": {name: spec}})


def sample(space: SearchSpace, n: int, seed: int = 0) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.suggest(study.ask()) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Types: distribution, sampled range, sign, native type, step grid

TYPES = [
    # (section, name, spec, Optuna distribution, allowed native values or (low, high), type)
    ("ppo_params", "learning_rate", {"type": "loguniform", "low": "1e-5", "high": 1e-3},
     FloatDistribution(1e-5, 1e-3, log=True), (1e-5, 1e-3), float),
    ("reward_weights", "torques", {"type": "loguniform", "low": "-1e-3", "high": "-1e-6"},
     FloatDistribution(1e-6, 1e-3, log=True), (-1e-3, -1e-6), float),
    ("reward_weights", "orientation", {"type": "uniform", "low": -0.3, "high": -0.01},
     FloatDistribution(-0.3, -0.01), (-0.3, -0.01), float),
    ("reward_weights", "approach_scale", {"type": "uniform", "low": 2, "high": 10},
     FloatDistribution(2.0, 10.0), (2.0, 10.0), float),
    ("ppo_params", "learning_epochs", {"type": "randint", "low": 22, "high": 30, "step": 2},
     IntDistribution(22, 30, step=2), {22, 24, 26, 28, 30}, int),
    ("ppo_params", "mini_batches", {"type": "randint", "low": 1, "high": 4},
     IntDistribution(1, 4), {1, 2, 3, 4}, int),
    ("reward_weights", "termination", {"type": "choice", "values": [-500, -200, -50]},
     CategoricalDistribution([-500, -200, -50]), {-500, -200, -50}, int),
    ("ppo_params", "learning_rate", {"type": "choice", "values": ["1e-4", 3.0e-4]},
     CategoricalDistribution([1e-4, 3e-4]), {1e-4, 3e-4}, float),
    ("ppo_params", "activation", {"type": "choice", "values": ["elu", "relu"]},
     CategoricalDistribution(["elu", "relu"]), {"elu", "relu"}, str),
    ("ppo_params", "policy_hidden_layer_sizes",
     {"type": "categorical", "choices": [[128, 64], [256, 128, 64]]},
     CategoricalDistribution(["[128, 64]", "[256, 128, 64]"]),
     {(128, 64), (256, 128, 64)}, list),
]


@pytest.mark.parametrize(("section", "name", "spec", "dist", "allowed", "kind"), TYPES)
def test_distribution(section: str, name: str, spec: dict, dist: Any, allowed: Any,
                      kind: type) -> None:
    assert one(section, name, spec).distributions() == {name: dist}


@pytest.mark.parametrize(("section", "name", "spec", "dist", "allowed", "kind"), TYPES)
def test_samples_stay_in_range_with_native_types(section: str, name: str, spec: dict, dist: Any,
                                                 allowed: Any, kind: type) -> None:
    space = one(section, name, spec)
    seen = [values[name] for values in sample(space, 150)]
    assert all(type(v) is kind for v in seen)
    if isinstance(allowed, set):
        frozen = {tuple(v) if isinstance(v, list) else v for v in seen}
        assert frozen == allowed  # every value reached, nothing else
    else:
        low, high = allowed
        assert all(low <= v <= high for v in seen)
        assert max(seen) - min(seen) > 0.5 * (high - low) or spec["type"] == "loguniform"
    if kind is list:
        assert all(all(type(w) is int for w in v) for v in seen)


@pytest.mark.parametrize(("low", "high", "below", "fraction"), [
    (-1e-3, -1e-6, -1e-4, 2 / 3),   # |x| log-uniform in [1e-6, 1e-3]: 2/3 of them under 1e-4
    (1e-6, 1e-3, 1e-4, 2 / 3),
])
def test_loguniform_samples_the_magnitude_on_a_log_scale(low: float, high: float, below: float,
                                                         fraction: float) -> None:
    space = one("reward_weights", "torques", {"type": "loguniform", "low": low, "high": high})
    seen = [values["torques"] for values in sample(space, 300, seed=1)]
    assert all(math.copysign(1.0, v) == math.copysign(1.0, low) for v in seen)
    small = sum(abs(v) < abs(below) for v in seen) / len(seen)
    assert abs(small - fraction) < 0.1  # a uniform range would put ~0.1 there


def test_sampled_values_round_trip_through_optuna_params() -> None:
    space = load_template("full_unified.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    sampled = []
    for _ in range(20):
        trial = study.ask()
        values = space.suggest(trial)
        assert space.to_optuna(values) == trial.params
        sampled.append(values)
        study.tell(trial, 0.0)
    # stored trials (what a resumed study reads back) give the same native values
    assert [space.from_optuna(trial.params) for trial in study.trials] == sampled
    assert len({repr(v) for v in sampled}) == 20


def test_categorical_lists_round_trip_and_are_fresh_copies() -> None:
    space = one("ppo_params", "policy_hidden_layer_sizes",
                {"type": "categorical", "choices": [[128, 64], [256, 128, 64]]})
    native = space.from_optuna({"policy_hidden_layer_sizes": "[256, 128, 64]"})
    assert native == {"policy_hidden_layer_sizes": [256, 128, 64]}
    assert space.to_optuna(native) == {"policy_hidden_layer_sizes": "[256, 128, 64]"}
    native["policy_hidden_layer_sizes"].append(1)  # the caller's copy, not the spec's
    assert space.from_optuna({"policy_hidden_layer_sizes": "[256, 128, 64]"}) == {
        "policy_hidden_layer_sizes": [256, 128, 64]}
    with pytest.raises(ValueError):
        space.from_optuna({"policy_hidden_layer_sizes": "[1, 2]"})
    with pytest.raises(ValueError):
        space.to_optuna({"policy_hidden_layer_sizes": [1, 2]})


def test_from_optuna_turns_numpy_into_python() -> None:
    space = make(ppo={"learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
                      "learning_epochs": {"type": "randint", "low": 2, "high": 8, "step": 2}},
                 reward={"torques": {"type": "loguniform", "low": -1e-3, "high": -1e-6}})
    native = space.from_optuna({"learning_rate": np.float64(3e-4), "learning_epochs": np.int64(4),
                                "torques": np.float32(1e-5)})
    assert [type(v) for v in native.values()] == [float, int, float]
    assert native["torques"] < 0


# --------------------------------------------------------------------------------------------
# Grid, priors, overrides, config values, constraints


def test_grid_visits_every_combination_once() -> None:
    space = make(ppo={"learning_epochs": {"type": "randint", "low": 2, "high": 6, "step": 2},
                      "policy_hidden_layer_sizes": {"type": "categorical",
                                                    "choices": [[64, 64], [128, 64]]}},
                 reward={"termination": {"type": "choice", "values": [-500, -200, -50]}})
    assert space.grid_size() == 3 * 2 * 3
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(space.grid(), seed=0))
    seen = []

    def objective(trial: optuna.Trial) -> float:
        values = space.suggest(trial)
        seen.append((values["learning_epochs"], tuple(values["policy_hidden_layer_sizes"]),
                     values["termination"]))
        return 0.0

    study.optimize(objective, n_trials=100)  # the grid sampler stops the study when it is done
    expected = set(itertools.product([2, 4, 6], [(64, 64), (128, 64)], [-500, -200, -50]))
    assert len(seen) == len(expected) and set(seen) == expected


@pytest.mark.parametrize("spec", [
    {"type": "uniform", "low": 2.0, "high": 10.0},
    {"type": "loguniform", "low": 2.0, "high": 10.0},
])
def test_grid_refuses_a_continuous_dimension(spec: dict) -> None:
    space = make(reward={"termination": {"type": "choice", "values": [-1, -2]},
                         "approach_scale": spec})
    for call in (space.grid, space.grid_size):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.key == "reward_weights.approach_scale.type"
        assert info.value.value == spec["type"]
        assert "choice" in info.value.fix


def test_prior_params_are_what_an_enqueued_trial_samples() -> None:
    space = load_template("full_unified.yaml")
    priors = space.prior_params()
    assert priors["torques"] == 1e-5  # Optuna space: the magnitude
    assert priors["policy_hidden_layer_sizes"] == "[256, 128, 64]"
    assert len(priors) == len(space.params)  # every parameter of full_unified has a prior
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(priors)
    values = space.suggest(study.ask())
    assert values["torques"] == -1e-5
    assert values["dof_acc"] == -2.5e-7
    assert values["policy_hidden_layer_sizes"] == [256, 128, 64]
    assert values["termination"] == -200 and values["learning_rate"] == 3e-4


def test_prior_params_skip_parameters_without_a_prior() -> None:
    space = make(ppo={"learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
                      "rollouts": {"type": "choice", "values": [16, 24], "prior": 24},
                      "learning_epochs": {"type": "randint", "low": 2, "high": 8, "step": 2,
                                          "prior": 4}})
    assert space.prior_params() == {"rollouts": 24, "learning_epochs": 4}


@pytest.mark.parametrize(("section", "name", "spec", "value", "override"), [
    ("ppo_params", "learning_rate", {"type": "loguniform", "low": 1e-5, "high": 1e-3}, 3e-4,
     "ppo.learning_rate=0.0003"),
    ("ppo_params", "lambda_param", {"type": "choice", "values": [0.9, 0.95]}, 0.95,
     "ppo.lambda=0.95"),
    ("ppo_params", "policy_hidden_layer_sizes",
     {"type": "categorical", "choices": [[256, 128, 64]]}, [256, 128, 64],
     "network.policy_hidden_layer_sizes=[256,128,64]"),
    ("ppo_params", "activation", {"type": "choice", "values": ["elu", "relu"]}, "elu",
     "network.activation=elu"),
    ("reward_weights", "torques", {"type": "loguniform", "low": -1e-3, "high": -1e-6}, -1e-05,
     "++reward.scales.torques=-1e-05"),
    ("reward_weights", "termination", {"type": "choice", "values": [-500, -50]}, -500,
     "++reward.scales.termination=-500"),
    ("ppo_params", "env.params.stage", {"type": "choice", "values": [1, 2]}, 2,
     "++env.params.stage=2"),
    ("ppo_params", "env.params.mode", {"type": "choice", "values": ["a b", "it's"]}, "it's",
     "++env.params.mode='it\\'s'"),
])
def test_overrides(section: str, name: str, spec: dict, value: Any, override: str) -> None:
    assert one(section, name, spec).overrides({name: value}) == [override]


@pytest.mark.parametrize("value", [
    0.1, 1 / 3, -1e-05, 2.5e-07, 1e16, 123456789.123, 5e-324, 0.0, -0.0, 7, -500, True, False,
    None, "elu", "a b", "it's", "back\\slash\\", "true", "null", "1e-5", "x,y", "[1]", "",
    [256, 128, 64], [[1, 2], [3]], ["a", "b c"], {"n": 3, "mode": "fast"},
])
def test_hydra_values_parse_back_exactly(value: Any) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(f"key={hydra_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)
    if isinstance(value, float):
        assert math.copysign(1.0, parsed) == math.copysign(1.0, value)


def test_overrides_compose_with_conf() -> None:
    from automl.config import load_run_config

    space = load_template("ppo_search_space.yaml")
    values = sample(space, 1, seed=5)[0]
    cfg = load_run_config([*space.fixed_overrides(), *space.overrides(values)])
    assert cfg.ppo.learning_rate == values["learning_rate"]
    assert cfg.network.policy_hidden_layer_sizes == values["policy_hidden_layer_sizes"]
    assert cfg.reward.scales["termination"] == values["termination"]
    assert cfg.reward.scales["orientation"] == values["orientation"]
    assert (cfg.train.seed, cfg.env.num_envs, cfg.ppo.ratio_clip) == (42, 2048, 0.2)


def test_fixed_overrides_and_config_values() -> None:
    space = make(fixed={"seed": 7, "num_envs": 64, "lambda": 0.9, "frames": "1e5",
                        "env.params.stage": 2, "termination": -100},
                 ppo={"policy_hidden_layer_sizes": {"type": "categorical",
                                                    "choices": [[64, 64]]}},
                 reward={"torques": {"type": "loguniform", "low": -1e-3, "high": -1e-6}})
    assert space.fixed_overrides() == ["train.seed=7", "env.num_envs=64", "ppo.lambda=0.9",
                                       "train.frames=100000", "++env.params.stage=2",
                                       "++reward.scales.termination=-100"]
    values = {"policy_hidden_layer_sizes": [64, 64], "torques": -2e-5}
    assert space.config_values(values) == {
        "train.seed": 7, "env.num_envs": 64, "ppo.lambda": 0.9, "train.frames": 100000,
        "env.params.stage": 2, "reward.scales.termination": -100,
        "network.policy_hidden_layer_sizes": [64, 64], "reward.scales.torques": -2e-5}


def test_check_reports_violated_constraints_with_fixed_values() -> None:
    space = load_template("ppo_search_space.yaml")
    values = space.from_optuna(space.prior_params())
    assert space.check(values) == []
    harsh = {**values, "termination": -500, "learning_rate": 8e-4}
    assert space.check(harsh) == ["termination < -400 and learning_rate > 5e-4"]
    loose = make(ppo={"entropy_loss_scale": {"type": "uniform", "low": 0.01, "high": 0.1}},
                 fixed={"ratio_clip": 0.1},
                 constraints=["entropy_loss_scale > 0.05 and ratio_clip < 0.15"])
    assert loose.check({"entropy_loss_scale": 0.06}) == [
        "entropy_loss_scale > 0.05 and ratio_clip < 0.15"]
    assert loose.check({"entropy_loss_scale": 0.04}) == []


# --------------------------------------------------------------------------------------------
# Names and sections


@pytest.mark.parametrize(("section", "name", "key"), [
    ("ppo_params", "learning_rate", "ppo.learning_rate"),
    ("ppo_params", "lambda_param", "ppo.lambda"),
    ("ppo_params", "lambda", "ppo.lambda"),
    ("ppo_params", "kl_threshold", "ppo.kl_threshold"),
    ("ppo_params", "value_hidden_layer_sizes", "network.value_hidden_layer_sizes"),
    ("ppo_params", "ppo.learning_rate", "ppo.learning_rate"),
    ("ppo_params", "reward.scales.torques", "reward.scales.torques"),
    ("reward_weights", "torques", "reward.scales.torques"),
    ("reward_weights", "ppo.ratio_clip", "ppo.ratio_clip"),
    ("reward_weights", "env.params.stage", "env.params.stage"),
])
def test_names_map_to_config_keys(section: str, name: str, key: str) -> None:
    spec = {"type": "choice", "values": [0.5, 1.0]}
    if key.startswith("network."):
        spec = {"type": "categorical", "choices": [[64], [128]]}
    space = one(section, name, spec)
    assert [(p.name, p.key, p.section) for p in space.params] == [(name, key, section)]


def test_sections_may_be_missing_or_empty() -> None:
    space = parse_space({"search_space_id": "s", "ppo_params": {}, "reward_weights": None},
                        source=SOURCE, reward_terms=NAV_TERMS)
    assert (space.params, space.fixed, space.constraints, space.grid_size()) == ([], {}, [], 1)


# --------------------------------------------------------------------------------------------
# Bad input: every case names the key and the value


LOG = {"type": "loguniform", "low": 1e-5, "high": 1e-3}
BAD = [
    # (id, space data, key, value, words in the rule)
    ("root-not-mapping", ["a"], "<root>", ["a"], "must be a mapping"),
    ("unknown-section", {"search_space_id": "s", "hp_params": {}}, "hp_params", {},
     "not a section"),
    ("missing-id", {"ppo_params": {}}, "search_space_id", None, "non-empty string"),
    ("section-not-mapping", {"search_space_id": "s", "ppo_params": [1]}, "ppo_params", [1],
     "must be a mapping"),
    ("constraints-not-list", {"search_space_id": "s", "constraints": "a > 1"}, "constraints",
     "a > 1", "list of expressions"),
    ("unknown-param", {"ppo_params": {"learnin_rate": LOG}}, "ppo_params.learnin_rate",
     "learnin_rate", "not a known parameter"),
    ("reward-in-ppo", {"ppo_params": {"torques": LOG}}, "ppo_params.torques", "torques",
     "reward weights go under reward_weights"),
    ("unknown-term", {"reward_weights": {"toques": LOG}}, "reward_weights.toques",
     "reward.scales.toques", "no reward term `toques`"),
    ("unknown-path", {"ppo_params": {"ppo.learnig_rate": LOG}}, "ppo_params.ppo.learnig_rate",
     "ppo.learnig_rate", "not a config key"),
    ("unknown-root-path", {"ppo_params": {"foo.bar": LOG}}, "ppo_params.foo.bar", "foo.bar",
     "not a config key"),
    ("section-path", {"fixed": {"env.params": 1}}, "fixed.env.params", "env.params",
     "not a config key"),
    ("python-name-path", {"ppo_params": {"ppo.gae_lambda": LOG}}, "ppo_params.ppo.gae_lambda",
     "ppo.gae_lambda", "not a config key"),
    ("unknown-fixed", {"fixed": {"sed": 1}}, "fixed.sed", "sed", "not a known parameter"),
    ("spec-not-mapping", {"ppo_params": {"learning_rate": 1e-3}}, "ppo_params.learning_rate",
     1e-3, "must be a mapping"),
    ("unknown-type", {"ppo_params": {"learning_rate": {"type": "normal"}}},
     "ppo_params.learning_rate.type", "normal", "must be one of uniform"),
    ("missing-type", {"ppo_params": {"learning_rate": {"low": 1}}},
     "ppo_params.learning_rate.type", None, "must be one of"),
    ("unknown-spec-key", {"ppo_params": {"rollouts": {"type": "choice", "choices": [1]}}},
     "ppo_params.rollouts.choices", [1], "takes only type, values, prior"),
    ("missing-low", {"ppo_params": {"learning_rate": {"type": "uniform", "high": 1}}},
     "ppo_params.learning_rate.low", None, "needs `low`"),
    ("missing-high", {"ppo_params": {"learning_rate": {"type": "loguniform", "low": 1}}},
     "ppo_params.learning_rate.high", None, "needs `high`"),
    ("missing-values", {"ppo_params": {"rollouts": {"type": "choice"}}},
     "ppo_params.rollouts.values", None, "needs `values`"),
    ("missing-choices", {"ppo_params": {"activation": {"type": "categorical"}}},
     "ppo_params.activation.choices", None, "needs `choices`"),
    ("low-not-number", {"ppo_params": {"learning_rate": {"type": "uniform", "low": "abc",
                                                         "high": 1}}},
     "ppo_params.learning_rate.low", "abc", "finite number"),
    ("low-infinite", {"ppo_params": {"learning_rate": {"type": "uniform", "low": float("-inf"),
                                                       "high": 1}}},
     "ppo_params.learning_rate.low", float("-inf"), "finite number"),
    ("low-equals-high", {"ppo_params": {"learning_rate": {"type": "uniform", "low": 1e-3,
                                                          "high": "1e-3"}}},
     "ppo_params.learning_rate.high", "1e-3", "greater than `low`"),
    ("low-above-high", {"reward_weights": {"torques": {"type": "loguniform", "low": -1e-6,
                                                       "high": -1e-3}}},
     "reward_weights.torques.high", -1e-3, "greater than `low`"),
    ("log-touches-zero", {"reward_weights": {"torques": {"type": "loguniform", "low": 0,
                                                         "high": 1e-3}}},
     "reward_weights.torques.low", 0, "must not touch or cross 0"),
    ("log-touches-zero-high", {"reward_weights": {"torques": {"type": "loguniform",
                                                              "low": -1e-3, "high": 0.0}}},
     "reward_weights.torques.high", 0.0, "must not touch or cross 0"),
    ("log-crosses-zero", {"reward_weights": {"torques": {"type": "loguniform", "low": -1e-3,
                                                         "high": 1e-3}}},
     "reward_weights.torques.low", -1e-3, "must not touch or cross 0"),
    ("empty-choice", {"ppo_params": {"rollouts": {"type": "choice", "values": []}}},
     "ppo_params.rollouts.values", [], "non-empty list"),
    ("empty-categorical", {"ppo_params": {"activation": {"type": "categorical", "choices": []}}},
     "ppo_params.activation.choices", [], "non-empty list"),
    ("choice-not-list", {"ppo_params": {"rollouts": {"type": "choice", "values": 16}}},
     "ppo_params.rollouts.values", 16, "non-empty list"),
    ("choice-of-lists", {"ppo_params": {"policy_hidden_layer_sizes": {
        "type": "choice", "values": [[64, 64]]}}},
     "ppo_params.policy_hidden_layer_sizes.values[0]", [64, 64], "must be scalars"),
    ("categorical-dict", {"ppo_params": {"activation": {"type": "categorical",
                                                        "choices": [{"a": 1}]}}},
     "ppo_params.activation.choices[0]", {"a": 1}, "scalars or lists"),
    ("duplicate-value", {"ppo_params": {"rollouts": {"type": "choice", "values": [16, 32, 16]}}},
     "ppo_params.rollouts.values[2]", 16, "repeats"),
    ("prior-outside-range", {"ppo_params": {"learning_rate": {**LOG, "prior": 0.1}}},
     "ppo_params.learning_rate.prior", 0.1, "must lie in"),
    ("prior-wrong-sign", {"reward_weights": {"torques": {"type": "loguniform", "low": -1e-3,
                                                         "high": -1e-6, "prior": "1e-5"}}},
     "reward_weights.torques.prior", "1e-5", "must lie in"),
    ("prior-not-number", {"ppo_params": {"learning_rate": {**LOG, "prior": "fast"}}},
     "ppo_params.learning_rate.prior", "fast", "finite number"),
    ("prior-not-a-choice", {"ppo_params": {"rollouts": {"type": "choice", "values": [16, 32],
                                                        "prior": 24}}},
     "ppo_params.rollouts.prior", 24, "must be one of the values"),
    ("prior-not-a-categorical", {"ppo_params": {"policy_hidden_layer_sizes": {
        "type": "categorical", "choices": [[64, 64]], "prior": [64]}}},
     "ppo_params.policy_hidden_layer_sizes.prior", [64], "must be one of the choices"),
    ("randint-float-low", {"ppo_params": {"learning_epochs": {"type": "randint", "low": 2.5,
                                                              "high": 8}}},
     "ppo_params.learning_epochs.low", 2.5, "must be integers"),
    ("randint-string-high", {"ppo_params": {"learning_epochs": {"type": "randint", "low": 2,
                                                                "high": "8"}}},
     "ppo_params.learning_epochs.high", "8", "must be integers"),
    ("randint-low-above-high", {"ppo_params": {"learning_epochs": {"type": "randint", "low": 8,
                                                                   "high": 2}}},
     "ppo_params.learning_epochs.high", 2, "greater than `low`"),
    ("randint-step-not-dividing", {"ppo_params": {"learning_epochs": {
        "type": "randint", "low": 22, "high": 30, "step": 3}}},
     "ppo_params.learning_epochs.step", 3, "divide high - low (8)"),
    ("randint-step-zero", {"ppo_params": {"learning_epochs": {
        "type": "randint", "low": 22, "high": 30, "step": 0}}},
     "ppo_params.learning_epochs.step", 0, "must be >= 1"),
    ("randint-step-float", {"ppo_params": {"learning_epochs": {
        "type": "randint", "low": 22, "high": 30, "step": 2.0}}},
     "ppo_params.learning_epochs.step", 2.0, "integer >= 1"),
    ("randint-prior-off-grid", {"ppo_params": {"learning_epochs": {
        "type": "randint", "low": 22, "high": 30, "step": 2, "prior": 23}}},
     "ppo_params.learning_epochs.prior", 23, "must be one of 22, 24"),
    ("uniform-on-integer-key", {"ppo_params": {"learning_epochs": {"type": "uniform", "low": 2,
                                                                   "high": 8}}},
     "ppo_params.learning_epochs.type", "uniform", "must be an integer"),
    ("randint-on-string-key", {"ppo_params": {"activation": {"type": "randint", "low": 2,
                                                             "high": 8}}},
     "ppo_params.activation.type", "randint", "must be one of"),
    ("choice-wrong-type", {"ppo_params": {"learning_epochs": {"type": "choice",
                                                              "values": [4, 4.5]}}},
     "ppo_params.learning_epochs.values[1]", 4.5, "must be an integer"),
    ("choice-not-a-literal", {"ppo_params": {"activation": {"type": "choice",
                                                            "values": ["elu", "swish"]}}},
     "ppo_params.activation.values[1]", "swish", "must be one of"),
    ("fixed-wrong-type", {"fixed": {"seed": "forty-two"}}, "fixed.seed", "forty-two",
     "must be an integer"),
    ("searched-and-fixed", {"fixed": {"learning_rate": 1e-3},
                            "ppo_params": {"ppo.learning_rate": LOG}},
     "ppo_params.ppo.learning_rate", "ppo.learning_rate", "already sets"),
    ("two-names-one-key", {"ppo_params": {"lambda_param": {"type": "choice", "values": [0.9]},
                                          "lambda": {"type": "choice", "values": [0.9]}}},
     "ppo_params.lambda", "lambda", "already sets"),
    ("constraint-syntax", {"ppo_params": {"learning_rate": LOG},
                           "constraints": ["learning_rate >"]},
     "constraints[0]", "learning_rate >", "not a valid expression"),
    ("constraint-unknown-name", {"ppo_params": {"learning_rate": LOG},
                                 "constraints": ["learning_rate > 1", "rollouts > 16"]},
     "constraints[1]", "rollouts > 16", "`rollouts` is not a parameter"),
    ("constraint-forbidden", {"ppo_params": {"learning_rate": LOG},
                              "constraints": ["__import__('os').system('x')"]},
     "constraints[0]", "__import__('os').system('x')", "a function call"),
    ("constraint-type-mismatch", {"ppo_params": {"policy_hidden_layer_sizes": {
        "type": "categorical", "choices": [[64, 64]]}},
        "constraints": ["policy_hidden_layer_sizes > 64"]},
     "constraints[0]", "policy_hidden_layer_sizes > 64", "cannot be evaluated"),
]


@pytest.mark.parametrize(("data", "key", "value", "rule"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_input(data: Any, key: str, value: Any, rule: str) -> None:
    if isinstance(data, dict) and "search_space_id" not in data and key != "search_space_id":
        data = {"search_space_id": "s", **data}
    with pytest.raises(ConfigError) as info:
        parse_space(data, source=SOURCE, reward_terms=NAV_TERMS)
    err = info.value
    assert (err.file, err.key, err.value) == (SOURCE, key, value)
    assert rule in err.rule
    assert err.fix
    assert f"`{key}`" in err.message and SOURCE in err.message


def test_unknown_name_errors_list_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        make(ppo={"learnin_rate": LOG})
    assert "learning_rate" in info.value.rule and "policy_hidden_layer_sizes" in info.value.rule
    assert "learning_rate" in info.value.fix  # did you mean
    with pytest.raises(ConfigError) as info:
        make(reward={"toques": LOG})
    assert all(term in info.value.rule for term in NAV_TERMS)
    assert "torques" in info.value.fix
    with pytest.raises(ConfigError) as info:
        make(ppo={"ppo.learnig_rate": LOG})
    assert "learning_rate" in info.value.rule and "lambda" in info.value.rule


@pytest.mark.parametrize(("text", "key", "rule"), [
    ("search_space_id: s\nppo_params:\n  learning_rate: {type: uniform, low: 1\n",
     "line 4, column 1", "not valid YAML"),
    ("search_space_id: s\n ppo_params: {}\n", "line 2, column 12", "not valid YAML"),
    ("search_space_id: s\nppo_params:\n  rollouts: {type: choice, values: [1]}\n"
     "  rollouts: {type: choice, values: [2]}\n", "line 4, column 3", "not valid YAML"),
    ("- a\n- b\n", "<root>", "must be a mapping"),
    ("", "<root>", "must be a mapping"),
])
def test_bad_files(tmp_path: Path, text: str, key: str, rule: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_space(path, reward_terms=NAV_TERMS)
    assert (info.value.file, info.value.key) == (str(path), key)
    assert rule in info.value.rule


def test_duplicate_yaml_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("search_space_id: s\nfixed: {seed: 1, seed: 2}\n")
    with pytest.raises(ConfigError) as info:
        load_space(path, reward_terms=NAV_TERMS)
    assert "'seed' appears twice" in str(info.value.value)


@pytest.mark.parametrize("make_path", [
    lambda tmp: tmp / "missing.yaml",
    lambda tmp: tmp,  # a folder
])
def test_unreadable_file(tmp_path: Path, make_path: Any) -> None:
    path = make_path(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_space(path, reward_terms=NAV_TERMS)
    assert (info.value.file, info.value.key, info.value.value) == (str(path), "<file>", str(path))
    assert "cannot be read" in info.value.rule


# --------------------------------------------------------------------------------------------
# Templates


TEMPLATES = sorted(p.name for p in paths.templates_dir().glob("*.yaml"))


MUJOCO_TEMPLATES = {"hopper.yaml": "hopper", "hopper_ppo_only.yaml": "hopper",
                    "walker2d.yaml": "walker2d", "halfcheetah.yaml": "halfcheetah", "ant.yaml": "ant",
                    "humanoid.yaml": "humanoid"}
"""MuJoCo task templates -> their conf/reward option (checked in tests/envs/test_mujoco_tasks.py)."""


def load_template(name: str) -> SearchSpace:
    terms = CARTPOLE_TERMS if name == "cartpole.yaml" else NAV_TERMS
    if name in MUJOCO_TEMPLATES:
        reward = paths.conf_dir() / "reward" / f"{MUJOCO_TEMPLATES[name]}.yaml"
        terms = tuple(yaml.safe_load(reward.read_text())["scales"])
    if name.startswith("isaaclab_"):  # the Isaac Lab task's own terms, as a search reads them
        from automl.config import load_run_config
        from automl.search.plan import reward_terms

        terms = tuple(reward_terms(load_run_config(["env=isaaclab"])))
    return load_space(paths.templates_dir() / name, reward_terms=terms)


def test_the_expected_templates_exist() -> None:
    assert TEMPLATES == sorted(["cartpole.yaml", "fine_tuning.yaml", "full_unified.yaml",
                                "ppo_search_space.yaml", "quick_ppo_validation.yaml",
                                "quick_reward_validation.yaml", "isaaclab_cartpole.yaml",
                                *MUJOCO_TEMPLATES])


def test_navigation_terms_match_conf() -> None:
    scales = yaml.safe_load((paths.conf_dir() / "reward" / "navigation.yaml").read_text())
    assert tuple(scales["scales"]) == NAV_TERMS


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_loads_and_samples(name: str) -> None:
    space = load_template(name)
    text = (paths.templates_dir() / name).read_text()
    assert text.startswith("# ") and "automl.py --space templates/" + name in text
    values = sample(space, 5)[0]
    assert set(values) == set(space.names)
    assert len(space.overrides(values)) == len(space.params)


def test_seed_space_is_verbatim_but_for_two_constraints_that_could_never_fire() -> None:
    space = load_template("ppo_search_space.yaml")
    assert space.space_id == "unified_navigation_v1"
    assert space.fixed == {"train.seed": 42, "env.num_envs": 2048, "ppo.grad_norm_clip": 1.0,
                           "ppo.ratio_clip": 0.2, "ppo.value_clip": 0.2}
    assert space.names == ["learning_rate", "policy_hidden_layer_sizes", "rollouts",
                           "learning_epochs", "entropy_loss_scale", "position_tracking",
                           "heading_tracking", "approach_scale", "arrival_bonus", "orientation",
                           "lin_vel_z", "action_rate", "termination"]
    # The seed's `learning_epochs > 8` (values up to 8) and `entropy_loss_scale > 0.05 and
    # ratio_clip < 0.15` (entropy up to 1e-2, ratio_clip fixed at 0.2) could never fire.
    assert [c.text for c in space.constraints] == [
        "learning_rate > 5e-4 and learning_epochs >= 8",
        "entropy_loss_scale > 5e-3 and learning_rate < 3e-5",
        "termination < -400 and learning_rate > 5e-4"]
    assert space.param("policy_hidden_layer_sizes").values == (
        (128, 64), (256, 128, 64), (512, 256, 128), (256, 256, 256))
    assert space.param("learning_rate").low == 1e-5  # `1e-5` is a string to PyYAML


def test_full_unified_priors_are_the_conf_defaults() -> None:
    space = load_template("full_unified.yaml")
    priors = space.from_optuna(space.prior_params())
    conf = paths.conf_dir()
    scales = yaml.safe_load((conf / "reward" / "navigation.yaml").read_text())["scales"]
    ppo = yaml.safe_load((conf / "ppo" / "default.yaml").read_text())
    network = yaml.safe_load((conf / "network" / "medium.yaml").read_text())
    assert {p.name for p in space.params if p.section == "reward_weights"} == set(NAV_TERMS)
    for p in space.params:
        section, _, leaf = p.key.rpartition(".")
        default = {"reward.scales": scales, "ppo": ppo, "network": network}[section][leaf]
        assert priors[p.name] == pytest.approx(default), p.name
    kinds = {p.name: p.kind for p in space.params}
    assert [n for n, k in kinds.items() if k == "loguniform"] == [
        "learning_rate", "entropy_loss_scale", "torques", "dof_vel", "dof_acc"]


@pytest.mark.parametrize(("name", "size"), [
    ("quick_reward_validation.yaml", 6), ("quick_ppo_validation.yaml", 6),
])
def test_quick_templates_are_grids(name: str, size: int) -> None:
    assert load_template(name).grid_size() == size


def test_cartpole_template_fits_cartpole_terms() -> None:
    space = load_template("cartpole.yaml")
    assert space.fixed == {"train.seed": 42, "env.num_envs": 16}
    assert space.param("learning_epochs").grid_values() == [2, 4, 6, 8]
    with pytest.raises(ConfigError):  # the navigation space names terms cartpole lacks
        load_space(paths.templates_dir() / "fine_tuning.yaml", reward_terms=CARTPOLE_TERMS)


def test_dump_writes_the_original_text(tmp_path: Path) -> None:
    source = paths.templates_dir() / "ppo_search_space.yaml"
    space = load_space(source, reward_terms=NAV_TERMS)
    target = tmp_path / "study" / "search_space.yaml"
    space.dump(target)
    assert target.read_text() == source.read_text()
    assert load_space(target, reward_terms=NAV_TERMS).params == space.params


def test_each_kind_knows_its_values_and_the_nearest_one_to_any_other():
    # What a population's member 0 starts from where the composed default lies outside the space.
    common = {"key": "ppo.x", "section": "ppo_params"}
    rollouts = ChoiceParam(name="rollouts", values=(16, 32, 64), **common)
    assert rollouts.nearest(24) == 32 and rollouts.nearest(20) == 16  # log scale
    layers = CategoricalParam(name="layers", values=((64, 64), (128, 128)), **common)
    assert layers.nearest([256, 128, 64]) == [128, 128]  # the nearest in total units
    assert ChoiceParam(name="a", values=("elu", "relu"), **common).nearest("tanh") == "elu"
    epochs = RandIntParam(name="epochs", low=2, high=8, step=2, **common)
    assert epochs.nearest(16) == 8 and epochs.nearest(None) == 6
    assert not epochs.holds(5) and epochs.nearest(5) == 6  # off the step grid
    lr = LogUniformParam(name="lr", low=1e-5, high=1e-3, **common)
    assert lr.nearest(1e-2) == 1e-3 and lr.nearest(None) == pytest.approx(1e-4)
    assert not rollouts.holds(24) and rollouts.holds(32) and not lr.holds(None)
