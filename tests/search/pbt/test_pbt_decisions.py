"""Population-based training's decisions: which parameters a member may change (mutable,
check_mutable), how they are perturbed (perturb), and who copies whom (exploit, margin)."""

from __future__ import annotations

import ast
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automl.errors import ConfigError
from automl.schema import MINI_BATCH_KEYS
from automl.search.pbt.exploit import (
    Replacement,
    exploit,
    group_size,
    margin,
    ranked,
)
from automl.search.pbt.explore import check_mutable, fixed_reason, mutable, perturb
from automl.search.space import SearchSpace, parse_space

NAV_TERMS = ("position_tracking", "heading_tracking", "approach_scale", "orientation", "torques",
             "termination")
SOURCE = "spaces/pbt.yaml"
STATE_PY = Path(__file__).resolve().parents[3] / "src" / "automl" / "run" / "state.py"
NAN = float("nan")
LOW, HIGH = 1 / 1.5, 1 / 1.1  # a division by U(1.1, 1.5)


def make(*, ppo: dict | None = None, reward: dict | None = None) -> SearchSpace:
    data: dict[str, Any] = {"search_space_id": "pbt"}
    if ppo is not None:
        data["ppo_params"] = ppo
    if reward is not None:
        data["reward_weights"] = reward
    return parse_space(data, source=SOURCE, reward_terms=NAV_TERMS)


def one(section: str, name: str, spec: dict) -> SearchSpace:
    return make(**{"ppo" if section == "ppo_params" else "reward": {name: spec}})


def draws(space: SearchSpace, values: dict[str, Any], name: str, n: int = 2000, *, seed: int = 0,
          resample_probability: float = 0.0) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [perturb(values, space, rng=rng, resample_probability=resample_probability)[name]
            for _ in range(n)]


def in_factor_band(ratio: float) -> bool:
    eps = 1e-12
    return LOW - eps <= ratio <= HIGH + eps or 1.1 - eps <= ratio <= 1.5 + eps


UNIFORM = {"type": "uniform", "low": 0.01, "high": 0.5}
LOG = {"type": "loguniform", "low": 1e-5, "high": 1e-2}
LAYERS = {"type": "categorical", "choices": [[64, 64], [128, 64]]}

# --------------------------------------------------------------------------------------------
# mutable: the rule, one case per kind of key

MUTABLE = [
    # (section, name in the file, spec, mutable)
    ("ppo_params", "learning_rate", LOG, True),
    ("ppo_params", "entropy_loss_scale", LOG, True),
    ("ppo_params", "ratio_clip", UNIFORM, True),
    ("ppo_params", "value_clip", UNIFORM, True),
    ("ppo_params", "discount_factor", {"type": "uniform", "low": 0.9, "high": 0.999}, True),
    ("ppo_params", "lambda_param", {"type": "uniform", "low": 0.9, "high": 0.99}, True),
    ("ppo_params", "learning_epochs", {"type": "randint", "low": 2, "high": 8}, True),
    ("ppo_params", "kl_threshold", {"type": "choice", "values": [0.0, 0.01]}, True),
    ("ppo_params", "ppo.time_limit_bootstrap", {"type": "choice", "values": [True, False]}, True),
    ("reward_weights", "position_tracking", {"type": "uniform", "low": 0.5, "high": 5.0}, True),
    ("reward_weights", "torques", {"type": "loguniform", "low": -1e-3, "high": -1e-6}, True),
    ("reward_weights", "termination", {"type": "choice", "values": [-500, -200]}, True),
    ("ppo_params", "policy_hidden_layer_sizes", LAYERS, False),
    ("ppo_params", "value_hidden_layer_sizes", LAYERS, False),
    ("ppo_params", "activation", {"type": "choice", "values": ["elu", "tanh"]}, False),
    ("ppo_params", "rollouts", {"type": "choice", "values": [16, 24]}, False),
    ("ppo_params", "mini_batches", {"type": "randint", "low": 4, "high": 16, "step": 4}, False),
    ("ppo_params", "env.num_envs", {"type": "choice", "values": [64, 128]}, False),
    ("ppo_params", "ppo.normalize_observations", {"type": "choice", "values": [True, False]}, False),
    ("ppo_params", "ppo.normalize_values", {"type": "choice", "values": [True, False]}, False),
    ("ppo_params", "env.params.stage", {"type": "choice", "values": [1, 2]}, False),
    ("ppo_params", "train.seed", {"type": "randint", "low": 0, "high": 9}, False),
    ("ppo_params", "scoring.min_episodes", {"type": "randint", "low": 16, "high": 64}, False),
]


