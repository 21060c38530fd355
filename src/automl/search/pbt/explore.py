"""Explore: which searched parameters a population's member may change while it trains, and how its
values are perturbed after an exploit step.

Which parameters are mutable. A member goes on from its own (or a donor's) training state
(state.pt: weights, Adam's moments, normalisers; run/state.py), so a parameter that sets the shape
of what that state holds, or of what the next update reads, cannot change mid-run: it is fixed per
member, sampled once when the population starts. By config key, first match:

- `network.*` (policy and value hidden layer sizes, activation): the weights' shapes; the state
  records them, and `train.resume_from` refuses a state trained with others (`state.check_fits`).
- `ppo.normalize_observations`, `ppo.normalize_values`: whether the state holds a running
  normaliser; refused likewise.
- `env.num_envs`, `ppo.rollouts`, `ppo.mini_batches`: the rollout memory's shape (rollouts x
  environments) and the update's mini-batch size; the three keys of the mini-batch rule
  (`schema.MINI_BATCH_KEYS`), so keeping them fixed also keeps every perturbed member feasible.
- any other `env.*` key (`env.params.*`, ...): the task itself; a task parameter may change the
  observation or action size, which the state also records, and members must be scored on one task.
- any other key outside `ppo.*` and `reward.scales.*` (`train.*`, `scoring.*`): a run setting the
  orchestration owns (seed, segment length) or the score the members are ranked by.

Everything else is mutable: every other `ppo.*` key (learning_rate, discount_factor, lambda,
ratio_clip, value_clip, entropy_loss_scale, learning_epochs, grad_norm_clip, value_loss_scale,
kl_threshold, time_limit_bootstrap) and every reward weight (`reward.scales.*`). A space with no
mutable parameter is refused (`check_mutable`).

How `perturb` changes a member's values. Each mutable parameter, in file order, first draws whether
it changes (probability `mutation_probability`; no draw at 1), then whether it is resampled
(probability `resample_probability`, default 0.25, as Ray Tune's PBT after Jaderberg et al. 2017;
DexPBT only perturbs); fixed parameters are returned unchanged and draw nothing.

- Continuous (`uniform`, `loguniform`): resampled from the file's distribution (log-uniform on the
  magnitude for a log range, negated for a negative one); otherwise multiplied or divided (50/50)
  by a factor drawn from U(factors), DexPBT's U(1.1, 1.5), reward weights and PPO settings alike.
  A negative weight stays negative (its magnitude scales); a value of 0 can only leave 0 by
  resampling. `ppo.discount_factor` and `ppo.lambda` scale 1 - x instead (0.99 -> 1 - 0.01 x f or
  1 - 0.01 / f): their effect goes with the horizon 1 / (1 - x), and a factor on x itself would
  leave the range at once. DexPBT does the same with a narrower U(1.1, 1.2) for the discount.
  The result is clipped to the range.
- Integer (`randint`): resampled uniformly from the step grid; otherwise scaled like a float, then
  rounded to the nearest grid point (halves round up); where that gives back the old value
  (small counts: 5 / 1.1 = 4.55 -> 5), it moves one grid step towards the scaled value, as
  DexPBT steps mini-epochs by one. Clipped to the range.
- `choice` / `categorical`: resampled uniformly from the values (possibly the same one); otherwise
  the value moves to a neighbour in the file's order, up or down (50/50); at either end to its only
  neighbour, so a two-valued choice always flips. A single value never changes.

Which parameters change. When a member is copied, each mutable parameter changes with probability
`mutation_probability` (0.25 by default, as Isaac Lab's and rl_games' PBT; Sample Factory's is
0.15) and otherwise keeps the donor's value, so a copy is mostly the donor: a choice moves only when
selected. A space file's `pbt.mutate` narrows the parameters that may change at all (a reward
weight that should stay as written, say). With probability 1 every mutable parameter changes at
every copy (the plans of studies begun before this was a setting).

Every draw comes from the generator passed in, in that order, so the result is determined by it:
`numpy.random.Generator` and `random.Random` both fit (`Rng`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, Protocol

from automl.errors import ConfigError
from automl.schema import MINI_BATCH_KEYS
from automl.search.space import REWARD_PREFIX, Param, SearchSpace, thaw

UNIT_KEYS = ("ppo.discount_factor", "ppo.lambda")
"""Keys perturbed in 1 - x space (discount factor gamma, GAE lambda)."""
NORMALIZER_KEYS = ("ppo.normalize_observations", "ppo.normalize_values")
"""Keys whose value decides whether a training state holds a normaliser (run/state.py: shape_of)."""
FACTORS = (1.1, 1.5)
"""DexPBT's range of the factor a continuous value is multiplied or divided by."""
RESAMPLE_PROBABILITY = 0.25
"""Probability that a changed parameter is drawn afresh instead of perturbed (Ray Tune's default)."""
MUTATION_PROBABILITY = 0.25
"""Probability that each mutable parameter changes when a member is copied (Isaac Lab's and rl_games'
PBT mutate each parameter with probability 0.25, Sample Factory 0.15); the rest keep the donor's."""


