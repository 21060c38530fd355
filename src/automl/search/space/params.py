"""Searched parameters: one class per `type:` of a space file, and the forms their values take.

A value has three forms: native (what the run config gets: signed numbers, lists), Optuna's (what a
study stores: the magnitude of a negative loguniform range, a string label for a list) and Hydra's
(override text). Each parameter class converts between them for its own kind and gives its Optuna
distribution, its grid and its prior. Checking a space file's specs is specs.py's job; Optuna
is imported only by the methods that need it, so building parameters stays cheap.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from automl.search.space.names import ENV_PARAMS_PREFIX, REWARD_PREFIX

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

Kind = Literal["uniform", "loguniform", "choice", "categorical", "randint"]
"""The `type:` of a searched parameter."""

_PLAIN_STRING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HYDRA_WORDS = {"true", "false", "null", "nan", "inf"}


# ---------------------------------------------------------------------------------------------
# Value forms: frozen lists, Optuna labels, Hydra text


def freeze(value: Any) -> Any:
    """Lists (at any depth) as tuples, so a parameter stays immutable."""
    return tuple(freeze(v) for v in value) if isinstance(value, (list, tuple)) else value


def thaw(value: Any) -> Any:
    """Tuples back to fresh lists; numpy scalars to Python scalars."""
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def label(value: Any) -> Any:
    """Optuna's stand-in for a categorical choice: lists become stable strings like `[256, 128]`."""
    return json.dumps(thaw(value)) if isinstance(value, tuple) else value


def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar; floats round-trip exactly, lists have no spaces."""
    value = thaw(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if _PLAIN_STRING.fullmatch(value) and value.lower() not in _HYDRA_WORDS:
            return value
        return "'" + re.sub(r"(\\+)(?='|$)", r"\1\1", value).replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{hydra_value(str(k))}:{hydra_value(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    raise TypeError(f"no Hydra form for {value!r} ({type(value).__name__})")


def hydra_override(key: str, value: Any) -> str:
    """The Hydra override setting config `key` to `value`, e.g. `ppo.learning_rate=0.0003`."""
    # env.params holds whatever the task takes, reward.scales whatever terms it has (an Isaac Lab
    # task's terms are not in the composed config): `++` adds the key where the config lacks it.
    prefix = "++" if key.startswith((ENV_PARAMS_PREFIX, REWARD_PREFIX)) else ""
    return f"{prefix}{key}={hydra_value(value)}"


def override_key(override: str) -> str:
    """The config key a Hydra override sets: `+env.params.max_steps=48` -> `env.params.max_steps`."""
    return override.partition("=")[0].lstrip("+~")


# ---------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True, kw_only=True)
class Param(ABC):
    """One searched parameter: its names and prior; its subclass knows how its kind samples."""

    kind: ClassVar[Kind]
    """The `type:` the space file gives it."""
    log: ClassVar[bool] = False
    """Sampled on a log scale (loguniform)."""

    name: str
    """Name as written in the file; also the Optuna parameter name and the name in constraints."""
    key: str
    """Config key it sets, e.g. `ppo.learning_rate` or `reward.scales.torques`."""
    section: str
    """`ppo_params` or `reward_weights`."""
    prior: Any = None
    """Native value of the prior (lists as tuples); see `has_prior`."""
    has_prior: bool = False
    """Whether the file gives a prior (a prior may itself be null)."""

    @property
    def sign(self) -> int:
        """-1 where Optuna samples the magnitude of a negative range and the value is negated."""
        return 1

    @abstractmethod
    def distribution(self) -> BaseDistribution:
        """The Optuna distribution (the name, type and range a stored study holds)."""

    @abstractmethod
    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample through `trial.suggest_*`; returns the Optuna-space value."""

    @abstractmethod
    def to_native(self, value: Any) -> Any:
        """Optuna-space value -> the signed native value (lists restored, Python types)."""

    @abstractmethod
    def to_optuna(self, value: Any) -> Any:
        """Native value -> Optuna-space value (magnitude of a negative range, label of a list)."""

    def grid_values(self) -> list[Any] | None:
        """Optuna-space values for a grid, or None for a continuous range."""
        return None

    @abstractmethod
    def edge_values(self) -> list[Any]:
        """Native values at the edges of the parameter: a range's ends, or every choice."""

    @abstractmethod
    def holds(self, value: Any) -> bool:
        """Whether native `value` is one of the parameter's values."""

    @abstractmethod
    def nearest(self, value: Any) -> Any:
        """The parameter's value nearest to native `value` (which it may not hold, or None)."""

    def probe_values(self) -> list[Any]:
        """A few native values covering the parameter (edges, prior) for load-time checks."""
        return self.edge_values() + ([thaw(self.prior)] if self.has_prior else [])

    def prior_for_optuna(self) -> Any:
        """Optuna-space value of the prior (for `study.enqueue_trial`); see `has_prior`."""
        return self.to_optuna(thaw(self.prior))

    def override(self, value: Any) -> str:
        """The Hydra override setting this parameter's config key to native `value`."""
        return hydra_override(self.key, value)


