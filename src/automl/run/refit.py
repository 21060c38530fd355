"""Re-fit the critic when a resumed run's reward changed (`ppo.value_refit_updates`).

A population member that copies another, or perturbs its values, may continue a state trained
under other reward weights or another discount: its critic still predicts the old returns. With
value clipping (`ppo.value_clip`, in return units) each PPO update may move a prediction only
that far from the rollout's, and a running value normaliser averaged over the whole history moves
slowly too, so the critic follows a weight that goes from -50 to -200 over many updates while
the policy learns from its stale advantages.

With `ppo.value_refit_updates: N` (> 0) and a reward that changed (any weight or the discount
factor differs from the state's last segment), the resumed run first resets the value normaliser
(where there is one) and makes its first N updates value-only, on fresh rollouts of the current
policy: the advantages are zeroed (the policy loss and its gradient are 0), the entropy term is
off, the policy's own parameters are frozen (a shared trunk learns from the value loss alone), the
value clip is off and a KL-adaptive rate schedule does not step. Then training goes on as before.
The refit's frames count toward the run's frames: the compute is unchanged, the policy learns over
N updates fewer.
"""

from __future__ import annotations

from typing import Any

import torch

from automl.schema import RunConfig


def changed(state_segments: list[dict[str, Any]], cfg: RunConfig, weights: dict[str, float]) -> list[str]:
    """What differs from the state's last segment: reward weights by name and the discount."""
    if not state_segments:
        return []
    last = state_segments[-1]
    before = (last.get("reward") or {}).get("scales") or {}
    out = [f"reward.scales.{k}" for k in sorted(set(before) | set(weights))
           if float(before.get(k, 0.0)) != float(weights.get(k, 0.0))]
    discount = (last.get("ppo") or {}).get("discount_factor")
    if discount is not None and float(discount) != cfg.ppo.discount_factor:
        out.append("ppo.discount_factor")
    return out


class ValueRefit:
    """The first `updates` PPO updates of `agent` value-only (module docstring); `step` after every
    env step ends it once they are made."""

    def __init__(self, agent: Any, updates: int, rollouts: int) -> None:
        self.agent, self.left_steps = agent, updates * rollouts
        self.saved = {"value_clip": agent.cfg.value_clip,
                      "entropy_loss_scale": agent.cfg.entropy_loss_scale}
        self.scheduler = agent.scheduler
        value = {id(p) for p in agent.value.parameters()}
        self.frozen = [p for p in agent.policy.parameters() if id(p) not in value and p.requires_grad]
        preprocessor = agent.checkpoint_modules.get("value_preprocessor")
        if preprocessor is not None:  # a fresh normaliser: the new returns' scale, not history's
            for name in ("running_mean", "running_variance", "current_count"):
                fresh = torch.zeros_like if name == "running_mean" else torch.ones_like
                getattr(preprocessor, name).copy_(fresh(getattr(preprocessor, name)))
        agent.cfg.value_clip, agent.cfg.entropy_loss_scale, agent.scheduler = 0.0, 0.0, None
        for p in self.frozen:
            p.requires_grad_(False)
        memory = agent.memory
        self.original_set = memory.set_tensor_by_name

        def zero_advantages(name: str, tensor: torch.Tensor, *args: Any, **kwargs: Any) -> None:
            self.original_set(name, torch.zeros_like(tensor) if name == "advantages" else tensor,
                              *args, **kwargs)
        memory.set_tensor_by_name = zero_advantages
        self.active = True

    def step(self) -> None:
        """One env step done (call after `post_interaction`)."""
        if not self.active:
            return
        self.left_steps -= 1
        if self.left_steps <= 0:
            self.end()

    def end(self) -> None:
        """Back to PPO as configured."""
        if not self.active:
            return
        agent = self.agent
        agent.cfg.value_clip = self.saved["value_clip"]
        agent.cfg.entropy_loss_scale = self.saved["entropy_loss_scale"]
        agent.scheduler = self.scheduler
        for p in self.frozen:
            p.requires_grad_(True)
        agent.memory.set_tensor_by_name = self.original_set
        self.active = False


class Idle:
    """No refit: every step is PPO's."""

    def step(self) -> None:
        """Nothing to do."""


IDLE = Idle()


def start(agent: Any, cfg: RunConfig, segments: list[dict[str, Any]] | None,
          weights: dict[str, float], out: Any) -> ValueRefit | None:
    """The refit for a run resumed from a state with `segments` (None: not resumed), where asked
    and the reward changed; a line on `out` says so."""
    if segments is None or cfg.ppo.value_refit_updates <= 0:
        return None
    keys = changed(segments, cfg, weights)
    if not keys:
        return None
    print(f"train_one: the reward changed since the state's last segment ({', '.join(keys)}): "
          f"the value normaliser is reset and the first {cfg.ppo.value_refit_updates} update(s) "
          "fit the critic alone", file=out)
    return ValueRefit(agent, cfg.ppo.value_refit_updates, cfg.ppo.rollouts)
