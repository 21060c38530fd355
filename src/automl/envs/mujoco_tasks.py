"""gymnasium's MuJoCo v5 locomotion tasks with their reward split into raw, weighable terms.

Each task is built with its reward weights set to 1, so the `reward_*` values of a step's info are
the raw terms; the run weights them with `reward.scales`, and the task's episodic RETURN is the sum
under gymnasium's own default weights (read from the constructor), whatever the run's weights are.
Costs are turned into magnitudes (>= 0) and their default weights carry the minus sign, as in the
navigation task: `reward.scales.ctrl_cost: -1.0e-3` is gymnasium's `ctrl_cost_weight=1e-3`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium.envs.registration import load_env_creator

from automl.errors import ConfigError


@dataclass(frozen=True)
class Term:
    """One raw reward term: where a step's info holds it and which constructor weight scales it."""

    name: str
    """`reward.scales.<name>`."""
    info_key: str
    """Key of the (weighted) term in the step's info."""
    weight_kwarg: str
    """The constructor's weight of this term; set to 1 so the info value is the raw term."""
    sign: float
    """+1 for a reward, -1 for a cost (info holds -cost; the raw term is the cost itself)."""


FORWARD = Term("forward_reward", "reward_forward", "forward_reward_weight", 1.0)
CTRL = Term("ctrl_cost", "reward_ctrl", "ctrl_cost_weight", -1.0)
CONTACT = Term("contact_cost", "reward_contact", "contact_cost_weight", -1.0)
HEALTHY = Term("healthy_reward", "reward_survive", "healthy_reward", 1.0)

TASK_TERMS: dict[str, tuple[Term, ...]] = {
    "Hopper-v5": (FORWARD, CTRL, HEALTHY),
    "Walker2d-v5": (FORWARD, CTRL, HEALTHY),
    "HalfCheetah-v5": (FORWARD, CTRL),
    "Ant-v5": (FORWARD, CTRL, CONTACT, HEALTHY),
    "Humanoid-v5": (FORWARD, CTRL, CONTACT, HEALTHY),
}
"""The tasks whose reward is split, by gymnasium id, and their terms."""

VELOCITY_KEY = "x_velocity"
"""Info key of the body's forward velocity (m/s), which no reward weight changes."""
CONTACT_CAP_KWARG = "contact_cost_range"
"""Humanoid clips its *weighted* contact cost to this range; rescaled so weight 1 clips alike."""

_SOURCE = "conf/env/*.yaml or the command line"


@dataclass(frozen=True)
class RewardSplit:
    """How one task's reward splits into raw terms, and the weights that make gymnasium's reward."""

    gym_id: str
    terms: tuple[Term, ...]
    reference: dict[str, float]
    """gymnasium's default weight of each term, signed (costs negative)."""
    constructor_params: dict[str, Any]
    """Keyword arguments for gymnasium.make: the env's own params with every term weight at 1."""

    @property
    def names(self) -> tuple[str, ...]:
        """The terms' names, in the order of `terms`."""
        return tuple(term.name for term in self.terms)

    def raw_terms(self, info: Mapping[str, Any], num_envs: int) -> dict[str, np.ndarray]:
        """Each term of one vector step, (num_envs,) float64, including sub-envs that just reset."""
        return {t.name: t.sign * step_values(info, t.info_key, num_envs) for t in self.terms}

    def reference_reward(self, raw: Mapping[str, np.ndarray]) -> np.ndarray:
        """gymnasium's reward under its default weights, rebuilt from the raw terms."""
        return sum((self.reference[name] * value for name, value in raw.items()),
                   start=np.zeros_like(next(iter(raw.values()))))


def split_for(gym_id: str, params: Mapping[str, Any]) -> RewardSplit | None:
    """The split of a listed MuJoCo task, or None for any other gymnasium id (one `env_reward`)."""
    terms = TASK_TERMS.get(gym_id)
    if terms is None:
        return None
    defaults = constructor_defaults(gym_id)
    taken = sorted(t.weight_kwarg for t in terms if t.weight_kwarg in params)
    if taken:
        names = ", ".join(f"reward.scales.{t.name}" for t in terms if t.weight_kwarg in taken)
        raise ConfigError(
            file=_SOURCE, key=f"env.params.{taken[0]}", value=params[taken[0]],
            rule=f"{gym_id}'s reward weights are searched and set as reward.scales, not as "
                 "constructor arguments (the env is built with each weight at 1)",
            fix=f"remove env.params.{taken[0]} and set {names} instead")
    reference = {t.name: t.sign * float(defaults[t.weight_kwarg]) for t in terms}
    constructor = dict(params) | {t.weight_kwarg: 1.0 for t in terms}
    if CONTACT_CAP_KWARG in defaults and CONTACT in terms:
        low, high = params.get(CONTACT_CAP_KWARG, defaults[CONTACT_CAP_KWARG])
        weight = float(defaults[CONTACT.weight_kwarg])
        # gymnasium clips weight * cost; with weight 1 the same clip lies at cap / weight.
        constructor[CONTACT_CAP_KWARG] = (low / weight, high / weight)
    return RewardSplit(gym_id=gym_id, terms=terms, reference=reference,
                       constructor_params=constructor)


def constructor_defaults(gym_id: str) -> dict[str, Any]:
    """Default keyword arguments of the task's constructor, with the registration's overrides."""
    spec = gymnasium.spec(gym_id)
    creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) \
        else spec.entry_point
    assert creator is not None, gym_id
    defaults = {name: p.default for name, p in inspect.signature(creator).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return defaults | dict(spec.kwargs)


def step_values(info: Mapping[str, Any], key: str, num_envs: int) -> np.ndarray:
    """`info[key]` of a SAME_STEP vector step for every sub-env, float64.

    A sub-env whose episode ended this step was already reset: its step's info is under
    `final_info`, and the top level holds its reset info instead.
    """
    values = np.full(num_envs, math.nan)
    found = np.zeros(num_envs, dtype=bool)
    for source in (info, info.get("final_info") or {}):
        if key in source:
            mask = np.asarray(source[f"_{key}"], dtype=bool)
            values[mask] = np.asarray(source[key], dtype=np.float64)[mask]
            found |= mask
    if not found.all():
        # A gymnasium release that renamed its info keys must fail loudly, not train on zeros.
        raise RuntimeError(f"step info lacks `{key}` for sub-envs {np.flatnonzero(~found).tolist()}")
    return values
