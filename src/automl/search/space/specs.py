"""One searched parameter's spec in a space file (`{type: loguniform, low: 1e-5, ...}`), checked.

`parse_param` checks a spec against the rules of its `type:` and against the run schema's type of
the config key it sets, then builds the parameter's class from params.py. `TYPES` is the one
table from a `type:` to the keys it takes and the function that builds it. Every error is a
ConfigError naming the file, the key, the value, the rule and a fix. `coerce` and `check_fits`
serve the fixed values too (loading.py).
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from automl.errors import ConfigError
from automl.search.space.params import (
    CategoricalParam,
    ChoiceParam,
    FloatParam,
    Kind,
    ListParam,
    LogUniformParam,
    Param,
    RandIntParam,
    UniformParam,
    freeze,
    label,
    thaw,
)
from automl.typed import check_value as convert_value

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class At:
    """A place in the space file, for error messages."""

    file: str
    key: str

    def sub(self, part: str | int) -> At:
        """The place of a list item (int) or a mapping key (str) under this one."""
        key = f"{self.key}[{part}]" if isinstance(part, int) else f"{self.key}.{part}"
        return At(self.file, key)

    def error(self, value: object, rule: str, fix: str = "") -> ConfigError:
        """The error for `value` found here."""
        return ConfigError(file=self.file, key=self.key, value=value, rule=rule, fix=fix)


# ---------------------------------------------------------------------------------------------
# Values as YAML gives them: numeric strings, the run schema's types


def _parse_number(value: Any) -> int | float | None:
    """A YAML number, or a numeric string such as `1e-5` (PyYAML reads those as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        return int(text) if _INTEGER.fullmatch(text) else float(text)
    return None


def _takes_strings(annotation: Any) -> bool:
    """Whether a config key holds strings (keep `"1e-5"` as written there)."""
    if annotation is str or typing.get_origin(annotation) is Literal:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_takes_strings(a) for a in typing.get_args(annotation))
    return False


def _takes_integers(annotation: Any) -> bool:
    """Whether a config key holds integers and not reals."""
    if annotation is int:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return int in typing.get_args(annotation) and float not in typing.get_args(annotation)
    return False


def coerce(value: Any, annotation: Any) -> Any:
    """Numeric strings -> numbers where the key takes numbers; lists element by element."""
    if isinstance(value, (list, tuple)):
        args = typing.get_args(annotation)
        inner = args[0] if typing.get_origin(annotation) is list and args else annotation
        return [coerce(v, inner) for v in value]
    if isinstance(value, str) and not _takes_strings(annotation):
        number = _parse_number(value)
        if isinstance(number, float) and number.is_integer() and _takes_integers(annotation):
            return int(number)  # `frames: 1e5` for an integer key
        return value if number is None else number
    return value


def check_fits(at: At, value: Any, annotation: Any, *, config_key: str, fix: str = "") -> None:
    """Raise when the config key cannot hold `value` (the run schema's own type check)."""
    try:
        convert_value(annotation, value, config_key, at.file)
    except ConfigError as err:
        fix = fix or err.fix or f"give `{config_key}` a value of its type in the run config"
        raise at.error(value, f"{err.rule} (for `{config_key}`)", fix) from None


# ---------------------------------------------------------------------------------------------
# A spec and the checks every type shares


@dataclass(frozen=True)
class _Spec:
    """One parameter's spec as written, with its place in the file and the config key it sets."""

    at: At
    fields: Mapping[str, Any]
    kind: str
    name: str
    section: str
    key: str
    annotation: Any

    def need(self, field: str) -> Any:
        """The value of `field`, which this type requires."""
        if field not in self.fields:
            raise self.at.sub(field).error(
                None, f"a `{self.kind}` parameter needs `{field}`",
                f"add `{field}:` (a `{self.kind}` takes {', '.join(SPEC_KEYS[self.kind])})")
        return self.fields[field]

    def samples_fit(self, sample: Any, what: str, fix: str) -> None:
        """Raise when the values the range samples (`what`, like `sample`) do not fit its key."""
        try:
            convert_value(self.annotation, sample, self.key, self.at.file)
        except ConfigError as err:
            raise self.at.sub("type").error(
                self.kind, f"`{self.key}` {err.rule.removeprefix('it ')}, "
                f"and a {self.kind} range samples {what}", fix) from None