class Rng(Protocol):
    """The draws `perturb` and `exploit` make: `numpy.random.Generator` and `random.Random` fit."""

    def random(self) -> float:
        """Uniform in [0, 1)."""
        ...

    def uniform(self, low: float, high: float, /) -> float:
        """Uniform between `low` and `high`."""
        ...


def draw_index(rng: Rng, n: int) -> int:
    """An index in [0, n) drawn uniformly."""
    return min(int(rng.random() * n), n - 1)


# ---------------------------------------------------------------------------------------------
# Which parameters a member may change


def fixed_reason(key: str) -> str | None:
    """Why config `key` is fixed per member (see the module docstring), or None if it is mutable."""
    if key.startswith("network."):
        return "it sets the networks' layer sizes or activation, which the weights a member carries have"
    if key in NORMALIZER_KEYS:
        return "it decides whether the training state holds a running normaliser"
    if key in MINI_BATCH_KEYS:
        return "it sets the rollout memory's shape or the update's mini-batch size"
    if key.startswith("env."):
        return "it changes the task, whose observation and action sizes the weights are built for"
    if not key.startswith(("ppo.", REWARD_PREFIX)):
        return "it is a run setting or the score members are ranked by, not a training hyperparameter"
    return None


def mutable(param: Param) -> bool:
    """Whether a member may change `param` while it trains (a PPO setting or a reward weight that
    changes no tensor's shape); `fixed_reason` says why not."""
    return fixed_reason(param.key) is None


def check_mutable(space: SearchSpace) -> list[Param]:
    """The parameters of `space` a member may change (of those its `pbt.mutate` names, where it
    does); a ConfigError if there are none, or `pbt.mutate` names one that is fixed per member."""
    for name in space.pbt.mutate or ():
        reason = fixed_reason(space.param(name).key)
        if reason is not None:
            raise ConfigError(file=space.source, key="pbt.mutate", value=name,
                              rule=f"a member cannot change `{name}` while it trains: {reason}",
                              fix=f"remove {name} from pbt.mutate (it is fixed per member, drawn "
                                  "once when the population starts)")
    found = [p for p in space.params if mutable(p)]
    if not found:
        fixed = "; ".join(f"`{p.name}` ({p.key}): {fixed_reason(p.key)}" for p in space.params)
        raise ConfigError(
            file=space.source, key="ppo_params", value=space.names,
            rule="population-based training changes a member's parameters while it keeps its "
                 "weights, so a parameter that sets a tensor's shape (network sizes and activation, "
                 "normalisers, env.num_envs, ppo.rollouts, ppo.mini_batches) or the task is fixed per "
                 f"member, and every parameter of this space is: {fixed or 'it has none'}",
            fix="search at least one PPO setting that keeps shapes (learning_rate, "
                "entropy_loss_scale, ratio_clip, discount_factor, learning_epochs, ...) under "
                "ppo_params, or a reward weight under reward_weights; or search this space with "
                "the Optuna loop (--search-method bayesian)")
    return found


# ---------------------------------------------------------------------------------------------
# Perturbation


