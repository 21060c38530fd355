"""The safe constraint evaluator: what it accepts, what it refuses, and how it evaluates."""

from __future__ import annotations

import pytest

from automl.errors import ConfigError
from automl.search.space import Constraint

NAMES = ("learning_rate", "learning_epochs", "termination", "ratio_clip", "activation",
         "policy_hidden_layer_sizes", "env.params.stage")
VALUES = {"learning_rate": 1e-3, "learning_epochs": 10, "termination": -500, "ratio_clip": 0.1,
          "activation": "elu", "policy_hidden_layer_sizes": [256, 128, 64],
          "env.params.stage": 2}


def parse(text: object, index: int = 0) -> Constraint:
    return Constraint.parse(text, names=NAMES, source="space.yaml", index=index)


@pytest.mark.parametrize(("text", "values", "violated"), [
    # the unified space's three constraints
    ("learning_rate > 5e-4 and learning_epochs > 8", {}, True),
    ("learning_rate > 5e-4 and learning_epochs > 8", {"learning_epochs": 8}, False),
    ("learning_rate > 5e-4 and learning_epochs > 8", {"learning_rate": 5e-4}, False),
    ("termination < -400 and learning_rate > 5e-4", {}, True),
    ("termination < -400 and learning_rate > 5e-4", {"termination": -400}, False),
    # or / not / chained comparisons
    ("learning_rate < 1e-4 or learning_epochs >= 10", {}, True),
    ("learning_rate < 1e-4 or learning_epochs >= 10", {"learning_epochs": 9}, False),
    ("not learning_epochs > 8", {}, False),
    ("not (learning_epochs > 8)", {"learning_epochs": 4}, True),
    ("4 <= learning_epochs < 12", {}, True),
    ("4 <= learning_epochs < 10", {}, False),
    ("ratio_clip == 0.1 != learning_rate", {}, True),
    # arithmetic, unary minus, True/False
    ("learning_rate * learning_epochs > 5e-3", {}, True),
    ("learning_rate * learning_epochs > 5e-3", {"learning_epochs": 4}, False),
    ("-termination / 100 + 1 - 1 >= 5", {}, True),
    ("+learning_epochs == 10", {}, True),
    ("(learning_epochs > 8) == True", {}, True),
    ("(learning_epochs > 8) == False", {}, False),
    # strings, lists, membership, a dotted name
    ("activation == 'elu' and ratio_clip < 0.15", {}, True),
    ('activation != "elu"', {}, False),
    ("policy_hidden_layer_sizes == [256, 128, 64]", {}, True),
    ("policy_hidden_layer_sizes == (256, 128, 64)", {}, True),
    ("policy_hidden_layer_sizes == [128, 64]", {}, False),
    ("termination in [-500, -300]", {}, True),
    ("termination not in [-500, -300]", {}, False),
    ("activation in ['relu', 'tanh']", {}, False),
    ("env.params.stage == 2 and learning_rate > 5e-4", {}, True),
    # division by zero or overflow: undecided, so not violated (even under `not`)
    ("learning_rate / (learning_epochs - 10) > 1", {}, False),
    ("not (learning_rate / (learning_epochs - 10) > 1)", {}, False),
    ("learning_epochs / 0 > 1 or learning_epochs > 8", {}, False),
    ("learning_epochs * 1e308 * 1e308 > 1", {}, True),  # float overflow gives inf, no error
])
def test_evaluates(text: str, values: dict, violated: bool) -> None:
    assert parse(text).violated({**VALUES, **values}) is violated


