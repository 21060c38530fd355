"""Whether a sampled configuration can run: train_one's own checks of its composed config
(config.to_run_config) made before launch, so that a sample train_one would refuse is refused like
a constraint violation; and the choices and range ends of a space that no sample can run with.
Only the mini-batch rule reads several searchable keys (schema.MINI_BATCH_KEYS); every other rule
of RunConfig.check reads one, which is what lets a value be judged alone.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from automl.config import compose_with_choices, to_run_config
from automl.errors import ConfigError
from automl.schema import MINI_BATCH_KEYS, RunConfig
from automl.search.space.params import Param, hydra_value, override_key, thaw
from automl.search.space.search_space import SearchSpace

MAX_JOINT_POINTS = 512
"""Most combinations of the searched mini-batch parameters' choices and range ends tried at start
(about 4 ms each); above it no value is reported as never running."""


@dataclass(frozen=True)
class NeverRuns:
    """A choice or range end of a parameter that train_one refuses whatever the other values."""

    param: Param
    value: Any
    """The native value."""
    context: dict[str, str]
    """The other values the mini-batch rule read at the point shown, as `name=value` (a searched
    one at the end that makes the rule easiest to meet: `rollouts<=64`)."""
    error: ConfigError
    """train_one's error at that point."""

    def describe(self) -> str:
        """`mini_batches=64 can never run with num_envs=16, rollouts=16 (rollouts 16 x ...)`."""
        where = f" with {', '.join(self.context.values())}" if self.context else ""
        return f"{self.param.name}={hydra_value(self.value)} can never run{where} ({self.error.rule})"


class Feasibility:
    """train_one's checks of the config a trial would get: the config every trial starts from (the
    space's fixed values and the command line's overrides) is composed with Hydra once; a sample's
    values are set into a copy of it and checked as train_one checks it, in milliseconds."""

    def __init__(self, space: SearchSpace, base: DictConfig, choices: dict[str, Any], *,
                 user_overrides: Collection[str]) -> None:
        self.space, self.base, self.choices = space, base, choices
        self.user_keys = {override_key(o) for o in user_overrides}
        """Keys the command line sets: they win over a sampled value (trial_start's order)."""
        self.searched = [p for p in space.params if p.key not in self.user_keys]
        """The parameters whose sampled value a trial gets."""
        self.joint = [p for p in self.searched if p.key in MINI_BATCH_KEYS]
        """Those the mini-batch rule reads together."""
        self.reference: dict[str, Any] = {}
        """Values of `joint` at which the base runs, where it does not by itself (base_config)."""
        self._points: list[tuple[dict[str, Any], ConfigError | None]] | None = None

    @classmethod
    def compose(cls, space: SearchSpace, user_overrides: Collection[str]) -> Feasibility:
        """Compose the space's fixed values and `user_overrides` (one Hydra compose)."""
        base, choices = compose_with_choices([*space.fixed_overrides(), *user_overrides])
        return cls(space, base, choices, user_overrides=user_overrides)

    def problem(self, values: Mapping[str, Any]) -> ConfigError | None:
        """train_one's error for native sampled `values` by parameter name (one left out keeps
        its base value); None when it would run."""
        try:
            self._run_config(values)
        except ConfigError as err:
            return err
        return None

    def run_config(self, values: Mapping[str, Any]) -> RunConfig:
        """The run config a trial of native `values` gets (ConfigError: train_one refuses it)."""
        return self._run_config(values)

    def _run_config(self, values: Mapping[str, Any]) -> RunConfig:
        cfg = copy.deepcopy(self.base)
        for name, value in values.items():
            key = self.space.param(name).key
            if key not in self.user_keys:
                OmegaConf.update(cfg, key, thaw(value), merge=False, force_add=True)
        return to_run_config(cfg, choices=self.choices)

    def base_config(self) -> RunConfig:
        """The run config every trial starts from, checked as train_one checks it. Where only the
        mini-batch rule refuses it and the space searches a value that rule reads, at the first
        combination of those values that runs (`reference`); where none does, the space is
        refused."""
        try:
            return self._run_config({})
        except ConfigError as err:
            if err.key not in MINI_BATCH_KEYS or not self.joint:
                raise
            point = next((point for point, error in self._joint_points() if error is None), None)
            if point is None:
                stuck = nothing_runs(self._never_in_joint())
                raise (err if stuck is None else refuse_space(stuck, self.space.source)) from None
            self.reference = point
            return self._run_config(point)

    def never_runs(self) -> list[NeverRuns]:
        """Choices and range ends that no sample can run with, in file order: a parameter's own
        rule (it must be > 0, ...) refuses it at the base, or the mini-batch rule at every
        combination of the searched mini-batch parameters' choices and ends. The base runs (at
        `reference`): base_config said so."""
        found = self._never_in_joint()
        for p in self.searched:
            if p in self.joint:
                continue
            for value in p.edge_values():
                error = self.problem({**self.reference, p.name: value})
                if error is not None:  # only `p` differs from a config that runs
                    found.append(NeverRuns(p, value, {}, error))
        order = {p.name: i for i, p in enumerate(self.space.params)}
        return sorted(found, key=lambda n: order[n.param.name])

    def _joint_points(self) -> list[tuple[dict[str, Any], ConfigError | None]]:
        """Every combination of the choices and ends of `joint`, with train_one's error there
        (none where there are more than MAX_JOINT_POINTS)."""
        if self._points is None:
            names = [p.name for p in self.joint]
            combos = itertools.product(*(p.edge_values() for p in self.joint))
            count = math.prod(len(p.edge_values()) for p in self.joint)
            points = [dict(zip(names, c, strict=True)) for c in combos] if count <= MAX_JOINT_POINTS else []
            self._points = [(point, self.problem(point)) for point in points if point]
        return self._points

    def _never_in_joint(self) -> list[NeverRuns]:
        """The values of the searched mini-batch parameters that fail at every combination of
        the others' choices and ends (the rule is monotone in each, so the ends decide)."""
        points = self._joint_points()
        runs = [point for point, error in points if error is None]
        found = []
        for p in self.joint if points else []:
            for value in p.edge_values():
                if any(point[p.name] == value for point in runs):
                    continue
                shown = {q.name: _easiest(q, runs) for q in self.joint if q is not p}
                shown[p.name] = value
                error = next(e for point, e in points if point == shown)
                assert error is not None  # no point with this value runs
                found.append(NeverRuns(p, value, self._context(p, shown), error))
        return found

    def _context(self, p: Param, shown: Mapping[str, Any]) -> dict[str, str]:
        """`name=value` of each other key the mini-batch rule reads, by key."""
        joint = {q.key: q for q in self.joint}
        named = {key: name for name, key in self.space.fixed_names.items()}
        context = {}
        for key, sign in MINI_BATCH_KEYS.items():
            if key == p.key:
                continue
            q = joint.get(key)
            if q is not None:
                context[key] = f"{q.name}{'<=' if sign > 0 else '>='}{hydra_value(shown[q.name])}"
            else:
                value = OmegaConf.select(self.base, key)
                context[key] = f"{named.get(key, key.rsplit('.', 1)[-1])}={hydra_value(value)}"
        return context


