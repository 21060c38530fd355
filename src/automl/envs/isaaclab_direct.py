"""A direct-workflow Isaac Lab task's reward fields as reward terms automl can weigh and search.

A direct task computes its reward in one method, `_get_rewards`, from weights that are fields of its
config: `rew_scale_alive` on Isaac-Cartpole-Direct, `heading_weight` or `death_cost` on
Isaac-Ant-Direct (`reward_fields`: numeric fields named like `rew_*`, `*reward*`, `*_weight`,
`*cost*`, `*penalty*`, `*bonus*`). Where that reward is affine in those fields, each field's term
is what one unit of it adds, and the part no field weighs is the term `reward` (weight 1):

    reward(w) = reward(0) + sum_f w_f * (reward(e_f) - reward(0))

`DirectTerms` stands in for `_get_rewards`: each step it computes reward(0) and reward(e_f) for every
field, then the reward under the task's own weights, which Isaac Lab gets as before, and checks
that the terms rebuild it (a step that does not is an error). This calls `_get_rewards` once per
field and twice more each step, so it is done only where that method changes nothing else: a task
whose `_get_rewards` changes any of its tensors (episode sums, goals it resets) keeps its one term,
`reward`, and says so.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import torch

REWARD_FIELD = re.compile(r"(^rew_|reward|_weight$|cost|penalty|bonus)")
"""The names of a direct task's reward weights among its config's fields."""
OFFSET = "reward"
"""The term of the part of a direct task's reward that no field weighs (DIRECT_TERM)."""


def reward_fields(cfg: Any) -> dict[str, float]:
    """The task config's numeric reward fields and their values."""
    return {name: float(getattr(cfg, name)) for name in getattr(cfg, "__dataclass_fields__", {})
            if REWARD_FIELD.search(name) and isinstance(getattr(cfg, name, None), (int, float))
            and not isinstance(getattr(cfg, name), bool)}


def _tensors(base: Any) -> dict[str, torch.Tensor]:
    """Copies of the env's tensors, and of those in its dicts (episode sums), by name."""
    out = {}
    for name, value in vars(base).items():
        if isinstance(value, torch.Tensor):
            out[name] = value.clone()
        elif isinstance(value, dict):
            out.update({f"{name}[{k}]": v.clone() for k, v in value.items() if isinstance(v, torch.Tensor)})
    return out


def changed_by_rewards(base: Any) -> list[str]:
    """The tensors `_get_rewards` changes when called twice (empty: it computes only)."""
    before = _tensors(base)
    base._get_rewards()
    base._get_rewards()
    after = _tensors(base)
    return sorted(k for k in before if k not in after or before[k].shape != after[k].shape
                  or not torch.equal(before[k], after[k]))


class DirectTerms:
    """Stands in for a direct task's `_get_rewards` and keeps each reward field's term."""

    def __init__(self, base: Any, fields: dict[str, float]) -> None:
        self._base, self._compute, self.fields = base, base._get_rewards, dict(fields)
        self.terms: dict[str, torch.Tensor] | None = None

    def _at(self, weights: dict[str, float]) -> torch.Tensor:
        for name, weight in weights.items():
            setattr(self._base.cfg, name, weight)
        return self._compute().float()

    def __call__(self) -> torch.Tensor:
        zero = dict.fromkeys(self.fields, 0.0)
        offset = self._at(zero)
        terms = {OFFSET: offset}
        for name in self.fields:
            terms[name] = self._at({**zero, name: 1.0}) - offset
        reward = self._at(self.fields)  # the task's own weights back in place, its own reward
        rebuilt = sum((w * terms[n] for n, w in self.fields.items()), offset)
        if not torch.allclose(rebuilt, reward, rtol=1e-4, atol=1e-5 * (1.0 + float(reward.abs().max()))):
            raise RuntimeError(f"the reward of {type(self._base).__name__} is not affine in its fields "
                               f"{', '.join(self.fields)}: the terms do not rebuild it")
        self.terms = terms
        return reward

    def take(self) -> dict[str, torch.Tensor]:
        """This step's terms, once: a step that computed none is an error."""
        if self.terms is None:
            raise RuntimeError("the direct task's reward was not computed this step")
        terms, self.terms = self.terms, None
        return terms


def wrap_direct(base: Any, task: str) -> DirectTerms | None:
    """Put DirectTerms in place of the task's `_get_rewards` where it has reward fields and its
    `_get_rewards` computes only; else None (the task keeps its one term), with a note on stderr."""
    fields = reward_fields(base.cfg)
    if not fields:
        return None
    try:
        changed = changed_by_rewards(base)
    except Exception as err:  # noqa: BLE001 (any failure: it cannot be called out of its step)
        changed = [f"({type(err).__name__}: {err})"]
    if changed:
        print(f"automl: {task} keeps its one reward term `{OFFSET}`: its _get_rewards changes "
              f"{', '.join(changed[:4])}, so its fields ({', '.join(fields)}) cannot be weighed "
              "apart", file=sys.stderr)
        return None
    terms = DirectTerms(base, fields)
    base._get_rewards = terms
    return terms
