"""Reading a space file: its YAML, its sections, its fixed values, names and constraints, checked.

`read_space_file` turns a file into parsed YAML (a key repeated in one mapping is an error, not
silently the last one); `check_space` checks the parsed content section by section and returns its
parts, from which search_space.py builds a SearchSpace. Names resolve through names.py, parameter
specs through specs.py. Every error is a ConfigError naming the file, the key, the value,
the rule and a fix.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from automl.errors import ConfigError
from automl.search.space.constraints import Constraint
from automl.search.space.names import MODEL_KEYS, RUN_KEYS, did_you_mean, name_aliases, resolve_name
from automl.search.space.params import Param
from automl.search.space.specs import At, check_fits, coerce, parse_param

SECTIONS = ("search_space_id", "fixed", "ppo_params", "reward_weights", "constraints", "pbt")
"""The top-level keys of a space file."""
PARAM_SECTIONS = ("ppo_params", "reward_weights")
"""Sections whose entries are searched."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (PyYAML keeps the last silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A mapping node as a dict; a key it repeats is a YAML error at that key's line."""
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


def read_space_file(path: Path) -> tuple[Any, str]:
    """The parsed YAML of a space file and its text."""
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
    return data, text


@dataclass(frozen=True)
class SpaceParts:
    """The checked content of a space file, as SearchSpace takes it."""

    space_id: str
    """`search_space_id`."""
    params: list[Param]
    """Searched parameters in file order (`ppo_params`, then `reward_weights`)."""
    fixed: dict[str, Any]
    """Fixed values by config key."""
    fixed_names: dict[str, str]
    """Name of each fixed value as written -> its config key."""
    constraints: list[Constraint]
    """Parsed constraints."""
    aliases: dict[str, str]
    """Every name a constraint may use -> the parameter's name in the file."""
    pbt: PbtSection
    """The `pbt` section: how population-based training explores this space."""


PBT_KEYS = ("mutate", "mutation_probability", "resample_probability", "factors")
"""The keys of the optional `pbt` section."""


@dataclass(frozen=True)
class PbtSection:
    """A space file's `pbt` section: what population-based training's explore step changes, and
    how; each key left out is the command line's flag, else its default (--search-method pbt)."""

    mutate: tuple[str, ...] | None = None
    """The parameters a copied member may change (None: every mutable one)."""
    mutation_probability: float | None = None
    """Probability that each of them changes at a copy."""
    resample_probability: float | None = None
    """Probability that a changed value is drawn afresh rather than perturbed."""
    factors: tuple[float, float] | None = None
    """A perturbed value is multiplied or divided by a factor from U(low, high)."""


def refuse_unknown(data: Mapping[str, Any], known: Collection[str], *, source: str, prefix: str,
                   what: str, kinds: str) -> None:
    """One ConfigError for the first key of `data` not in `known`, with the closest known one."""
    for key in data:
        if key not in known:
            raise ConfigError(file=source, key=f"{prefix}{key}", value=data[key],
                              rule=f"it is not {what}; {kinds}: {', '.join(known)}",
                              fix=did_you_mean(str(key), known))


