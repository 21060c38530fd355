"""The names a constraint may use for a parameter, and the values it is evaluated on.

A parameter (searched or fixed) may be named in a constraint by the name the space file gives it,
by its full dotted config key, or by its bare name (`learning_rate` for `ppo.learning_rate`,
`lambda_param` for `ppo.lambda`, a reward term for `reward.scales.<term>`), whichever way the file
wrote it. Only a name that could mean two parameters is refused. Constraints read the effective
configuration: sampled values, fixed values and the command line's overrides, which win over both.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

MAX_PROBES = 4096
"""Combinations tried when looking for a constraint that can never fire."""


def name_aliases(entries: Mapping[str, str], bare_names: Mapping[str, str]
                 ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """`entries`: name in the file -> config key. `bare_names`: bare name -> config key (the
    space's table). Returns alias -> name in the file, and the aliases that name several."""
    meaning: dict[str, set[str]] = {}
    for name, key in entries.items():
        aliases = {name, key, key.rsplit(".", 1)[-1]}
        aliases |= {bare for bare, bare_key in bare_names.items() if bare_key == key}
        for alias in aliases:
            meaning.setdefault(alias, set()).add(name)
    unique = {alias: next(iter(names)) for alias, names in meaning.items() if len(names) == 1}
    ambiguous = {alias: sorted(names) for alias, names in meaning.items() if len(names) > 1}
    return unique, ambiguous


def override_values(overrides: Iterable[str], keys: Mapping[str, str]) -> dict[str, Any]:
    """Values the command line sets for the space's entries: name in the file -> value.
    `keys`: name in the file -> config key."""
    by_key = {key: name for name, key in keys.items()}
    found = {}
    for override in overrides:
        key, _, text = override.partition("=")
        name = by_key.get(key.lstrip("+~"))
        if name is not None:
            found[name] = _value(text)
    return found


def _value(text: str) -> Any:
    """An override's value as Hydra reads it: `1e-3` is a number (PyYAML alone keeps it a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def by_alias(values: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """Values by every alias (what a constraint expression reads)."""
    return {alias: values[name] for alias, name in aliases.items() if name in values}


def probe_combinations(choices: Mapping[str, list[Any]]) -> Iterable[dict[str, Any]]:
    """Every combination of the probe values (at most MAX_PROBES of them)."""
    names = list(choices)
    for combo in itertools.islice(itertools.product(*(choices[n] for n in names)), MAX_PROBES):
        yield dict(zip(names, combo, strict=True))
