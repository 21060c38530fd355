"""train.schedule: one run trained in segments, each with its own PPO and reward values, as a
population-based training lineage trained them (automl.search.pbt), but from scratch and in one
command: `train_one.py +experiment=<study>_best` replays the winner's schedule.

Each step `{until: FRAMES, values: {key: value}}` trains from the previous step's end (0 for the
first) up to `until` frames with `values` set over the composed config, then the next step continues
the same run from its state.pt (train.resume_from, run/state.py), in the same run folder: its
TensorBoard points continue on the same frame axis, and summary.json, model.pt and state.pt are the
last step's. As in the population, each step starts new episodes (the env is built afresh).
"""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import DictConfig, OmegaConf

from automl.errors import ConfigError
from automl.paths import RunPaths
from automl.schema import RunConfig
from automl.summary import RunSummary

SOURCE = "train.schedule (a preset or the command line)"
MUTABLE_PREFIXES = ("ppo.", "reward.scales.")
SHAPE_KEYS = ("ppo.rollouts", "ppo.mini_batches", "ppo.normalize_observations",
              "ppo.normalize_values")
"""ppo keys a step cannot change: the carried state's shape (automl.search.pbt.explore)."""


def steps(cfg: RunConfig) -> list[tuple[int, dict[str, Any]]]:
    """The checked schedule: (until, values) per step, `until` rising to train.frames."""
    schedule = cfg.train.schedule or []
    out: list[tuple[int, dict[str, Any]]] = []
    last = 0
    for i, step in enumerate(schedule):
        key = f"train.schedule[{i}]"
        if set(step) - {"until", "values"} or not isinstance(step.get("until"), int):
            raise ConfigError(file=SOURCE, key=key, value=step,
                              rule="a step is {until: FRAMES, values: {key: value}}",
                              fix="write each step as {until: 200000, values: {ppo.learning_rate: 3e-4}}")
        until, values = step["until"], step.get("values") or {}
        if until <= last:
            raise ConfigError(file=SOURCE, key=f"{key}.until", value=until,
                              rule=f"it must be above the previous step's end ({last})",
                              fix="list the steps in rising order of `until`")
        for name in values:
            if not str(name).startswith(MUTABLE_PREFIXES) or name in SHAPE_KEYS:
                raise ConfigError(file=SOURCE, key=f"{key}.values.{name}", value=values[name],
                                  rule="a step may set ppo.* and reward.scales.* keys that keep the "
                                       "training state's shape",
                                  fix="remove it (set it for the whole run instead)")
        out.append((until, dict(values)))
        last = until
    if out and last != cfg.train.frames:
        raise ConfigError(file=SOURCE, key=f"train.schedule[{len(out) - 1}].until", value=last,
                          rule=f"the last step must end at train.frames ({cfg.train.frames})",
                          fix=f"set the last step's until to {cfg.train.frames}")
    return out


def replay(cfg: DictConfig, choices: dict[str, Any], run_cfg: RunConfig, run: RunPaths) -> RunSummary:
    """Train every step of the schedule in `run`; stops at a step that does not complete."""
    from automl.config import to_run_config
    from automl.run.train import train

    summary = None
    schedule = steps(run_cfg)
    for i, (until, values) in enumerate(schedule):
        step = copy.deepcopy(cfg)
        for key, value in values.items():
            OmegaConf.update(step, key, value, merge=False, force_add=True)
        OmegaConf.update(step, "train.schedule", None, merge=False)
        OmegaConf.update(step, "train.frames", until, merge=False)
        last = i == len(schedule) - 1
        OmegaConf.update(step, "train.save_state", True if not last else run_cfg.train.save_state,
                         merge=False)
        if i > 0:
            OmegaConf.update(step, "train.resume_from", str(run.state), merge=False)
        summary = train(to_run_config(step, choices=choices), run)
        if summary.status != "completed":
            break
    assert summary is not None
    return summary

