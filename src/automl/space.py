"""Search-space files (the unified navigation AutoML schema) parsed into typed parameter specs and constraints.

A space file holds `search_space_id`, `fixed`, `ppo_params`, `reward_weights` and `constraints`
(see `templates/`). This module checks it once, at load time, and maps every parameter to its
config key, its Optuna distribution and its Hydra override. Optuna is imported only by the methods
that need it, so parsing a space stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from automl import paths
from automl.constraints import Constraint
from automl.errors import ConfigError
from automl.schema import check_value as convert_value
from automl.space_names import (
    ENV_PARAMS_PREFIX,
    MODEL_KEYS,
    REWARD_PREFIX,
    RUN_KEYS,
    by_alias,
    did_you_mean,
    name_aliases,
    override_values,
    probe_combinations,
    resolve_name,
)
from automl.space_params import (
    CategoricalParam,
    ChoiceParam,
    Kind,
    LogUniformParam,
    Param,
    RandIntParam,
    UniformParam,
    freeze,
    hydra_override,
    hydra_value,
    label,
    thaw,
)

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

__all__ = ["ENV_PARAMS_PREFIX", "KINDS", "MODEL_KEYS", "REWARD_PREFIX", "RUN_KEYS", "SECTIONS", "SPEC_KEYS",
           "Kind", "ParamSpec", "SearchSpace", "hydra_value", "load_space", "parse_space", "resolve_name"]

SECTIONS = ("search_space_id", "fixed", "ppo_params", "reward_weights", "constraints")
"""The top-level keys of a space file."""
PARAM_SECTIONS = ("ppo_params", "reward_weights")
"""Sections whose entries are searched."""
ParamSpec = Param
"""The former name of `Param` (analysis/folder.py imports it)."""

KINDS: tuple[Kind, ...] = ("uniform", "loguniform", "choice", "categorical", "randint")
SPEC_KEYS: dict[str, tuple[str, ...]] = {
    "uniform": ("type", "low", "high", "prior"),
    "loguniform": ("type", "low", "high", "prior"),
    "choice": ("type", "values", "prior"),
    "categorical": ("type", "choices", "prior"),
    "randint": ("type", "low", "high", "step", "prior"),
}
"""The keys each parameter type takes."""


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class _At:
    """A place in the space file, for error messages."""

    file: str
    key: str

    def sub(self, part: str | int) -> _At:
        key = f"{self.key}[{part}]" if isinstance(part, int) else f"{self.key}.{part}"
        return _At(self.file, key)

    def error(self, value: object, rule: str, fix: str = "") -> ConfigError:
        return ConfigError(file=self.file, key=self.key, value=value, rule=rule, fix=fix)


# ---------------------------------------------------------------------------------------------
# Values: numeric strings, frozen lists, labels, Hydra text


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


def _coerce(value: Any, annotation: Any) -> Any:
    """Numeric strings -> numbers where the key takes numbers; lists element by element."""
    if isinstance(value, (list, tuple)):
        args = typing.get_args(annotation)
        inner = args[0] if typing.get_origin(annotation) is list and args else annotation
        return [_coerce(v, inner) for v in value]
    if isinstance(value, str) and not _takes_strings(annotation):
        number = _parse_number(value)
        if isinstance(number, float) and number.is_integer() and _takes_integers(annotation):
            return int(number)  # `frames: 1e5` for an integer key
        return value if number is None else number
    return value


def _takes_integers(annotation: Any) -> bool:
    if annotation is int:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return int in typing.get_args(annotation) and float not in typing.get_args(annotation)
    return False


# ---------------------------------------------------------------------------------------------
# Parameter specs


def _fits(at: _At, value: Any, annotation: Any, *, config_key: str, fix: str = "") -> None:
    """Raise when the config key cannot hold `value` (the run schema's own type check)."""
    try:
        convert_value(annotation, value, config_key, at.file)
    except ConfigError as err:
        fix = fix or err.fix or f"give `{config_key}` a value of its type in the run config"
        raise at.error(value, f"{err.rule} (for `{config_key}`)", fix) from None


def _kind_fits(at: _At, kind: str, sample: Any, annotation: Any, *, config_key: str,
               fix: str) -> None:
    """Raise when the values a range samples (reals or integers) do not fit the config key."""
    try:
        convert_value(annotation, sample, config_key, at.file)
    except ConfigError as err:
        what = "integers" if kind == "randint" else "real numbers"
        raise at.sub("type").error(kind, f"`{config_key}` {err.rule.removeprefix('it ')}, "
                                   f"and a {kind} range samples {what}", fix) from None


def _need(at: _At, spec: Mapping[str, Any], field: str, kind: str) -> Any:
    if field not in spec:
        raise at.sub(field).error(None, f"a `{kind}` parameter needs `{field}`",
                                  f"add `{field}:` (a `{kind}` takes {', '.join(SPEC_KEYS[kind])})")
    return spec[field]


def _range_number(at: _At, value: Any) -> float:
    number = _parse_number(value)
    if number is None or not math.isfinite(number):
        raise at.error(value, "it must be a finite number", "write it like 0.001 or 1.0e-3")
    return float(number)


def _parse_range(at: _At, spec: Mapping[str, Any], *, base: dict[str, Any], annotation: Any,
                 config_key: str) -> Param:
    kind = spec["type"]
    low = _range_number(at.sub("low"), _need(at, spec, "low", kind))
    high = _range_number(at.sub("high"), _need(at, spec, "high", kind))
    if low >= high:
        raise at.sub("high").error(spec["high"], f"it must be greater than `low` ({low!r})",
                                   "swap low and high, or widen the range")
    if kind == "loguniform" and low <= 0 <= high:
        bad = "low" if low == 0 or high > 0 else "high"
        raise at.sub(bad).error(spec[bad], f"a loguniform range must not touch or cross 0 "
                                f"(here {low!r} .. {high!r})",
                                "use two positive ends (1e-5 .. 1e-3), or two negative ends for "
                                "a penalty (-1e-3 .. -1e-6)")
    _kind_fits(at, kind, 0.5, annotation, config_key=config_key,
               fix="use type randint (integers, optional step) or choice")
    prior, has_prior = None, "prior" in spec
    if has_prior:
        prior = _range_number(at.sub("prior"), spec["prior"])
        if not low <= prior <= high:
            raise at.sub("prior").error(spec["prior"], f"it must lie in [{low!r}, {high!r}]",
                                        "move the prior inside the range or widen the range")
    cls = LogUniformParam if kind == "loguniform" else UniformParam
    return cls(**base, low=low, high=high, prior=prior, has_prior=has_prior)


def _list_item(at: _At, item: Any, *, kind: str, annotation: Any, config_key: str) -> Any:
    scalar = item is None or isinstance(item, (bool, int, float, str))
    if kind == "choice" and not scalar:
        raise at.error(item, "choice values must be scalars (numbers, strings, true/false)",
                       "use type categorical (with `choices`) for lists such as layer sizes")
    if not scalar and not isinstance(item, list):
        raise at.error(item, "categorical choices must be scalars or lists",
                       "write each choice as a number, a string or a list like [256, 128, 64]")
    item = _coerce(item, annotation)
    _fits(at, item, annotation, config_key=config_key)
    return freeze(item)


def _parse_values(at: _At, spec: Mapping[str, Any], *, base: dict[str, Any], annotation: Any,
                  config_key: str) -> Param:
    kind = spec["type"]
    field = "values" if kind == "choice" else "choices"
    items = _need(at, spec, field, kind)
    if not isinstance(items, list) or not items:
        raise at.sub(field).error(items, f"it must be a non-empty list of {field}",
                                  f"write e.g. `{field}: [16, 32, 64]`")
    values: list[Any] = []
    for i, item in enumerate(items):
        value = _list_item(at.sub(field).sub(i), item, kind=kind, annotation=annotation,
                           config_key=config_key)
        if value in values or label(value) in [label(v) for v in values]:
            raise at.sub(field).sub(i).error(item, f"it repeats an earlier entry of `{field}`",
                                             "list each value once")
        values.append(value)
    prior, has_prior = None, "prior" in spec
    if has_prior:
        wanted = freeze(_coerce(spec["prior"], annotation))
        if wanted not in values:
            raise at.sub("prior").error(spec["prior"], f"it must be one of the {field}: "
                                        f"{', '.join(str(thaw(v)) for v in values)}",
                                        f"pick the prior from `{field}` or add it there")
        prior = values[values.index(wanted)]
    cls = ChoiceParam if kind == "choice" else CategoricalParam
    return cls(**base, values=tuple(values), prior=prior, has_prior=has_prior)


def _integer(at: _At, value: Any, rule: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise at.error(value, rule, "write a whole number such as 4")
    return value


def _parse_randint(at: _At, spec: Mapping[str, Any], *, base: dict[str, Any], annotation: Any,
                   config_key: str) -> Param:
    rule = "randint bounds must be integers"
    low = _integer(at.sub("low"), _need(at, spec, "low", "randint"), rule)
    high = _integer(at.sub("high"), _need(at, spec, "high", "randint"), rule)
    step = _integer(at.sub("step"), spec.get("step", 1), "the step must be an integer >= 1")
    if low >= high:
        raise at.sub("high").error(high, f"it must be greater than `low` ({low})",
                                   "swap low and high, or widen the range")
    if step < 1 or (high - low) % step:
        fit = low + (high - low) // max(step, 1) * max(step, 1)
        raise at.sub("step").error(step, f"the step must be >= 1 and divide high - low "
                                   f"({high - low}): both ends are included",
                                   f"set high to {fit} or pick a step that divides {high - low}")
    _kind_fits(at, "randint", low, annotation, config_key=config_key,
               fix="use type choice or categorical with the values it takes")
    prior, has_prior = None, "prior" in spec
    if has_prior:
        prior = _integer(at.sub("prior"), spec["prior"], "a randint prior must be an integer")
        if not low <= prior <= high or (prior - low) % step:
            raise at.sub("prior").error(prior, f"it must be one of {low}, {low + step}, ... {high}",
                                        "pick a prior on the range's step grid")
    return RandIntParam(**base, low=low, high=high, step=step, prior=prior, has_prior=has_prior)


_SWAPPED = {("choice", "choices"): "a `choice` lists `values` (`choices` is for categorical)",
            ("categorical", "values"): "a `categorical` lists `choices` (`values` is for choice)"}
_PARSERS = {"uniform": _parse_range, "loguniform": _parse_range, "choice": _parse_values,
            "categorical": _parse_values, "randint": _parse_randint}


def _parse_param(at: _At, name: str, spec: Any, *, section: str, config_key: str,
                 annotation: Any) -> Param:
    if not isinstance(spec, Mapping):
        raise at.error(spec, "a searched parameter must be a mapping with `type` and its range",
                       f"write `{name}: {{type: choice, values: [...]}}`, or put a single "
                       "value under `fixed`")
    kind = spec.get("type")
    if kind not in KINDS:
        raise at.sub("type").error(kind, f"the type must be one of {', '.join(KINDS)}",
                                   "e.g. `type: loguniform` with `low` and `high`")
    for field in spec:
        if field not in SPEC_KEYS[kind]:
            fix = _SWAPPED.get((kind, field), "remove it or correct its spelling")
            raise at.sub(str(field)).error(spec[field], f"a `{kind}` parameter takes only "
                                           f"{', '.join(SPEC_KEYS[kind])}", fix)
    base = {"name": name, "key": config_key, "section": section}
    return _PARSERS[kind](at, spec, base=base, annotation=annotation, config_key=config_key)


# ---------------------------------------------------------------------------------------------
# The space


@dataclass(frozen=True)
class SearchSpace:
    """A checked search space: searched parameters, fixed values and constraints."""

    space_id: str
    """`search_space_id` of the file."""
    source: str
    """The file it was read from (for messages)."""
    params: list[Param]
    """Searched parameters in file order (`ppo_params`, then `reward_weights`)."""
    fixed: dict[str, Any]
    """Fixed values by config key (`train.seed` -> 42)."""
    fixed_names: dict[str, str]
    """Bare name of each fixed value as written in the file -> its config key."""
    constraints: list[Constraint]
    """Combinations to skip."""
    text: str
    """The file's text, copied into the study folder as search_space.yaml."""
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)
    """Every name a constraint may use -> the parameter's name in the file (space_names.py)."""

    @property
    def names(self) -> list[str]:
        """Optuna parameter names, in file order."""
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        """The spec of parameter `name`."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"`{name}` is not a parameter of space {self.space_id!r}: {self.names}")

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions by parameter name (categorical lists as string labels)."""
        return {p.name: p.distribution() for p in self.params}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter through `trial.suggest_*`; returns signed native values."""
        return self.from_optuna({p.name: p.suggest(trial) for p in self.params})

    def from_optuna(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna's stored values (`trial.params`) -> signed native values, as `suggest` returns."""
        return {p.name: p.to_native(params[p.name]) for p in self.params}

    def to_optuna(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Native values -> Optuna-space values (for `enqueue_trial`); unknown names raise."""
        return {name: self.param(name).to_optuna(value) for name, value in values.items()}

    def prior_params(self) -> dict[str, Any]:
        """Optuna-space values of every parameter with a prior, for `study.enqueue_trial`."""
        return {p.name: p.prior_for_optuna() for p in self.params if p.has_prior}

    def grid(self) -> dict[str, list[Any]]:
        """Search space for `optuna.samplers.GridSampler` (Optuna-space values)."""
        grid: dict[str, list[Any]] = {}
        for p in self.params:
            values = p.grid_values()
            if values is None:
                raise ConfigError(file=self.source, key=f"{p.section}.{p.name}.type", value=p.kind,
                                  rule="grid search needs a finite list of values for every "
                                  "parameter",
                                  fix=f"give `{p.name}` type choice with `values: [...]`, "
                                  "or use random or bayesian search")
            grid[p.name] = values
        return grid

    def grid_size(self) -> int:
        """Number of grid points (combinations), before constraints."""
        return math.prod(len(values) for values in self.grid().values())

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """Hydra overrides for sampled native values, e.g. `ppo.learning_rate=0.0003`."""
        return [p.override(values[p.name]) for p in self.params]

    def fixed_overrides(self) -> list[str]:
        """Hydra overrides for the fixed values, e.g. `train.seed=42`."""
        return [hydra_override(key, value) for key, value in self.fixed.items()]

    def config_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Fixed and sampled values by config key (for configs/trial_NNNN.json)."""
        sampled = {p.key: thaw(values[p.name]) for p in self.params}
        return {**{k: thaw(v) for k, v in self.fixed.items()}, **sampled}

    def named_values(self, values: Mapping[str, Any], overrides: Collection[str] = ()) -> dict[str, Any]:
        """The effective values (fixed, sampled, then the command line's overrides) by every name a
        constraint may use."""
        fixed = {name: self.fixed[key] for name, key in self.fixed_names.items()}
        keys = {**{p.name: p.key for p in self.params}, **self.fixed_names}
        effective = {**fixed, **{p.name: values[p.name] for p in self.params},
                     **override_values(overrides, keys)}
        return by_alias(effective, self.aliases) if self.aliases else effective

    def check(self, values: Mapping[str, Any], overrides: Collection[str] = ()) -> list[str]:
        """Text of each constraint that `values` (native) violates, with the fixed values and the
        command line's `overrides` applied."""
        named = self.named_values(values, overrides)
        return [c.text for c in self.constraints if c.violated(named)]

    def inert_constraints(self, overrides: Collection[str] = ()) -> list[str]:
        """Constraints that no point of the space can violate (tried on every combination of the
        ends and choices of the parameters each reads): they skip nothing, most likely a typo or
        a range that changed."""
        read = {c.text: {self.aliases.get(n, n) for n in c.names} for c in self.constraints}
        base = {p.name: p.probe_values()[0] for p in self.params}
        inert = []
        for c in self.constraints:
            choices = {p.name: p.probe_values() for p in self.params if p.name in read[c.text]}
            if not any(c.violated(self.named_values({**base, **combo}, overrides))
                       for combo in probe_combinations(choices)):
                inert.append(c.text)
        return inert

    def dump(self, path: Path) -> None:
        """Write the file's original text (the study folder's search_space.yaml)."""
        paths.atomic_write_text(path, self.text)


# ---------------------------------------------------------------------------------------------
# Loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (PyYAML keeps the last silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, Hashable):
            continue  # construct_mapping below reports it
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} appears twice in one mapping", mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_space(path: Path, *, reward_terms: Collection[str]) -> SearchSpace:
    """Read and check a space file; `reward_terms` are the environment's `reward.scales` keys."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(file=source, key="<file>", value=source,
                          rule=f"it cannot be read ({reason})",
                          fix="check the path; the shipped spaces are in templates/") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<yaml>"
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(file=source, key=where, value=problem, rule="it is not valid YAML",
                          fix="fix the YAML syntax there (indentation, colons, quotes)") from None
    return parse_space(data, source=source, reward_terms=reward_terms, text=text)


def parse_space(data: Any, *, source: str, reward_terms: Collection[str],
                text: str | None = None) -> SearchSpace:
    """Check a space file's parsed content (`text`: its original text, else dumped from `data`)."""
    if not isinstance(data, Mapping):
        raise ConfigError(file=source, key="<root>", value=data,
                          rule="a search space must be a mapping of " + ", ".join(SECTIONS),
                          fix="start from a file in templates/")
    for section in data:
        if section not in SECTIONS:
            raise ConfigError(file=source, key=str(section), value=data[section],
                              rule=f"it is not a section of a search space; sections: "
                              f"{', '.join(SECTIONS)}", fix=did_you_mean(str(section), SECTIONS))
    space_id = data.get("search_space_id")
    if not isinstance(space_id, str) or not space_id:
        raise ConfigError(file=source, key="search_space_id", value=space_id,
                          rule="it must be a non-empty string",
                          fix="add `search_space_id: my_space`")
    keys: dict[str, str] = {}
    fixed, fixed_names = _parse_fixed(data, source=source, reward_terms=reward_terms, keys=keys)
    params: list[Param] = []
    for section in PARAM_SECTIONS:
        for name, spec in _section(data, section, source).items():
            at = _At(source, f"{section}.{name}")
            config_key, annotation = resolve_name(name, section=section,
                                                  reward_terms=reward_terms, source=source)
            _claim(at, name, config_key, keys)
            params.append(_parse_param(at, name, spec, section=section, config_key=config_key,
                                       annotation=annotation))
    aliases, ambiguous = name_aliases({**{p.name: p.key for p in params}, **fixed_names},
                                      {**MODEL_KEYS, **RUN_KEYS})
    constraints = [_constraint(c, aliases, ambiguous, source=source, index=i)
                   for i, c in enumerate(_constraint_list(data, source))]
    space = SearchSpace(space_id=space_id, source=source, params=params, fixed=fixed,
                        fixed_names=fixed_names, constraints=constraints,
                        text=text if text is not None else yaml.safe_dump(dict(data),
                                                                          sort_keys=False),
                        aliases=aliases)
    _probe_constraints(space)
    return space


def _constraint(text: object, aliases: Mapping[str, str], ambiguous: Mapping[str, list[str]], *,
                source: str, index: int) -> Constraint:
    """Parse one constraint over the space's names; a name that means two parameters is refused."""
    constraint = Constraint.parse(text, names=[*aliases, *ambiguous], source=source, index=index)
    for name in sorted(constraint.names & ambiguous.keys()):
        raise ConfigError(file=source, key=constraint.key, value=text,
                          rule=f"`{name}` could mean {' or '.join(ambiguous[name])}",
                          fix="name the parameter as the space file writes it, or by its full "
                              "dotted path")
    return constraint


def _section(data: Mapping[str, Any], section: str, source: str) -> Mapping[str, Any]:
    value = data.get(section)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(file=source, key=section, value=value,
                          rule="it must be a mapping of name -> value or parameter spec",
                          fix=f"write `{section}: {{}}` when it is empty")
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(file=source, key=f"{section}.{name}", value=name,
                              rule="a parameter name must be a string", fix="quote the name")
    return value


def _claim(at: _At, name: str, config_key: str, keys: dict[str, str]) -> None:
    """Record that `at` sets `config_key`; a key set twice is an error."""
    if config_key in keys:
        raise at.error(name, f"it sets `{config_key}`, which `{keys[config_key]}` already sets",
                       "keep only one of them (a searched parameter cannot also be fixed)")
    keys[config_key] = at.key


def _parse_fixed(data: Mapping[str, Any], *, source: str, reward_terms: Collection[str],
                 keys: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    fixed: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name, value in _section(data, "fixed", source).items():
        at = _At(source, f"fixed.{name}")
        config_key, annotation = resolve_name(name, section="fixed", reward_terms=reward_terms,
                                              source=source)
        _claim(at, name, config_key, keys)
        value = _coerce(value, annotation)
        _fits(at, value, annotation, config_key=config_key)
        fixed[config_key] = value
        names[name] = config_key
    return fixed, names


def _constraint_list(data: Mapping[str, Any], source: str) -> list[Any]:
    value = data.get("constraints")
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(file=source, key="constraints", value=value,
                          rule="it must be a list of expressions",
                          fix='write `constraints: ["learning_rate > 5e-4 and rollouts < 32"]`')
    return value


def _probe_constraints(space: SearchSpace) -> None:
    """Evaluate each constraint at the ends and choices of the parameters it reads, one parameter
    at a time, so values it cannot combine (a list compared with a number) fail at load time."""
    base = {p.name: p.probe_values()[0] for p in space.params}
    for constraint in space.constraints:
        for p in space.params:
            if p.name not in constraint.names:
                continue
            for value in p.probe_values():
                constraint.violated(space.named_values({**base, p.name: value}))
        if not any(p.name in constraint.names for p in space.params):
            constraint.violated(space.named_values(base))