@pytest.mark.parametrize(("text", "construct"), [
    ("__import__('os').system('x')", "a function call"),
    ("open('f')", "a function call"),
    ("learning_rate > len([])", "a function call"),
    ("().__class__", "attribute access"),
    ("learning_rate.__class__", "attribute access"),
    ("learning_rate.real > 0", "attribute access"),
    ("[x for x in ()]", "a comprehension"),
    ("{x: 1 for x in ()}", "a comprehension"),
    ("(x for x in ())", "a generator expression"),
    ("lambda: 1", "a lambda"),
    ("policy_hidden_layer_sizes[0] > 128", "subscripting"),
    ("learning_rate if learning_epochs else 1", "a conditional expression"),
    ("(y := 1) > 0", "an assignment"),
    ("{'a': 1} == learning_rate", "a dict"),
    ("{1, 2} == learning_rate", "a set"),
    ("f'{learning_rate}' == 'x'", "an f-string"),
    ("learning_rate ** 2 > 1", "the operator `**`"),
    ("learning_epochs // 2 > 1", "the operator `//`"),
    ("learning_epochs % 2 == 0", "the operator `%`"),
    ("learning_epochs & 1", "the operator `&`"),
    ("~learning_epochs > 1", "the operator `~`"),
    ("learning_rate is None", "the operator `is`"),
    ("learning_rate > None", "the constant None"),
    ("learning_rate > b'x'", "the constant b'x'"),
    ("learning_rate > 1j", "the constant 1j"),
    ("learning_rate > ...", "the constant Ellipsis"),
])
def test_rejects_constructs(text: str, construct: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, index=3)
    err = info.value
    assert err.key == "constraints[3]"
    assert err.value == text
    assert construct in err.rule
    assert "may only use" in err.rule


@pytest.mark.parametrize(("text", "rule"), [
    ("learning_rate >", "not a valid expression"),
    ("learning_rate > 1e-4 and", "not a valid expression"),
    ("import os", "not a valid expression"),
    ("x = 1", "not a valid expression"),
    ("lambda > 0.9", "not a valid expression"),
    ("learnin_rate > 1e-4", "`learnin_rate` is not a parameter of this space"),
    ("os > 1", "`os` is not a parameter"),
    ("__builtins__ == 1", "`__builtins__` is not a parameter"),
    ("True", "reads no parameter"),
    ("1 < 2", "reads no parameter"),
    ("", "non-empty string"),
    ("   ", "non-empty string"),
    (42, "non-empty string"),
    (["learning_rate > 1"], "non-empty string"),
    ("learning_rate > 1 and " * 60 + "learning_rate > 1", "limit is"),
    ("-" * 60 + "learning_rate > 1", "nests deeper"),
])
def test_rejects_bad_text(text: object, rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, index=1)
    assert info.value.key == "constraints[1]"
    assert info.value.value == text
    assert rule in info.value.rule


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(ConfigError) as info:
        parse("seed > 1")
    assert "learning_rate" in info.value.rule and "termination" in info.value.rule


def test_lambda_keyword_gets_a_fix() -> None:
    with pytest.raises(ConfigError) as info:
        parse("lambda > 0.9")
    assert "lambda_param" in info.value.fix


def test_names_read() -> None:
    constraint = parse("learning_rate > 5e-4 and env.params.stage == 2")
    assert constraint.names == {"learning_rate", "env.params.stage"}
    assert constraint.key == "constraints[0]"


@pytest.mark.parametrize(("text", "values"), [
    ("activation < 1", {}),
    ("activation * 2 > 1", {}),
    ("-activation < 1", {}),
    ("policy_hidden_layer_sizes + 1 > 1", {}),
    ("learning_epochs in 3", {}),
])
def test_type_errors_name_the_constraint(text: str, values: dict) -> None:
    constraint = parse(text, index=2)
    with pytest.raises(ConfigError) as info:
        constraint.violated({**VALUES, **values})
    assert info.value.key == "constraints[2]"
    assert "cannot be evaluated" in info.value.rule


def test_string_repetition_is_refused() -> None:
    # `*` takes numbers only, so a constraint cannot build a huge string.
    with pytest.raises(ConfigError):
        parse("activation * 1000000000 == 'x'").violated(VALUES)


def test_missing_value_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="learning_epochs"):
        parse("learning_epochs > 8").violated({"learning_rate": 1e-3})
