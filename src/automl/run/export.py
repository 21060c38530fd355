"""Export mode: a run's policy (model.pt), with its observation normaliser, as ONNX and TorchScript
for deployment. Observations in, the policy's most likely action out, as eval mode acts: the mean of
a Gaussian policy, the arg-max of a categorical one (an int64 index).

    uv run train_one.py mode=export checkpoint=RUN/model.pt   # RUN/policy.onnx, RUN/policy.ts.pt

Nothing about the environment is needed (the sizes come from the checkpoint), so a policy trained
on an Isaac Lab task exports on a machine without its assets. Each file is checked before it is
kept: on 100 observations its actions must equal torch's within 1e-5 (ONNX through onnx's
reference evaluator, TorchScript through torch.jit.load).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import nn

from automl.schema import NetworkConfig

TOLERANCE = 1e-5
"""Largest difference allowed between an exported file's actions and torch's."""
CHECK_OBSERVATIONS = 100
SCALER_EPSILON, SCALER_CLIP = 1e-8, 5.0
"""skrl's RunningStandardScaler defaults, which training uses: clamp((x - mean) / (std + eps))."""


class DeployedPolicy(nn.Module):
    """The policy's deterministic action from raw observations (the normaliser inside)."""

    def __init__(self, body: nn.Module, head: nn.Module | None, *, discrete: bool,
                 scaler: dict[str, torch.Tensor] | None) -> None:
        super().__init__()
        self.body, self.head, self.discrete = body, head, discrete
        self.normalise = scaler is not None
        dim = next(p for p in body.parameters()).shape[1]
        self.register_buffer("obs_mean", (scaler or {}).get("running_mean", torch.zeros(dim)).float())
        self.register_buffer("obs_var", (scaler or {}).get("running_variance", torch.ones(dim)).float())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations
        if self.normalise:
            x = torch.clamp((x - self.obs_mean) / (torch.sqrt(self.obs_var) + SCALER_EPSILON),
                            min=-SCALER_CLIP, max=SCALER_CLIP)
        x = self.body(x)
        if self.discrete:
            return x.argmax(dim=-1, keepdim=True)
        assert self.head is not None
        return self.head(x)


def deployed_policy(state: dict[str, Any]) -> DeployedPolicy:
    """The checkpoint's policy, rebuilt from its weights alone (sizes from their shapes)."""
    from automl.run.models import build_models

    weights = state["policy"]
    obs_dim = int(state.get("obs_dim") or weights["net.0.weight"].shape[1])
    discrete = bool(state.get("discrete", "mean.weight" not in weights))
    if discrete:
        last = max((k for k in weights if k.startswith("net.") and k.endswith(".weight")),
                   key=lambda k: int(k.split(".")[1]))
        action_space: gymnasium.Space = gymnasium.spaces.Discrete(int(weights[last].shape[0]))
    else:
        action_space = gymnasium.spaces.Box(-1.0, 1.0, (int(weights["mean.weight"].shape[0]),))
    observation_space = gymnasium.spaces.Box(-math.inf, math.inf, (obs_dim,))
    policy = build_models(NetworkConfig(**state["network"]), observation_space, action_space,
                          torch.device("cpu"))["policy"]
    policy.load_state_dict(weights)
    scaler = state.get("observation_preprocessor") or None
    model = DeployedPolicy(policy.net, None if discrete else policy.mean, discrete=discrete,
                           scaler=scaler)
    return model.eval()


def export_checkpoint(checkpoint: Path, out_dir: Path) -> dict[str, Any]:
    """policy.onnx and policy.ts.pt in `out_dir`, each checked against torch; what was written."""
    from automl.run.evaluate import load_checkpoint

    state = load_checkpoint(checkpoint)
    model = deployed_policy(state)
    obs_dim = int(model.obs_mean.shape[0])
    generator = torch.Generator().manual_seed(0)
    spread = torch.sqrt(model.obs_var) if model.normalise else torch.ones(obs_dim)
    observations = model.obs_mean + 2.0 * spread * torch.randn(CHECK_OBSERVATIONS, obs_dim,
                                                              generator=generator)
    with torch.no_grad():
        expected = model(observations)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path, script_path = out_dir / "policy.onnx", out_dir / "policy.ts.pt"
    differences = {"onnx": _write_onnx(model, observations, expected, onnx_path),
                   "torchscript": _write_torchscript(model, observations, expected, script_path)}
    return {"onnx": str(onnx_path), "torchscript": str(script_path), "inputs": ["observations"],
            "observation_size": obs_dim, "discrete": model.discrete, "normalised": model.normalise,
            "max_difference": differences, "env": state.get("env"), "task": state.get("task")}


def _keep(tmp: Path, path: Path, name: str, difference: float) -> float:
    """Move the checked file into place; a file whose actions differ is removed, never kept."""
    if not difference <= TOLERANCE:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"the exported {name} policy's actions differ from torch's by "
                           f"{difference:.3g} (> {TOLERANCE:g}) on {CHECK_OBSERVATIONS} observations")
    os.replace(tmp, path)
    return difference


def _write_onnx(model: DeployedPolicy, observations: torch.Tensor, expected: torch.Tensor,
                path: Path) -> float:
    """The ONNX file (a batch of any size), checked with onnx's reference evaluator."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    tmp = path.with_name(path.name + ".tmp")
    torch.onnx.export(model, (observations[:2],), str(tmp), input_names=["observations"],
                      output_names=["actions"], dynamic_axes={"observations": {0: "batch"},
                                                              "actions": {0: "batch"}},
                      dynamo=False)
    onnx.checker.check_model(onnx.load(str(tmp)))
    [actions] = ReferenceEvaluator(str(tmp)).run(None, {"observations": observations.numpy()})
    difference = float(np.max(np.abs(np.asarray(actions, dtype=np.float64)
                                     - expected.numpy().astype(np.float64))))
    return _keep(tmp, path, "ONNX", difference)


def _write_torchscript(model: DeployedPolicy, observations: torch.Tensor, expected: torch.Tensor,
                       path: Path) -> float:
    """The TorchScript file (traced), checked by loading it back."""
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        traced = torch.jit.trace(model, observations[:2])
    traced.save(str(tmp))
    with torch.no_grad():
        actions = torch.jit.load(str(tmp))(observations)
    difference = float((actions.double() - expected.double()).abs().max())
    return _keep(tmp, path, "TorchScript", difference)
