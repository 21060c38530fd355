"""What a run leaves to load again: model.pt (the weights and what rebuilds the policy, always) and
state.pt, its whole training state, written at its end (train.save_state) and loaded by a run that
continues it (train.resume_from), as population-based training's segments do.

What makes the next PPO update the one an uninterrupted run would make, and so is carried: the
policy and value weights, Adam's moments and step counts, and the observation and value
normalisers (skrl's RunningStandardScaler: running mean, variance and count, updated in each
update's first epoch). skrl's PPO holds nothing else across updates here: no learning-rate
scheduler is configured (`kl_threshold` only stops an update's epochs early, it keeps no state),
the GradScaler is disabled (no mixed precision), and `_rollout` and the `_current_*` fields only
live within one rollout.

Not carried, on purpose:
- The rollout memory and skrl's `_rollout` counter: they are empty at an update boundary. A run
  that ends mid-rollout (train.frames not a multiple of rollouts x num_envs, or a stop) drops
  that partial rollout; the state records how many frames it held (`dropped_frames`).
- The environment and the episodes in progress: the continuing run builds its env afresh and
  starts new episodes, which is why continuation cannot be bit-identical to an uninterrupted
  run; the window of recent episodes that scores evaluation points starts empty too.
- torch's and the env's random streams: the continuing run seeds from its own `train.seed`.
  Its env restarts anyway, and a member that takes over another's state should not replay
  the donor's action noise.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import torch

from automl.envs.base import BatchedEnv
from automl.errors import ConfigError
from automl.paths import RunPaths
from automl.schema import PPOConfig, RunConfig
from automl.typed import to_plain

FORMAT = 1
"""Version of state.pt's layout; a state of another format is refused."""
RESUME_KEY = "train.resume_from"
ENV_SIZES = ("observation size", "action space")
"""The entries of `shape_of` that are the env's sizes rather than keys of the config."""
_SOURCE = "conf/train.yaml or the command line"


@dataclass
class TrainingState:
    """Everything state.pt holds (plain tensors and containers: torch.load(weights_only=True))."""

    frames: int
    """Environment frames trained so far, earlier segments included."""
    updates: int
    """PPO updates made so far, earlier segments included."""
    dropped_frames: int
    """Frames of the last segment's unfinished rollout, stepped but never learned from."""
    shape: dict[str, Any]
    """What a continuing run must match: network sizes and activation, normalisers, and the
    observation and action sizes (see `shape_of`)."""
    policy: dict[str, Any]
    value: dict[str, Any]
    optimizer: dict[str, Any]
    """Adam's state_dict: moments and step count per parameter, and the param groups."""
    observation_preprocessor: dict[str, Any] | None
    """RunningStandardScaler's running_mean, running_variance and current_count; None without."""
    value_preprocessor: dict[str, Any] | None
    segments: list[dict[str, Any]] = field(default_factory=list)
    """For the record, one entry per segment, oldest first: its run dir, the frames it started
    and ended at, and the resolved ppo, reward and network sections it trained with."""
    format: int = FORMAT


SHAPE_DEFAULTS = {"network.shared": False}
"""What a state written before a shape key existed was trained with."""


def action_size(space: gymnasium.Space) -> str:
    """`Discrete(2)` or `Box(6)`: the kind and size of the policy's output."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return f"Discrete({int(space.n)})"
    return f"Box({int(gymnasium.spaces.flatdim(space))})"


def shape_of(cfg: RunConfig, env: BatchedEnv) -> dict[str, Any]:
    """The settings and sizes a state can only be loaded under, by the key a user would change."""
    return {
        "network.policy_hidden_layer_sizes": list(cfg.network.policy_hidden_layer_sizes),
        "network.value_hidden_layer_sizes": list(cfg.network.value_hidden_layer_sizes),
        "network.activation": cfg.network.activation,
        "network.shared": cfg.network.shared,
        "ppo.normalize_observations": cfg.ppo.normalize_observations,
        "ppo.normalize_values": cfg.ppo.normalize_values,
        "observation size": int(gymnasium.spaces.flatdim(env.observation_space)),
        "action space": action_size(env.action_space),
    }


def _state_dict(module: Any) -> dict[str, Any] | None:
    return None if module is None else module.state_dict()


def capture(agent: Any, cfg: RunConfig, env: BatchedEnv, *, weights: dict[str, float],
            run_dir: Path, start: TrainingState | None, frames: int, updates: int,
            dropped_frames: int) -> TrainingState:
    """The agent's training state after `frames` frames in all; `start` is the state this run
    resumed from (None for a run from scratch), whose segments it extends."""
    modules = agent.checkpoint_modules
    segment = {"run_dir": str(run_dir), "start_frames": start.frames if start else 0,
               "end_frames": frames, "ppo": to_plain(cfg.ppo), "reward": {"scales": dict(weights)},
               "network": to_plain(cfg.network)}
    return TrainingState(
        frames=frames, updates=(start.updates if start else 0) + updates,
        dropped_frames=dropped_frames, shape=shape_of(cfg, env),
        policy=agent.policy.state_dict(), value=agent.value.state_dict(),
        optimizer=agent.optimizer.state_dict(),
        observation_preprocessor=_state_dict(modules.get("observation_preprocessor")),
        value_preprocessor=_state_dict(modules.get("value_preprocessor")),
        segments=[*(start.segments if start else []), segment])


def save_model(agent, cfg: RunConfig, env: BatchedEnv, path: Path) -> None:  # noqa: ANN001
    """Weights only (loadable with torch.load(weights_only=True)) and what is needed to rebuild."""
    preprocessor = agent.checkpoint_modules.get("observation_preprocessor")
    discrete = isinstance(env.action_space, gymnasium.spaces.Discrete)
    state = {
        "policy": agent.policy.state_dict(),
        "value": agent.value.state_dict(),
        "observation_preprocessor": preprocessor.state_dict() if preprocessor is not None else {},
        "network": to_plain(cfg.network),
        "env": cfg.env.name,
        "task": cfg.env.task or cfg.env.gym_id,
        "obs_dim": int(env.observation_space.shape[0]),
        "discrete": discrete,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def resumed_from(cfg: RunConfig) -> TrainingState | None:
    """The state train.resume_from names, checked against train.frames; None without one."""
    path = cfg.train.resume_from
    if path is None:
        return None
    resumed = read(path)
    check_frames(resumed, cfg.train.frames, cfg.train.eval_frequency, path)
    return resumed


def save_run(agent: Any, cfg: RunConfig, env: BatchedEnv, run: RunPaths, *,
             weights: dict[str, float], start: TrainingState | None, frames: int,
             offset: int) -> None:
    """state.pt of a run that trained from `offset` to `frames` frames, as of its last update: a
    rollout left unfinished (the run ended or was stopped between two updates) is dropped, its
    frames still counted, as trained."""
    steps = (frames - offset) // env.num_envs
    state = capture(agent, cfg, env, weights=weights, run_dir=run.root, start=start,
                    frames=frames, updates=steps // cfg.ppo.rollouts,
                    dropped_frames=steps % cfg.ppo.rollouts * env.num_envs)
    save(state, run.state)


def save(state: TrainingState, path: Path) -> None:
    """Write state.pt atomically: a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(asdict(state), tmp)
    os.replace(tmp, path)


