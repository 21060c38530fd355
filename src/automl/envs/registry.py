"""Build the run's environment from `env.*`: device and size resolved, kind dispatched."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from automl import paths
from automl.envs.base import BatchedEnv
from automl.schema import CPU_ENVS, GPU_ENVS, EnvConfig


def cap_gpu_memory(device: torch.device, environ: Mapping[str, str] = os.environ) -> float | None:
    """On a GPU, cap torch's allocations at the trial's share of the GPU's memory (set by the
    launcher from --gpu-fraction; a run started by hand has none). Returns the cap, or None. The
    simulator's own memory (Warp's, Isaac Lab's physics) is not torch's and is not capped."""
    share = environ.get(paths.GPU_SHARE_ENV)
    if device.type != "cuda" or not share:
        return None
    fraction = float(share)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from automl.errors import ConfigError

        raise ConfigError(file="conf/env or the command line", key="env.device", value=device,
                          rule="no CUDA device is visible to torch", fix="use env.device=auto or cpu")
    return torch.device(device)


def resolve_num_envs(cfg: EnvConfig, device: torch.device) -> int:
    """`env.num_envs`, or when null 2048 on a GPU and 256 on CPU."""
    if cfg.num_envs is not None:
        return cfg.num_envs
    return GPU_ENVS if device.type == "cuda" else CPU_ENVS


def make_env(cfg: EnvConfig, *, device: torch.device, seed: int) -> BatchedEnv:
    """The environment of `env.kind` (navigation, gymnasium, isaaclab or custom), `env.num_envs` of
    it on `device`."""
    num_envs = resolve_num_envs(cfg, device)
    if cfg.kind == "navigation":
        from automl.envs.navigation import NavigationEnv
        from automl.envs.navigation_params import make_params

        try:
            make_params(**cfg.params)  # the task's own check of stage and parameter names
        except (TypeError, ValueError) as err:
            from automl.errors import ConfigError

            raise ConfigError(file="conf/env or the command line", key="env.params", value=cfg.params,
                              rule=f"the navigation task rejects them: {err}",
                              fix="use stage 1 or 2 and the fields of NavigationParams "
                                  "(src/automl/envs/navigation_params.py)") from None
        return NavigationEnv(num_envs=num_envs, device=device, seed=seed, **cfg.params)
    if cfg.kind == "gymnasium":
        from automl.envs.gym_adapter import GymVectorEnv

        assert cfg.gym_id is not None  # checked by EnvConfig.check
        return GymVectorEnv(gym_id=cfg.gym_id, num_envs=num_envs, device=device, seed=seed,
                            **cfg.params)
    if cfg.kind == "isaaclab":
        from automl.envs.isaaclab_task import make_isaaclab_env

        assert cfg.task is not None  # checked by EnvConfig.check
        return make_isaaclab_env(task=cfg.task, num_envs=num_envs, device=device, seed=seed,
                                 params=cfg.params, overrides=cfg.cfg)
    from automl.envs.custom import make_custom_env

    assert cfg.factory is not None
    return make_custom_env(factory=cfg.factory, num_envs=num_envs, device=device, seed=seed,
                           params=cfg.params)