@pytest.mark.parametrize(("section", "name", "spec", "expected"), MUTABLE)
def test_mutable(section: str, name: str, spec: dict, expected: bool) -> None:
    (param,) = one(section, name, spec).params
    assert mutable(param) is expected
    reason = fixed_reason(param.key)
    assert (reason is None) is expected
    if reason is not None:
        assert len(reason) > 20


@pytest.mark.parametrize(("key", "words"), [
    ("network.policy_hidden_layer_sizes", "layer sizes"),
    ("ppo.normalize_values", "normaliser"),
    ("env.num_envs", "rollout memory"),
    ("ppo.mini_batches", "mini-batch"),
    ("env.params.stage", "task"),
    ("train.frames", "run setting"),
])
def test_fixed_reasons(key: str, words: str) -> None:
    reason = fixed_reason(key)
    assert reason is not None and words in reason


def _shape_keys() -> list[str]:
    """The config keys run/state.py's shape_of records (read from its source: importing it would
    import torch)."""
    tree = ast.parse(STATE_PY.read_text())
    (func,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "shape_of"]
    keys = [k.value for n in ast.walk(func) if isinstance(n, ast.Dict) for k in n.keys
            if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return [k for k in keys if "." in k]


def test_every_key_the_training_state_checks_is_fixed() -> None:
    keys = _shape_keys()
    assert "network.activation" in keys and "ppo.normalize_observations" in keys
    for key in [*keys, *MINI_BATCH_KEYS]:
        assert fixed_reason(key) is not None, key


def test_check_mutable_refuses_a_network_only_space() -> None:
    space = make(ppo={"policy_hidden_layer_sizes": LAYERS, "rollouts": {"type": "choice", "values": [16, 24]},
                      "activation": {"type": "choice", "values": ["elu", "tanh"]}})
    with pytest.raises(ConfigError) as err:
        check_mutable(space)
    assert err.value.file == SOURCE
    assert err.value.key == "ppo_params"
    assert err.value.value == ["policy_hidden_layer_sizes", "rollouts", "activation"]
    message = err.value.message
    for text in ("policy_hidden_layer_sizes", "network.policy_hidden_layer_sizes", "ppo.rollouts",
                 "fixed per member", "learning_rate", "reward_weights", "Fix:"):
        assert text in message


def test_check_mutable_returns_the_mutable_parameters() -> None:
    space = make(ppo={"learning_rate": LOG, "policy_hidden_layer_sizes": LAYERS},
                 reward={"torques": {"type": "loguniform", "low": -1e-3, "high": -1e-6}})
    assert [p.name for p in check_mutable(space)] == ["learning_rate", "torques"]


# --------------------------------------------------------------------------------------------
# perturb: continuous values


@pytest.mark.parametrize(("section", "name", "spec", "value"), [
    ("ppo_params", "learning_rate", {"type": "loguniform", "low": 1e-6, "high": 1.0}, 1e-3),
    ("ppo_params", "entropy_loss_scale", {"type": "uniform", "low": 0.0, "high": 1.0}, 0.01),
    ("reward_weights", "approach_scale", {"type": "uniform", "low": 0.1, "high": 100.0}, 4.0),
])
def test_continuous_values_scale_by_a_factor_from_dexpbt_range(section: str, name: str, spec: dict,
                                                               value: float) -> None:
    space = one(section, name, spec)
    ratios = [v / value for v in draws(space, {name: value}, name)]
    assert all(type(v) is float for v in ratios)
    assert all(in_factor_band(r) for r in ratios)
    up = sum(r > 1 for r in ratios) / len(ratios)
    assert 0.45 < up < 0.55  # multiplied or divided, 50/50
    assert min(r for r in ratios if r > 1) < 1.12 and max(ratios) > 1.48  # U(1.1, 1.5) covered
    assert min(ratios) < 1 / 1.48 and max(r for r in ratios if r < 1) > 1 / 1.12


@pytest.mark.parametrize(("value", "end"), [(0.5, 0.5), (0.01, 0.01)])
def test_results_are_clipped_to_the_range(value: float, end: float) -> None:
    space = one("ppo_params", "ratio_clip", UNIFORM)
    seen = draws(space, {"ratio_clip": value}, "ratio_clip", 500)
    assert all(0.01 <= v <= 0.5 for v in seen)
    at_end = sum(v == end for v in seen) / len(seen)
    assert 0.4 < at_end < 0.6  # every step outwards stops at the end
    assert all(in_factor_band(v / value) for v in seen if v != end)


@pytest.mark.parametrize("name", ["discount_factor", "lambda_param"])
def test_discount_and_lambda_scale_one_minus_x(name: str) -> None:
    space = one("ppo_params", name, {"type": "uniform", "low": 0.5, "high": 0.9999})
    seen = draws(space, {name: 0.99}, name)
    assert all(0.5 <= v <= 0.9999 for v in seen)
    assert all(in_factor_band((1 - v) / 0.01) for v in seen)  # 0.99 -> 1 - 0.01 x f or 1 - 0.01 / f
    assert min(seen) < 1 - 0.01 * 1.45 and max(seen) > 1 - 0.01 / 1.45


def test_discount_factor_never_passes_one() -> None:
    space = one("ppo_params", "discount_factor", {"type": "uniform", "low": 0.9, "high": 1.0})
    seen = draws(space, {"discount_factor": 0.999}, "discount_factor", 500)
    assert all(0.9 <= v < 1.0 for v in seen)  # x itself times 1.5 would have left the range


@pytest.mark.parametrize(("spec", "value"), [
    ({"type": "loguniform", "low": -1e-1, "high": -1e-8}, -1e-5),
    ({"type": "uniform", "low": -10.0, "high": -1e-3}, -0.05),
])
@pytest.mark.parametrize("resample_probability", [0.0, 1.0])
def test_negative_reward_weights_stay_negative(spec: dict, value: float,
                                               resample_probability: float) -> None:
    space = one("reward_weights", "torques", spec)
    seen = draws(space, {"torques": value}, "torques", 500, resample_probability=resample_probability)
    assert all(spec["low"] <= v <= spec["high"] < 0 for v in seen)
    if resample_probability == 0.0:
        assert all(in_factor_band(v / value) for v in seen)  # the magnitude scales


def test_a_log_range_resamples_log_uniformly() -> None:
    space = one("ppo_params", "learning_rate", {"type": "loguniform", "low": 1e-6, "high": 1.0})
    seen = draws(space, {"learning_rate": 1e-3}, "learning_rate", 2000, resample_probability=1.0)
    below = sum(v < 1e-3 for v in seen) / len(seen)
    assert 0.45 < below < 0.55  # half the decades; a uniform draw would put 0.1% there


@pytest.mark.parametrize("probability", [0.0, 0.1, 0.25, 0.6, 1.0])
def test_resample_frequency_follows_the_probability(probability: float) -> None:
    space = one("reward_weights", "approach_scale", {"type": "uniform", "low": 0.0, "high": 1000.0})
    seen = draws(space, {"approach_scale": 1.0}, "approach_scale", 4000,
                 resample_probability=probability)
    resampled = sum(not in_factor_band(v) for v in seen) / len(seen)  # perturbed: within [2/3, 1.5]
    assert abs(resampled - probability) < 0.03


# --------------------------------------------------------------------------------------------
# perturb: integers and choices

INTS = [
    # (low, high, step, value, every result perturbation can give)
    (2, 20, 2, 8, {6, 10, 12}),       # 8 x 1.1 rounds back to 8: one step up instead
    (1, 8, 1, 5, {3, 4, 6, 7, 8}),    # 5 / 1.1 rounds back to 5: one step down instead
    (1, 8, 1, 8, {5, 6, 7, 8}),       # upwards is clipped at the end
    (1, 8, 1, 1, {1, 2}),             # 1 / f rounds to 1, steps to 0, is clipped to 1
    (10, 100, 10, 40, {30, 50, 60}),
]


@pytest.mark.parametrize(("low", "high", "step", "value", "allowed"), INTS)
def test_integer_values_scale_then_round_to_their_step(low: int, high: int, step: int, value: int,
                                                       allowed: set[int]) -> None:
    space = one("ppo_params", "learning_epochs", {"type": "randint", "low": low, "high": high, "step": step})
    seen = draws(space, {"learning_epochs": value}, "learning_epochs", 1000)
    assert all(type(v) is int for v in seen)
    assert set(seen) <= allowed
    assert len(set(seen)) >= len(allowed) - 1  # the far end of U(1.1, 1.5) is rarely hit exactly


def test_integer_resampling_covers_the_grid() -> None:
    space = one("ppo_params", "learning_epochs", {"type": "randint", "low": 2, "high": 20, "step": 2})
    seen = draws(space, {"learning_epochs": 8}, "learning_epochs", 1000, resample_probability=1.0)
    assert set(seen) == set(range(2, 21, 2))


TERMINATION = {"type": "choice", "values": [-500, -300, -200, -100, -50]}
CHOICES = [
    # (section, name, spec, value, every result a neighbour step can give)
    ("reward_weights", "termination", TERMINATION, -200, {-300, -100}),
    ("reward_weights", "termination", TERMINATION, -500, {-300}),  # an end has one neighbour
    ("reward_weights", "termination", TERMINATION, -50, {-100}),
    ("ppo_params", "ppo.time_limit_bootstrap", {"type": "choice", "values": [True, False]}, True,
     {False}),  # two values always flip
    ("ppo_params", "discount_factor", {"type": "categorical", "choices": [0.95, 0.99, 0.995]}, 0.99,
     {0.95, 0.995}),
    ("ppo_params", "learning_rate", {"type": "choice", "values": [0.001]}, 0.001, {0.001}),
]


@pytest.mark.parametrize(("section", "name", "spec", "value", "allowed"), CHOICES)
def test_choices_step_to_a_neighbour_in_file_order(section: str, name: str, spec: dict, value: Any,
                                                   allowed: set[Any]) -> None:
    space = one(section, name, spec)
    seen = draws(space, {name: value}, name, 400)
    assert set(seen) == allowed


def test_choices_resample_uniformly() -> None:
    space = one("reward_weights", "termination", TERMINATION)
    seen = draws(space, {"termination": -500}, "termination", 2000, resample_probability=1.0)
    for choice in TERMINATION["values"]:
        assert abs(seen.count(choice) / len(seen) - 0.2) < 0.04


# --------------------------------------------------------------------------------------------
# perturb: the whole member


FULL = {"ppo": {"learning_rate": LOG, "policy_hidden_layer_sizes": LAYERS,
                "rollouts": {"type": "choice", "values": [16, 24]},
                "env.num_envs": {"type": "choice", "values": [64, 128]},
                "learning_epochs": {"type": "randint", "low": 2, "high": 8},
                "discount_factor": {"type": "uniform", "low": 0.9, "high": 0.999}},
        "reward": {"torques": {"type": "loguniform", "low": -1e-3, "high": -1e-6},
                   "termination": TERMINATION}}
MEMBER = {"learning_rate": 3e-4, "policy_hidden_layer_sizes": [128, 64], "rollouts": 24,
          "env.num_envs": 64, "learning_epochs": 5, "discount_factor": 0.99, "torques": -1e-5,
          "termination": -200}


def test_fixed_parameters_never_change_and_mutable_ones_always_may() -> None:
    space = make(**FULL)
    rng = np.random.default_rng(1)
    changed: set[str] = set()
    for _ in range(300):
        new = perturb({**MEMBER, "note": "kept"}, space, rng=rng, resample_probability=0.5)
        for name in ("policy_hidden_layer_sizes", "rollouts", "env.num_envs", "note"):
            assert new[name] == ({**MEMBER, "note": "kept"})[name]
        changed |= {name for name in MEMBER if new[name] != MEMBER[name]}
    assert changed == {"learning_rate", "learning_epochs", "discount_factor", "torques", "termination"}


def test_perturb_leaves_its_input_alone() -> None:
    space = make(**FULL)
    values = dict(MEMBER)
    perturb(values, space, rng=np.random.default_rng(0))
    assert values == MEMBER


@pytest.mark.parametrize("make_rng", [np.random.default_rng, random.Random])
def test_perturb_is_determined_by_the_generator(make_rng: Any) -> None:
    space = make(**FULL)
    first = [perturb(MEMBER, space, rng=rng) for rng in [make_rng(7)] for _ in range(20)]
    again = [perturb(MEMBER, space, rng=rng) for rng in [make_rng(7)] for _ in range(20)]
    other = [perturb(MEMBER, space, rng=rng) for rng in [make_rng(8)] for _ in range(20)]
    assert first == again
    assert first != other


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"factors": (0.9, 1.5)}, "`factors` is \\(0.9, 1.5\\), but must be `1 < low <= high`"),
    ({"factors": (1.5, 1.1)}, "`factors`"),
    ({"factors": (1.0, 1.5)}, "`factors`"),
    ({"factors": (1.1, math.inf)}, "`factors`"),
    ({"resample_probability": 1.5}, "`resample_probability` is 1.5"),
    ({"resample_probability": -0.1}, "`resample_probability`"),
])
def test_perturb_argument_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        perturb(MEMBER, make(**FULL), rng=np.random.default_rng(0), **kwargs)