def _bad_file(path: str, rule: str) -> ConfigError:
    return ConfigError(file=_SOURCE, key=RESUME_KEY, value=path, rule=rule,
                       fix="point train.resume_from at the state.pt of a run trained with "
                           "train.save_state=true, or set train.resume_from=null")


def read(path: str) -> TrainingState:
    """Load state.pt to CPU (load_into moves it to the agent's device); a missing, unreadable or
    foreign file is a ConfigError."""
    if not Path(path).is_file():
        raise _bad_file(path, "there is no such file")
    if not zipfile.is_zipfile(path):
        raise _bad_file(path, "it is not a file written by torch.save")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: torch raises several kinds
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise _bad_file(path, f"it cannot be read as a training state "
                              f"({type(err).__name__}: {first_line})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _bad_file(path, f"it is not a training state of format {FORMAT} (found {found!r})")
    try:
        return TrainingState(**data)
    except TypeError as err:
        raise _bad_file(path, f"it is not a complete training state ({err})") from None


def check_fits(state: TrainingState, cfg: RunConfig, env: BatchedEnv, path: str) -> None:
    """Refuse a state whose network, normalisers or sizes differ from this run's config and env."""
    wanted = shape_of(cfg, env)
    for key, value in wanted.items():
        saved = state.shape.get(key, SHAPE_DEFAULTS.get(key))
        if saved == value:
            continue
        fix = (f"resume with the member's own setting ({key}={_override(saved)}): network "
               "sizes and normalisers are fixed per member; or train from scratch without "
               "train.resume_from")
        if key in ENV_SIZES:
            fix = ("resume on the env the state was trained on, or train from scratch without "
                   "train.resume_from")
        raise ConfigError(file=_SOURCE, key=RESUME_KEY, value=path,
                          rule=f"that state was trained with {key} = {_override(saved)} and this "
                               f"run has {key} = {_override(value)}", fix=fix)


def _override(value: Any) -> str:
    """A value as a command-line override writes it: `[256,128,64]`, `true`."""
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def check_frames(state: TrainingState, frames: int, eval_frequency: int, path: str) -> None:
    """train.frames is the total a resumed run ends at: it must lie beyond the state's frames."""
    if frames <= state.frames:
        raise ConfigError(
            file=_SOURCE, key="train.frames", value=frames,
            rule=f"it is the total a resumed run ends at, and {path} has already trained "
                 f"{state.frames} frames",
            fix=f"set train.frames above {state.frames}, e.g. "
                f"train.frames={state.frames + eval_frequency}")


def load_into(agent: Any, state: TrainingState, *, ppo: PPOConfig) -> None:
    """Put the state into a freshly built agent (same shape: check_fits), then apply this run's
    learning rate: Adam's state_dict brings back the saved one with its param groups. Under a
    KL-adaptive schedule a run that keeps the last segment's `learning_rate` keeps the rate the
    schedule had reached; a changed `learning_rate` restarts the schedule from it."""
    agent.policy.load_state_dict(state.policy)
    agent.value.load_state_dict(state.value)
    agent.optimizer.load_state_dict(state.optimizer)
    last = state.segments[-1]["ppo"] if state.segments else {}
    adapted = ppo.learning_rate_scheduler is not None \
        and last.get("learning_rate_scheduler") == ppo.learning_rate_scheduler \
        and last.get("learning_rate") == ppo.learning_rate
    if not adapted:
        for group in agent.optimizer.param_groups:
            group["lr"] = ppo.learning_rate
    for name in ("observation_preprocessor", "value_preprocessor"):
        saved = getattr(state, name)
        if saved is not None:
            agent.checkpoint_modules[name].load_state_dict(saved)