def _parse_pbt(data: Mapping[str, Any], params: list[Param], *, source: str) -> PbtSection:
    """The `pbt` section, checked: known keys, parameter names of this file, probabilities in
    [0, 1], factors 1 < low <= high. Whether a named parameter may change at all is the population's
    check (a network size cannot: automl.search.pbt.explore)."""
    section = data.get("pbt")
    if section is None:
        return PbtSection()
    if not isinstance(section, Mapping):
        raise ConfigError(file=source, key="pbt", value=section,
                          rule="it must be a mapping of " + ", ".join(PBT_KEYS),
                          fix="write e.g. `pbt: {mutation_probability: 0.25}`, or leave it out")
    refuse_unknown(section, PBT_KEYS, source=source, prefix="pbt.", what="a key of the pbt section",
                   kinds="keys")
    names = [p.name for p in params]
    mutate = section.get("mutate")
    if mutate is not None:
        if not isinstance(mutate, list) or not mutate or not all(isinstance(m, str) for m in mutate):
            raise ConfigError(file=source, key="pbt.mutate", value=mutate,
                              rule="it must be a non-empty list of parameter names",
                              fix=f"list some of {', '.join(names)}, or leave it out (every one)")
        for name in mutate:
            if name not in names:
                raise ConfigError(file=source, key="pbt.mutate", value=name,
                                  rule="it is not a searched parameter of this file",
                                  fix=did_you_mean(name, names))
    probabilities = {}
    for key in ("mutation_probability", "resample_probability"):
        value = section.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0 <= value <= 1):
            raise ConfigError(file=source, key=f"pbt.{key}", value=value,
                              rule="it must be a probability in [0, 1]", fix=f"use `{key}: 0.25`")
        probabilities[key] = None if value is None else float(value)
    factors = section.get("factors")
    if factors is not None:
        if not (isinstance(factors, list) and len(factors) == 2
                and all(isinstance(f, int | float) and not isinstance(f, bool) for f in factors)
                and 1 < factors[0] <= factors[1] < float("inf")):
            raise ConfigError(file=source, key="pbt.factors", value=factors,
                              rule="it must be two factors [low, high] with 1 < low <= high",
                              fix="use `factors: [1.1, 1.5]`")
        factors = (float(factors[0]), float(factors[1]))
    return PbtSection(mutate=None if mutate is None else tuple(mutate), factors=factors,
                      **probabilities)


def check_space(data: Any, *, source: str, reward_terms: Collection[str]) -> SpaceParts:
    """Check a space file's parsed content; `reward_terms` are the environment's `reward.scales` keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(file=source, key="<root>", value=data,
                          rule="a search space must be a mapping of " + ", ".join(SECTIONS),
                          fix="start from a file in templates/")
    refuse_unknown(data, SECTIONS, source=source, prefix="", what="a section of a search space",
                   kinds="sections")
    space_id = data.get("search_space_id")
    if not isinstance(space_id, str) or not space_id:
        raise ConfigError(file=source, key="search_space_id", value=space_id,
                          rule="it must be a non-empty string",
                          fix="add `search_space_id: my_space`")
    keys: dict[str, str] = {}
    fixed, fixed_names = _parse_fixed(data, source=source, reward_terms=reward_terms, keys=keys)
    params = _parse_params(data, source=source, reward_terms=reward_terms, keys=keys)
    aliases, ambiguous = name_aliases({**{p.name: p.key for p in params}, **fixed_names},
                                      {**MODEL_KEYS, **RUN_KEYS})
    constraints = [_constraint(c, aliases, ambiguous, source=source, index=i)
                   for i, c in enumerate(_constraint_list(data, source))]
    return SpaceParts(space_id=space_id, params=params, fixed=fixed, fixed_names=fixed_names,
                      constraints=constraints, aliases=aliases,
                      pbt=_parse_pbt(data, params, source=source))


def _parse_params(data: Mapping[str, Any], *, source: str, reward_terms: Collection[str],
                  keys: dict[str, str]) -> list[Param]:
    """The searched parameters of `ppo_params` and `reward_weights`, in file order."""
    params: list[Param] = []
    for section in PARAM_SECTIONS:
        for name, spec in _section(data, section, source).items():
            at = At(source, f"{section}.{name}")
            config_key, annotation = resolve_name(name, section=section,
                                                  reward_terms=reward_terms, source=source)
            _claim(at, name, config_key, keys)
            params.append(parse_param(at, name, spec, section=section, config_key=config_key,
                                      annotation=annotation))
    return params


def _section(data: Mapping[str, Any], section: str, source: str) -> Mapping[str, Any]:
    """The mapping under `section` (empty when absent), its names checked to be strings."""
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
    """The fixed values by config key, and each one's name as written -> its config key."""
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
    """The entries of `constraints` (empty when absent)."""
    value = data.get("constraints")
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(file=source, key="constraints", value=value,
                          rule="it must be a list of expressions",
                          fix='write `constraints: ["learning_rate > 5e-4 and rollouts < 32"]`')
    return value


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