def test_perturb_value_errors() -> None:
    space = make(**FULL)
    missing = {k: v for k, v in MEMBER.items() if k != "torques"}
    with pytest.raises(ValueError, match="lacks \\['torques'\\]"):
        perturb(missing, space, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="`termination` is -7, but must be one of its choice values"):
        perturb({**MEMBER, "termination": -7}, space, rng=np.random.default_rng(0), resample_probability=0.0)


# --------------------------------------------------------------------------------------------
# exploit


@pytest.mark.parametrize(("population", "fraction", "k"), [
    (2, 0.25, 1), (2, 0.01, 1), (2, 1e-12, 1), (3, 0.5, 1), (4, 0.25, 1), (5, 0.25, 2), (7, 0.5, 3), (8, 0.25, 2),
    (8, 0.125, 1), (10, 0.3, 3), (16, 0.25, 4), (16, 0.5, 8),
    (25, 0.28, 7),  # 0.28 x 25 = 7.000000000000001
])
def test_group_size(population: int, fraction: float, k: int) -> None:
    assert group_size(population, fraction) == k


@pytest.mark.parametrize(("scores", "kwargs", "expected"), [
    ([1, 2, 3, 4, 5], {}, 0.5 * math.sqrt(1.25)),                 # the worst 20% (1) left out
    ([1, 2, 3, 4, 5], {"trim_worst": 0.0}, 0.5 * math.sqrt(2.0)),
    ([1, 2, 3, 4, 5], {"std_factor": 1.0, "floor": 5.0}, 5.0),    # the floor wins
    ([2, 4, NAN, 6, NAN], {}, 0.5 * math.sqrt(8 / 3)),            # NaN left out (3 scores trim none)
    ([0.3, 0.3, 0.3], {}, 0.0),
    ([0.3], {"floor": 0.01}, 0.01),
    ([NAN, NAN], {"floor": 0.02}, 0.02),
    ([-1000, 1, 1, 1, 1], {}, 0.0),                               # a crashed member widens nothing
])
def test_margin(scores: list[float], kwargs: dict, expected: float) -> None:
    assert margin(scores, **kwargs) == pytest.approx(expected)