def _easiest(q: Param, runs: list[dict[str, Any]]) -> Any:
    """The choice or end of `q` that makes the mini-batch rule easiest to meet, among those some
    runnable point takes (all of them when none runs); null environments count as none."""
    values = [v for v in q.edge_values() if any(point[q.name] == v for point in runs)]
    sign = MINI_BATCH_KEYS[q.key]
    return max(values or q.edge_values(), key=lambda v: sign * (v if isinstance(v, (int, float)) else 0))


def nothing_runs(never: list[NeverRuns]) -> NeverRuns | None:
    """A parameter none of whose values can run, if any (a choice, or a mini-batch parameter,
    whose rule is monotone: a range whose ends fail fails throughout), at its most favourable
    value for the mini-batch rule."""
    refused: dict[str, list[NeverRuns]] = {}
    for n in never:
        refused.setdefault(n.param.name, []).append(n)
    for items in refused.values():
        p = items[0].param
        joint = p.key in MINI_BATCH_KEYS
        if (p.grid_values() is not None or joint) and len(items) == len(p.edge_values()):
            best = _easiest(p, []) if joint else items[0].value
            return next(n for n in items if n.value == best)
    return None


def refuse_space(never: NeverRuns, source: str) -> ConfigError:
    """Bad input: no value of a parameter can run (exit 2 before any trial)."""
    p = never.param
    return ConfigError(file=source, key=f"{p.section}.{p.name}",
                       value=[thaw(v) for v in p.edge_values()],
                       rule=f"none of its values can run, not even the most favourable: "
                            f"{never.describe()}",
                       fix=never.error.fix or f"change the values of {p.name}")