def _range_number(at: At, value: Any) -> float:
    number = _parse_number(value)
    if number is None or not math.isfinite(number):
        raise at.error(value, "it must be a finite number", "write it like 0.001 or 1.0e-3")
    return float(number)


def _integer(at: At, value: Any, rule: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.error(value, rule, "write a whole number such as 4")
    return value


# ---------------------------------------------------------------------------------------------
# Each type


def _float_ends(spec: _Spec) -> tuple[float, float]:
    """`low` and `high` of a real range, low below high."""
    low = _range_number(spec.at.sub("low"), spec.need("low"))
    high = _range_number(spec.at.sub("high"), spec.need("high"))
    if low >= high:
        raise spec.at.sub("high").error(spec.fields["high"], f"it must be greater than `low` ({low!r})",
                                        "swap low and high, or widen the range")
    return low, high


def _float_param(cls: type[FloatParam], spec: _Spec, low: float, high: float) -> Param:
    """A real range from checked ends: the key takes reals, the prior lies inside."""
    spec.samples_fit(0.5, "real numbers", fix="use type randint (integers, optional step) or choice")
    prior, has_prior = None, "prior" in spec.fields
    if has_prior:
        prior = _range_number(spec.at.sub("prior"), spec.fields["prior"])
        if not low <= prior <= high:
            raise spec.at.sub("prior").error(spec.fields["prior"], f"it must lie in [{low!r}, {high!r}]",
                                             "move the prior inside the range or widen the range")
    return cls(name=spec.name, key=spec.key, section=spec.section, low=low, high=high, prior=prior,
               has_prior=has_prior)


def _uniform(spec: _Spec) -> Param:
    """`type: uniform` with `low`, `high` and an optional `prior`."""
    return _float_param(UniformParam, spec, *_float_ends(spec))


def _loguniform(spec: _Spec) -> Param:
    """`type: loguniform`: as uniform, with both ends on one side of 0."""
    low, high = _float_ends(spec)
    if low <= 0 <= high:
        bad = "low" if low == 0 or high > 0 else "high"
        raise spec.at.sub(bad).error(spec.fields[bad], f"a loguniform range must not touch or cross 0 "
                                     f"(here {low!r} .. {high!r})",
                                     "use two positive ends (1e-5 .. 1e-3), or two negative ends for "
                                     "a penalty (-1e-3 .. -1e-6)")
    return _float_param(LogUniformParam, spec, low, high)


def _randint(spec: _Spec) -> Param:
    """`type: randint` with integer `low`, `high`, an optional `step` that divides the range, and
    an optional `prior` on the step grid."""
    at, rule = spec.at, "randint bounds must be integers"
    low = _integer(at.sub("low"), spec.need("low"), rule)
    high = _integer(at.sub("high"), spec.need("high"), rule)
    step = _integer(at.sub("step"), spec.fields.get("step", 1), "the step must be an integer >= 1")
    if low >= high:
        raise at.sub("high").error(high, f"it must be greater than `low` ({low})",
                                   "swap low and high, or widen the range")
    if step < 1 or (high - low) % step:
        fit = low + (high - low) // max(step, 1) * max(step, 1)
        raise at.sub("step").error(step, f"the step must be >= 1 and divide high - low "
                                   f"({high - low}): both ends are included",
                                   f"set high to {fit} or pick a step that divides {high - low}")
    spec.samples_fit(low, "integers", fix="use type choice or categorical with the values it takes")
    prior, has_prior = None, "prior" in spec.fields
    if has_prior:
        prior = _integer(at.sub("prior"), spec.fields["prior"], "a randint prior must be an integer")
        if not low <= prior <= high or (prior - low) % step:
            raise at.sub("prior").error(prior, f"it must be one of {low}, {low + step}, ... {high}",
                                        "pick a prior on the range's step grid")
    return RandIntParam(name=spec.name, key=spec.key, section=spec.section, low=low, high=high,
                        step=step, prior=prior, has_prior=has_prior)


def _is_scalar(item: Any) -> bool:
    return item is None or isinstance(item, (bool, int, float, str))


def _scalar_item(at: At, item: Any) -> None:
    """A `choice` value: a scalar."""
    if not _is_scalar(item):
        raise at.error(item, "choice values must be scalars (numbers, strings, true/false)",
                       "use type categorical (with `choices`) for lists such as layer sizes")


def _scalar_or_list_item(at: At, item: Any) -> None:
    """A `categorical` choice: a scalar or a list."""
    if not _is_scalar(item) and not isinstance(item, list):
        raise at.error(item, "categorical choices must be scalars or lists",
                       "write each choice as a number, a string or a list like [256, 128, 64]")


def _list_param(cls: type[ListParam], spec: _Spec, field: str,
                check_item: Callable[[At, Any], None]) -> Param:
    """A non-empty list under `field`, each entry once and of the key's type; the prior among them."""
    items = spec.need(field)
    at = spec.at.sub(field)
    if not isinstance(items, list) or not items:
        raise at.error(items, f"it must be a non-empty list of {field}", f"write e.g. `{field}: [16, 32, 64]`")
    values: list[Any] = []
    for i, item in enumerate(items):
        check_item(at.sub(i), item)
        value = coerce(item, spec.annotation)
        check_fits(at.sub(i), value, spec.annotation, config_key=spec.key)
        value = freeze(value)
        if value in values or label(value) in [label(v) for v in values]:
            raise at.sub(i).error(item, f"it repeats an earlier entry of `{field}`", "list each value once")
        values.append(value)
    prior, has_prior = None, "prior" in spec.fields
    if has_prior:
        wanted = freeze(coerce(spec.fields["prior"], spec.annotation))
        if wanted not in values:
            raise spec.at.sub("prior").error(spec.fields["prior"], f"it must be one of the {field}: "
                                             f"{', '.join(str(thaw(v)) for v in values)}",
                                             f"pick the prior from `{field}` or add it there")
        prior = values[values.index(wanted)]
    return cls(name=spec.name, key=spec.key, section=spec.section, values=tuple(values), prior=prior,
               has_prior=has_prior)


def _choice(spec: _Spec) -> Param:
    """`type: choice` with scalar `values` and an optional `prior` among them."""
    return _list_param(ChoiceParam, spec, "values", _scalar_item)


def _categorical(spec: _Spec) -> Param:
    """`type: categorical` with `choices` (scalars or lists) and an optional `prior` among them."""
    return _list_param(CategoricalParam, spec, "choices", _scalar_or_list_item)


# ---------------------------------------------------------------------------------------------
# The table of types


@dataclass(frozen=True)
class _Type:
    """What a `type:` takes and how it is built."""

    keys: tuple[str, ...]
    """Keys of the spec besides `type`."""
    build: Callable[[_Spec], Param]
    """Checks the spec and builds the parameter."""


TYPES: dict[Kind, _Type] = {
    "uniform": _Type(("low", "high", "prior"), _uniform),
    "loguniform": _Type(("low", "high", "prior"), _loguniform),
    "choice": _Type(("values", "prior"), _choice),
    "categorical": _Type(("choices", "prior"), _categorical),
    "randint": _Type(("low", "high", "step", "prior"), _randint),
}
"""Every `type:` of a searched parameter, in the order error messages list them."""
KINDS: tuple[Kind, ...] = tuple(TYPES)
SPEC_KEYS: dict[str, tuple[str, ...]] = {kind: ("type", *t.keys) for kind, t in TYPES.items()}
"""The keys each parameter type takes."""
_SWAPPED = {("choice", "choices"): "a `choice` lists `values` (`choices` is for categorical)",
            ("categorical", "values"): "a `categorical` lists `choices` (`values` is for choice)"}


def parse_param(at: At, name: str, spec: Any, *, section: str, config_key: str,
                annotation: Any) -> Param:
    """Check the spec of searched parameter `name` (at `at`) and build it; `annotation` is the
    run schema's type of `config_key`."""
    if not isinstance(spec, Mapping):
        raise at.error(spec, "a searched parameter must be a mapping with `type` and its range",
                       f"write `{name}: {{type: choice, values: [...]}}`, or put a single "
                       "value under `fixed`")
    kind = spec.get("type")
    if kind not in KINDS:  # a tuple: `type` may be unhashable
        raise at.sub("type").error(kind, f"the type must be one of {', '.join(KINDS)}",
                                   "e.g. `type: loguniform` with `low` and `high`")
    for field in spec:
        if field not in SPEC_KEYS[kind]:
            fix = _SWAPPED.get((kind, field), "remove it or correct its spelling")
            raise at.sub(str(field)).error(spec[field], f"a `{kind}` parameter takes only "
                                           f"{', '.join(SPEC_KEYS[kind])}", fix)
    return TYPES[kind].build(_Spec(at, spec, kind, name, section, config_key, annotation))
