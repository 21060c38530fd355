"""Search spaces: a space file (the unified navigation AutoML schema) as parameters, fixed values
and constraints, and what a study needs from them.

A space file holds `search_space_id`, `fixed`, `ppo_params`, `reward_weights`, `constraints`
and, for population-based training, `pbt` (see `templates/`). `load_space` checks it once, at load
time (loading.py reads it, names resolve through names.py, parameter specs through specs.py); the
SearchSpace it returns maps every parameter to its config key, its Optuna distribution and its
Hydra override, each parameter's kind being a class of params.py. Optuna is imported only by the
methods that need it, so parsing a space stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from automl import paths
from automl.errors import ConfigError
from automl.search.space.constraints import Constraint
from automl.search.space.loading import PbtSection, check_space, read_space_file
from automl.search.space.names import (
    by_alias,
    override_values,
    probe_combinations,
)
from automl.search.space.params import Param, hydra_override, thaw

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

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
    """Every name a constraint may use -> the parameter's name in the file (names.py)."""
    pbt: PbtSection = PbtSection()
    """The file's `pbt` section (how population-based training explores the space)."""

    @property
    def names(self) -> list[str]:
        """Optuna parameter names, in file order."""
        return [p.name for p in self.params]

    def param(self, name: str) -> Param:
        """The parameter named `name` (KeyError if the space has none)."""
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


def load_space(path: Path, *, reward_terms: Collection[str]) -> SearchSpace:
    """Read and check a space file; `reward_terms` are the environment's `reward.scales` keys."""
    data, text = read_space_file(path)
    return parse_space(data, source=str(path), reward_terms=reward_terms, text=text)


def parse_space(data: Any, *, source: str, reward_terms: Collection[str],
                text: str | None = None) -> SearchSpace:
    """Check a space file's parsed content (`text`: its original text, else dumped from `data`)."""
    parts = check_space(data, source=source, reward_terms=reward_terms)
    space = SearchSpace(space_id=parts.space_id, source=source, params=parts.params, fixed=parts.fixed,
                        fixed_names=parts.fixed_names, constraints=parts.constraints,
                        text=text if text is not None else yaml.safe_dump(dict(data), sort_keys=False),
                        aliases=parts.aliases, pbt=parts.pbt)
    _probe_constraints(space)
    return space


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