def test_ranking_puts_scoreless_members_last_and_breaks_ties_by_id() -> None:
    members = [(3, 0.5), (5, NAN), (1, 0.5), (2, 0.7), (0, NAN), (4, -math.inf), (6, -0.2)]
    assert [m for m, _ in ranked(members)] == [2, 1, 3, 6, 0, 4, 5]


POPULATION = [(0, 0.9), (1, 0.1), (2, 0.5), (3, 0.8), (4, 0.2), (5, 0.6), (6, 0.3), (7, 0.7)]


def test_the_bottom_fraction_copies_the_top() -> None:
    needed = margin([s for _, s in POPULATION])
    donors: set[int] = set()
    for seed in range(40):
        decisions = exploit(POPULATION, rng=np.random.default_rng(seed))
        assert [d.replaced for d in decisions] == [1, 4]  # worst first
        for d in decisions:
            assert d.donor in (0, 3)
            assert d.donor_score == dict(POPULATION)[d.donor]
            assert d.replaced_score == dict(POPULATION)[d.replaced]
            assert d.margin == needed
        donors |= {d.donor for d in decisions}
    assert donors == {0, 3}  # drawn from the whole top group


def test_donors_are_drawn_uniformly() -> None:
    rng = random.Random(3)
    counts = {0: 0, 3: 0}
    for _ in range(1000):
        for d in exploit(POPULATION, rng=rng):
            counts[d.donor] += 1
    assert abs(counts[0] / sum(counts.values()) - 0.5) < 0.05