@dataclass(frozen=True, kw_only=True)
class FloatParam(Param):
    """Real numbers from `low` to `high`, both inclusive and signed."""

    low: float
    """Lower end."""
    high: float
    """Upper end."""

    def distribution(self) -> FloatDistribution:
        """Reals between the ends; for a negative range, between the magnitudes of the ends."""
        from optuna.distributions import FloatDistribution

        low, high = sorted((self.sign * self.low, self.sign * self.high))
        return FloatDistribution(float(low), float(high), log=self.log)

    def suggest(self, trial: optuna.Trial) -> Any:
        """`trial.suggest_float` over the distribution (a magnitude for a negative range)."""
        dist = self.distribution()
        return trial.suggest_float(self.name, dist.low, dist.high, log=dist.log)

    def to_native(self, value: Any) -> Any:
        """A Python float, negated for a negative range."""
        return self.sign * float(thaw(value))

    def to_optuna(self, value: Any) -> Any:
        """A float, the magnitude for a negative range."""
        return self.sign * float(value)

    def edge_values(self) -> list[Any]:
        """`low` and `high`."""
        return [self.low, self.high]

    def holds(self, value: Any) -> bool:
        """A number between the ends."""
        return _number(value) and min(self.low, self.high) <= value <= max(self.low, self.high)

    def nearest(self, value: Any) -> Any:
        """`value` clipped to the range; its middle (geometric, on a log scale) where unset."""
        low, high = sorted((self.low, self.high))
        if not _number(value):
            value = math.copysign(math.sqrt(low * high), low) if self.log else (low + high) / 2
        return float(min(max(value, low), high))


@dataclass(frozen=True, kw_only=True)
class UniformParam(FloatParam):
    """`type: uniform`: real numbers sampled evenly between the ends."""

    kind: ClassVar[Kind] = "uniform"


@dataclass(frozen=True, kw_only=True)
class LogUniformParam(FloatParam):
    """`type: loguniform`: real numbers on a log scale; a negative range samples the magnitude."""

    kind: ClassVar[Kind] = "loguniform"
    log: ClassVar[bool] = True

    @property
    def sign(self) -> int:
        """-1 for a range below 0 (a penalty weight), else 1."""
        return -1 if self.high < 0 else 1


