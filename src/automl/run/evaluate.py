"""Eval mode: run a saved policy deterministically for N episodes and return its task metrics.

N environments each run one complete episode (the first one that is not a WARMUP episode), so
environments whose episodes end early do not contribute more episodes than the others.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from automl.errors import ConfigError
from automl.run import scoring
from automl.run.episodes import RecentEpisodes
from automl.run.train import reward_weights, shaped_reward
from automl.schema import NetworkConfig, RunConfig


def load_checkpoint(path: Path) -> dict[str, Any]:
    """model.pt as written by a run (weights only: no code is unpickled)."""
    if not path.is_file():
        raise ConfigError(file="command line", key="checkpoint", value=str(path),
                          rule="the file does not exist", fix="point it at a run's model.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input
        raise ConfigError(file="command line", key="checkpoint", value=str(path),
                          rule=f"it is not a model.pt written by train_one ({err})",
                          fix="point it at a run's model.pt") from None
    if not isinstance(state, dict) or "policy" not in state or "network" not in state:
        raise ConfigError(file="command line", key="checkpoint", value=str(path),
                          rule="it is not a model.pt written by train_one",
                          fix="point it at a run's model.pt")
    return state


def evaluate(cfg: RunConfig) -> dict[str, float]:
    """Task metrics over `episodes` episodes, one per environment, actions = the policy's most
    likely ones."""
    from skrl.resources.preprocessors.torch import RunningStandardScaler

    from automl.envs.registry import make_env, resolve_device
    from automl.run.models import build_models, deterministic_action

    assert cfg.checkpoint is not None
    state = load_checkpoint(Path(cfg.checkpoint))
    if state.get("env") != cfg.env.name:
        raise ConfigError(file="command line", key="env", value=cfg.env.name,
                          rule=f"the checkpoint was trained on env `{state.get('env')}`",
                          fix=f"add env={state.get('env')}")
    task, key = (cfg.env.task, "env.task") if cfg.env.kind == "isaaclab" else (cfg.env.gym_id, "env.gym_id")
    if state.get("task") is not None and task != state["task"]:  # recorded since 2026-12-07
        raise ConfigError(file="command line", key=key, value=task,
                          rule=f"the checkpoint was trained on task `{state['task']}`",
                          fix=f"add {key}={state['task']}")
    torch.set_num_threads(cfg.train.threads or os.cpu_count() or 1)
    torch.manual_seed(cfg.train.seed)
    device = resolve_device(cfg.env.device)
    env_cfg = cfg.env
    env_cfg.num_envs = cfg.episodes
    env = make_env(env_cfg, device=device, seed=cfg.train.seed)
    weights = reward_weights(cfg, env)
    network = NetworkConfig(**state["network"])
    policy = build_models(network, env.observation_space, env.action_space, device)["policy"]
    policy.load_state_dict(state["policy"])
    policy.eval()
    scaler = None
    if state["observation_preprocessor"]:
        scaler = RunningStandardScaler(env.observation_space, device=device)
        scaler.load_state_dict(state["observation_preprocessor"])
        scaler.eval()
    first = RecentEpisodes(num_envs=env.num_envs, device=device,
                           episode_metrics=env.episode_metrics, first_only=True, count_warmup=False)
    observations = env.reset(seed=cfg.train.seed)
    with torch.no_grad():
        while not first.complete():
            inputs = scaler(observations) if scaler is not None else observations
            result = env.step(deterministic_action(policy, inputs))
            reward = shaped_reward(result.terms, weights, num_envs=env.num_envs, device=device)
            first.add(reward, result.terminated | result.truncated, result.episode)
            observations = result.observations
    env.close()
    metrics = first.metrics()
    score = scoring.point_score(metrics, cfg.scoring.weights)
    metrics["score"] = score if math.isfinite(score) else math.nan
    metrics["checkpoint"] = str(cfg.checkpoint)  # type: ignore[assignment]
    return metrics

