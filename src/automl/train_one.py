"""Entry point of one run (`uv run train_one.py key=value ...`): compose, check, hand off."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from automl import paths
from automl.config import PRIMARY, check_group_overrides, to_run_config
from automl.errors import EXIT_BAD_INPUT, EXIT_FAILURE, ConfigError


def _fail_bad_input(err: ConfigError) -> None:
    print(f"train_one: error: {err.message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


@hydra.main(version_base=None, config_path=str(paths.conf_dir()), config_name=PRIMARY)
def main(cfg: DictConfig) -> float:
    """Train (or evaluate) and return the final score, so Hydra's sweepers can optimise it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        run_cfg = to_run_config(cfg, choices=dict(hydra_cfg.runtime.choices))
        if run_cfg.mode == "eval":
            from automl.evaluate import evaluate

            metrics = evaluate(run_cfg)
            print(json.dumps(metrics, indent=2))
            return float(metrics.get("score", math.nan))
        from automl.train import train

        root = Path(run_cfg.run_dir) if run_cfg.run_dir else paths.new_run_dir(run_cfg.env.name)
        if multirun and not run_cfg.run_dir:
            root = Path(hydra_cfg.runtime.output_dir)
        summary = train(run_cfg, paths.RunPaths(root))
    except ConfigError as err:
        _fail_bad_input(err)
        raise AssertionError("unreachable") from None
    score = summary.score if summary.score is not None else math.nan
    if summary.status != "completed" and not multirun:
        sys.exit(EXIT_FAILURE)
    return score


def run() -> None:
    """Check `group=option` overrides before Hydra sees them, then hand off to Hydra."""
    args = sys.argv[1:]
    # The root shim drops its folder from sys.path so that automl.py cannot shadow this package.
    # The package is imported now; put the working folder back, last, so that a user's own
    # `env.factory=my_pkg.my_env:make` beside it imports (trials run from the repository root).
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    if not any(a in ("-m", "--multirun") for a in args):
        try:
            check_group_overrides([a for a in args if not a.startswith("-")])
            from automl.config import compose

            compose([a for a in args if not a.startswith("-")])
        except ConfigError as err:
            _fail_bad_input(err)
    main()