@dataclass(frozen=True, kw_only=True)
class RandIntParam(Param):
    """`type: randint`: integers from `low` to `high` (both inclusive) in steps of `step`."""

    kind: ClassVar[Kind] = "randint"

    low: int
    """Lower end."""
    high: int
    """Upper end, on the step grid."""
    step: int = 1
    """Grid step."""

    def distribution(self) -> IntDistribution:
        """Integers from `low` to `high` in steps of `step`."""
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, step=self.step)

    def suggest(self, trial: optuna.Trial) -> Any:
        """`trial.suggest_int` over the step grid."""
        dist = self.distribution()
        return trial.suggest_int(self.name, dist.low, dist.high, step=dist.step)

    def to_native(self, value: Any) -> Any:
        """A Python int."""
        return int(thaw(value))

    def to_optuna(self, value: Any) -> Any:
        """An int."""
        return int(value)

    def grid_values(self) -> list[Any] | None:
        """Every point of the step grid, both ends included."""
        return list(range(self.low, self.high + 1, self.step))

    def edge_values(self) -> list[Any]:
        """`low` and `high`."""
        return [self.low, self.high]

    def holds(self, value: Any) -> bool:
        """A point of the step grid."""
        return _number(value) and self.low <= value <= self.high and (value - self.low) % self.step == 0

    def nearest(self, value: Any) -> Any:
        """The grid point nearest to `value` (halves up); the middle one where unset."""
        target = min(max(value, self.low), self.high) if _number(value) else (self.low + self.high) / 2
        return int(self.low + math.floor((target - self.low) / self.step + 0.5) * self.step)


@dataclass(frozen=True, kw_only=True)
class ListParam(Param):
    """One of a list of values; Optuna stores a list-valued choice as its string label."""

    values: tuple[Any, ...]
    """The values, lists frozen as tuples."""

    def labels(self) -> list[Any]:
        """Optuna-space form of each value."""
        return [label(v) for v in self.values]

    def distribution(self) -> CategoricalDistribution:
        """The labels of the values."""
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.labels())

    def suggest(self, trial: optuna.Trial) -> Any:
        """`trial.suggest_categorical` over the labels; returns a label."""
        return trial.suggest_categorical(self.name, self.labels())

    def to_native(self, value: Any) -> Any:
        """The value whose label is `value`, lists as fresh lists; ValueError if none is."""
        value = thaw(value)
        for item in self.values:
            if label(item) == value:
                return thaw(item)
        raise ValueError(f"{value!r} is not among the {self.kind} values of `{self.name}`")

    def to_optuna(self, value: Any) -> Any:
        """The label of `value`; ValueError if it is not one of the values."""
        frozen = freeze(value)
        for item in self.values:
            if item == frozen:
                return label(item)
        raise ValueError(f"{value!r} is not among the {self.kind} values of `{self.name}`")

    def grid_values(self) -> list[Any] | None:
        """Every value's label."""
        return self.labels()

    def edge_values(self) -> list[Any]:
        """Every value, lists as fresh lists."""
        return [thaw(v) for v in self.values]

    def holds(self, value: Any) -> bool:
        """One of the values."""
        return freeze(value) in self.values

    def nearest(self, value: Any) -> Any:
        """The value nearest in number (on a log scale where both are positive), layer sizes by
        their total units; the first value where either is not a number."""
        choices = self.edge_values()
        size, sizes = _magnitude(value), [_magnitude(c) for c in choices]
        if size is None or any(m is None for m in sizes):
            return choices[0]
        distances = [abs(math.log(size / m)) if size > 0 and m > 0 else abs(size - m)
                     for m in sizes if m is not None]
        return choices[distances.index(min(distances))]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _magnitude(value: Any) -> float | None:
    """A number, or the sum of a list of numbers (layer sizes); None for anything else."""
    if _number(value):
        return float(value)
    if isinstance(value, list | tuple) and value and all(_number(v) for v in value):
        return float(sum(value))
    return None


@dataclass(frozen=True, kw_only=True)
class ChoiceParam(ListParam):
    """`type: choice`: one of `values`, each a scalar (number, string, true/false)."""

    kind: ClassVar[Kind] = "choice"


@dataclass(frozen=True, kw_only=True)
class CategoricalParam(ListParam):
    """`type: categorical`: one of `choices`, scalars or lists (such as layer sizes)."""

    kind: ClassVar[Kind] = "categorical"
