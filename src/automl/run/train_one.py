"""Entry point of one run (`uv run train_one.py key=value ...`): compose, check, hand off."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from automl import paths, presets
from automl.config import PRIMARY, compose, compose_with_choices, to_run_config
from automl.errors import EXIT_BAD_INPUT, EXIT_FAILURE, ConfigError


def _fail_bad_input(err: ConfigError) -> None:
    print(f"train_one: error: {err.message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def execute(cfg: DictConfig, choices: dict[str, Any], *, output_dir: str | None = None) -> float:
    """Train (or evaluate) a composed config; returns the final score (NaN when it has none).

    `output_dir`: Hydra's job folder under --multirun, the run folder when `run_dir` is unset.
    Exits 1 when a run outside --multirun does not complete."""
    run_cfg = to_run_config(cfg, choices=choices)
    if run_cfg.mode == "export":
        from automl.run.export import export_checkpoint

        assert run_cfg.checkpoint is not None  # RunConfig.check
        checkpoint = Path(run_cfg.checkpoint)
        print(json.dumps(export_checkpoint(checkpoint, Path(run_cfg.run_dir or checkpoint.parent)),
                         indent=2))
        return math.nan
    if run_cfg.mode == "eval":
        from automl.run.evaluate import evaluate

        metrics = evaluate(run_cfg)
        print(json.dumps(metrics, indent=2))
        return float(metrics.get("score", math.nan))
    from automl.run.train import train

    if run_cfg.run_dir:
        root = Path(run_cfg.run_dir)
    else:
        root = Path(output_dir) if output_dir else paths.new_run_dir(run_cfg.env.name)
    if run_cfg.train.schedule:  # segments with their own values (run/schedule.py)
        from automl.run.schedule import replay

        summary = replay(cfg, choices, run_cfg, paths.RunPaths(root))
    else:
        summary = train(run_cfg, paths.RunPaths(root))
    if summary.status != "completed" and output_dir is None:
        sys.exit(EXIT_FAILURE)
    return summary.score if summary.score is not None else math.nan


@hydra.main(version_base=None, config_path=str(paths.conf_dir()), config_name=PRIMARY)
def main(cfg: DictConfig) -> float:
    """Hydra's entry point (--multirun and its sweepers, --cfg, hydra.* overrides)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        return execute(cfg, dict(hydra_cfg.runtime.choices),
                       output_dir=hydra_cfg.runtime.output_dir if multirun else None)
    except ConfigError as err:
        _fail_bad_input(err)
        raise AssertionError("unreachable") from None


def needs_hydra(args: list[str]) -> bool:
    """Whether the command line uses Hydra's own features: flags (--multirun, --cfg, --help, ...)
    or `hydra.*` / `hydra/*` overrides. Plain `key=value` runs skip Hydra's app start-up."""
    return any(a.startswith("-") or a.lstrip("+~").removeprefix("override ").startswith("hydra")
               for a in args)


def run() -> None:
    """Compose once and train; Hydra's main only where its own features are asked for."""
    args = sys.argv[1:]
    # The root shims run this module with -P, which keeps the working folder off sys.path so
    # that automl.py cannot shadow this package. The package is imported now; put the working
    # folder back, last, so that a user's own
    # `env.factory=my_pkg.my_env:make` beside it imports (trials run from the repository root).
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    if not needs_hydra(args):
        try:
            execute(*compose_with_choices(args))
        except ConfigError as err:
            _fail_bad_input(err)
        return
    if not any(a in ("-m", "--multirun") for a in args):
        # Hydra's own message for a bad override is a traceback-like text and exit 1. Overrides
        # hold `=` (or delete with `~`); other words are the values of flags (`--cfg job`).
        overrides = [a for a in args if not a.startswith("-") and ("=" in a or a.startswith("~"))]
        try:
            compose(overrides)
        except ConfigError as err:
            _fail_bad_input(err)
    sys.argv[1:] = presets.resolve(args)  # presets in study folders (automl.presets)
    main()


if __name__ == "__main__":
    run()