def perturb(values: Mapping[str, Any], space: SearchSpace, *, rng: Rng,
            factors: tuple[float, float] = FACTORS,
            resample_probability: float = RESAMPLE_PROBABILITY,
            mutation_probability: float = 1.0,
            mutate: Collection[str] | None = None) -> dict[str, Any]:
    """New native values for a member: each mutable parameter of `space` (of those named in
    `mutate`, where given) selected with probability `mutation_probability`, and each selected one
    resampled or perturbed (module docstring); the rest as given. `values`: native values by
    parameter name."""
    _check_factors(factors)
    for name, probability in (("resample_probability", resample_probability),
                              ("mutation_probability", mutation_probability)):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"The value of `{name}` is {probability}, but must be "
                             f"`0 <= {name} <= 1`.")
    missing = [name for name in space.names if name not in values]
    if missing:
        raise ValueError(f"`values` lacks {missing}, parameters of space {space.space_id!r} "
                         f"({space.source}); it must hold a value for each of {space.names}.")
    new = dict(values)
    for p in space.params:
        if not mutable(p) or (mutate is not None and p.name not in mutate):
            continue
        # A probability of 1 draws nothing: every parameter changes, by the draws it always had.
        if mutation_probability < 1.0 and not rng.random() < mutation_probability:
            continue
        new[p.name] = _perturb_one(p, values[p.name], rng=rng, factors=factors,
                                   resample=rng.random() < resample_probability)
    return new


def _check_factors(factors: tuple[float, float]) -> None:
    low, high = factors
    if not (math.isfinite(high) and 1.0 < low <= high):
        raise ValueError(f"The value of `factors` is {factors}, but must be `1 < low <= high` "
                         "(a value is multiplied or divided by a factor drawn from U(low, high)).")


def _perturb_one(p: Param, value: Any, *, rng: Rng, factors: tuple[float, float], resample: bool) -> Any:
    if p.kind in ("choice", "categorical"):
        return _perturb_choice(p, value, rng=rng, resample=resample)
    if p.kind == "randint":
        return _perturb_int(p, value, rng=rng, factors=factors, resample=resample)
    return _perturb_float(p, value, rng=rng, factors=factors, resample=resample)


def _scaled(x: float, rng: Rng, factors: tuple[float, float]) -> float:
    """`x` multiplied or divided (50/50) by a factor drawn from U(factors)."""
    factor = rng.uniform(*factors)
    return x / factor if rng.random() < 0.5 else x * factor


def _perturb_float(p: Param, value: Any, *, rng: Rng, factors: tuple[float, float], resample: bool) -> float:
    low, high = sorted(float(v) for v in p.edge_values())
    if resample:
        if p.log:  # the magnitude of a negative range, as Optuna samples it
            small, large = sorted((abs(low), abs(high)))
            new = p.sign * math.exp(rng.uniform(math.log(small), math.log(large)))
        else:
            new = rng.uniform(low, high)
    elif p.key in UNIT_KEYS:
        new = 1.0 - _scaled(1.0 - float(value), rng, factors)
    else:
        new = _scaled(float(value), rng, factors)
    return min(max(float(new), low), high)


def _perturb_int(p: Param, value: Any, *, rng: Rng, factors: tuple[float, float], resample: bool) -> int:
    grid = [int(v) for v in p.grid_values() or p.edge_values()]
    if resample:
        return grid[draw_index(rng, len(grid))]
    low, high = grid[0], grid[-1]
    step = grid[1] - grid[0] if len(grid) > 1 else 1
    old = int(value)
    target = _scaled(float(old), rng, factors)
    new = low + math.floor((target - low) / step + 0.5) * step
    if new == old and target != old:
        new = old + (step if target > old else -step)
    return min(max(new, low), high)


def _perturb_choice(p: Param, value: Any, *, rng: Rng, resample: bool) -> Any:
    choices = p.edge_values()  # every value, in the file's order
    if resample:
        return choices[draw_index(rng, len(choices))]
    value = thaw(value)
    if value not in choices:
        raise ValueError(f"`{p.name}` is {value!r}, but must be one of its {p.kind} values {choices}.")
    i = choices.index(value)
    up = rng.random() < 0.5
    if len(choices) == 1:
        return choices[0]
    if i == 0 or (up and i < len(choices) - 1):
        return choices[i + 1]
    return choices[i - 1]
