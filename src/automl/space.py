"""Search-space files (the unified navigation AutoML schema) parsed into typed parameter specs and constraints.

A space file holds `search_space_id`, `fixed`, `ppo_params`, `reward_weights` and `constraints`
(see `templates/`). This module checks it once, at load time, and maps every parameter to its
config key, its Optuna distribution and its Hydra override. Optuna is imported only by the methods
that need it, so parsing a space stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from automl import paths
from automl.constraints import Constraint
from automl.errors import ConfigError
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
    Kind,
    Param,
    hydra_override,
    hydra_value,
    thaw,
)
from automl.space_specs import KINDS, SPEC_KEYS, At, check_fits, coerce, parse_param

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
            at = At(source, f"{section}.{name}")
            config_key, annotation = resolve_name(name, section=section,
                                                  reward_terms=reward_terms, source=source)
            _claim(at, name, config_key, keys)
            params.append(parse_param(at, name, spec, section=section, config_key=config_key,
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


def _claim(at: At, name: str, config_key: str, keys: dict[str, str]) -> None:
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
        at = At(source, f"fixed.{name}")
        config_key, annotation = resolve_name(name, section="fixed", reward_terms=reward_terms,
                                              source=source)
        _claim(at, name, config_key, keys)
        value = coerce(value, annotation)
        check_fits(at, value, annotation, config_key=config_key)
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