@pytest.mark.parametrize(("members", "kwargs", "replaced"), [
    # a member within the margin of the donor is kept
    ([(0, 1.0), (1, 0.98), (2, 0.97), (3, 0.95)], {"floor": 0.1}, []),
    ([(0, 1.0), (1, 0.98), (2, 0.97), (3, 0.95)], {"floor": 0.01}, [3]),
    ([(0, 1.0), (1, 0.0), (2, 0.9), (3, 0.8)], {"std_factor": 3.0}, []),   # 3 x std = 1.17
    ([(0, 1.0), (1, 0.0), (2, 0.9), (3, 0.8)], {"std_factor": 0.5}, [1]),  # 0.5 x std = 0.2
    ([(0, 0.5), (1, 0.5), (2, 0.5), (3, 0.5)], {}, []),                    # equal: never
    # members without a score are replaced whatever the margin
    ([(0, 0.5), (1, NAN), (2, 0.4), (3, 0.45)], {"floor": 10.0}, [1]),
    ([(0, 0.5), (1, NAN), (2, math.inf), (3, NAN), (4, 0.2)], {"floor": 10.0, "fraction": 0.5}, [3, 2]),
    # ... unless no donor has one
    ([(0, NAN), (1, NAN), (2, NAN)], {}, []),
    # one member of a pair copies the other
    ([(7, 0.2), (3, 0.6)], {}, [7]),
])
def test_exploit_scripted_populations(members: list[tuple[int, float]], kwargs: dict,
                                      replaced: list[int]) -> None:
    decisions = exploit(members, rng=np.random.default_rng(0), **kwargs)
    assert [d.replaced for d in decisions] == replaced
    for d in decisions:
        assert isinstance(d, Replacement) and math.isfinite(d.donor_score)


def test_scoreless_donor_slots_are_skipped() -> None:
    # top group of 3: member 0 and two without a score -> member 0 donates to every replaced member
    members = [(0, 1.0), (1, NAN), (2, NAN), (3, NAN), (4, NAN), (5, NAN)]
    decisions = exploit(members, rng=np.random.default_rng(0), fraction=0.5)
    assert [(d.replaced, d.donor) for d in decisions] == [(5, 0), (4, 0), (3, 0)]


@pytest.mark.parametrize("make_rng", [np.random.default_rng, random.Random])
def test_exploit_is_determined_by_the_generator(make_rng: Any) -> None:
    big = [(i, s) for i, s in enumerate(np.random.default_rng(5).normal(size=16))]
    first = [exploit(big, rng=rng) for rng in [make_rng(1)] for _ in range(10)]
    again = [exploit(big, rng=rng) for rng in [make_rng(1)] for _ in range(10)]
    assert first == again
    shuffled = list(reversed(big))  # the order members are listed in does not matter
    assert [exploit(shuffled, rng=rng) for rng in [make_rng(1)] for _ in range(10)] == first


@pytest.mark.parametrize(("members", "kwargs", "match"), [
    (POPULATION, {"fraction": 0.0}, "`fraction` is 0.0, but must be `0 < fraction <= 0.5`"),
    (POPULATION, {"fraction": 0.6}, "`fraction` is 0.6"),
    (POPULATION, {"fraction": -0.1}, "`fraction`"),
    ([(0, 0.5)], {}, "population has 1 member\\(s\\), but must have at least 2"),
    ([], {}, "population has 0"),
    ([(0, 0.5), (0, 0.6)], {}, "member ids are \\[0, 0\\], but must be distinct"),
    (POPULATION, {"floor": -0.1}, "`floor` is -0.1"),
    (POPULATION, {"std_factor": NAN}, "`std_factor` is nan"),
])
def test_exploit_argument_errors(members: list[tuple[int, float]], kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        exploit(members, rng=np.random.default_rng(0), **kwargs)


def test_exploit_invariants_on_random_populations() -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(2, 20))
        scores = [float(s) if rng.random() > 0.15 else NAN for s in rng.normal(size=n)]
        members = list(zip(rng.permutation(100)[:n].tolist(), scores, strict=True))
        fraction = float(rng.uniform(0.01, 0.5))
        k = group_size(n, fraction)
        order = [m for m, _ in ranked(members)]
        decisions = exploit(members, rng=rng, fraction=fraction)
        assert len({d.replaced for d in decisions}) == len(decisions) <= k
        for d in decisions:
            assert d.replaced in order[-k:] and d.donor in order[:k]
            assert not math.isfinite(d.replaced_score) or d.donor_score - d.replaced_score > d.margin


def test_the_decisions_import_nothing_heavy() -> None:
    # -P: the repo root holds automl.py, which must not shadow the package.
    code = ("import sys, automl.search.pbt.explore, automl.search.pbt.exploit; "
            "print(sorted({'torch', 'optuna', 'numpy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
