"""MuJoCo: a joint search (PPO + reward weights) against a PPO-only search with gymnasium's default
weights, same wall budget and slots; and training frames/s on each MuJoCo task.

    uv run python bench/reward_search.py --budget-hours 0.5 --workers 2          # Hopper-v5, both
    uv run python bench/reward_search.py --fps --frames 20000                    # every task

Each search's best configuration is re-trained on 3 fresh seeds (`automl.py --mode validate`); the
figure is its validated score, i.e. the episodic return under gymnasium's default weights
(conf/scoring/locomotion.yaml), with the 95% bootstrap interval over the seeds. The baseline is
the PPO-only search (templates/hopper_ppo_only.yaml) in the same invocation.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SPACES = {"joint": "templates/hopper.yaml", "ppo_only": "templates/hopper_ppo_only.yaml"}
FPS_TASKS = ("hopper", "walker2d", "halfcheetah", "ant", "humanoid")


def search_and_validate(kind: str, args: argparse.Namespace) -> dict[str, object]:
    """One search of `--budget-hours`, then its best configuration on `--validate-seeds` seeds."""
    from automl import paths
    from automl.analysis.export import preset_name
    from automl.cli import main
    from automl.paths import StudyPaths

    name = f"mujoco_{kind}_{args.seed}"
    common = ["--quiet", "--study-name", name]
    if args.workers:
        common += ["--workers", str(args.workers)]
    if main(["--mode", "search", "--space", SPACES[kind], "--budget-hours", str(args.budget_hours),
             "--hp-trials", "10000", "--seed", str(args.seed), *common, "env=hopper",
             *args.overrides]) != 0:
        raise SystemExit(f"{name}: search failed")
    main(["--mode", "validate", "--validate-top", "1", "--validate-seeds", str(args.validate_seeds),
          "--budget-hours", str(args.validate_hours), *common])
    # validate exports a Hydra preset into conf/experiment/: a benchmark leaves none behind.
    (paths.conf_dir() / "experiment" / f"{preset_name(name)}.yaml").unlink(missing_ok=True)
    study = StudyPaths.for_study(name)
    with study.validation_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    with study.trial_final_csv.open() as handle:
        trials = list(csv.DictReader(handle))
    reasons: dict[str, int] = {}
    for row in trials:
        reasons[row["stop_reason"]] = reasons.get(row["stop_reason"], 0) + 1
    return {"trials": reasons, **(rows[0] if rows else {})}


def frames_per_second(task: str, frames: int, log_root: Path) -> float:
    """A short train_one run on one task, its frames/s from summary.json."""
    run_dir = log_root / f"fps_{task}"
    subprocess.run([sys.executable, "train_one.py", f"env={task}", f"train.frames={frames}",
                    "train.threads=1", f"run_dir={run_dir}", "train.quiet=true"],
                   cwd=ROOT, check=True, env={**os.environ, "AUTOML_LOG_ROOT": str(log_root)})
    summary = json.loads((run_dir / "summary.json").read_text())
    return float(summary["metrics"]["frames_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-hours", type=float, default=0.5, help="per search")
    parser.add_argument("--validate-hours", type=float, default=0.3,
                        help="per validation: room for 2 rounds of trials on 2 slots, or a seed is cut")
    parser.add_argument("--validate-seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="sampler seed of both searches")
    parser.add_argument("--kinds", default="joint,ppo_only", help="which searches, comma-separated")
    parser.add_argument("--fps", action="store_true", help="measure frames/s per task instead")
    parser.add_argument("--frames", type=int, default=20000, help="frames per --fps run")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.frames=150000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["AUTOML_LOG_ROOT"] = tmp
        if args.fps:
            for task in FPS_TASKS:
                print(f"{task}: {frames_per_second(task, args.frames, Path(tmp)):,.0f} frames/s "
                      f"(8 envs, 1 thread, {args.frames} frames)", flush=True)
            return
        for kind in args.kinds.split(","):
            result = search_and_validate(kind, args)
            print(f"{kind}: trials {result['trials']}; validated return {result.get('mean')} "
                  f"[{result.get('ci_low')}, {result.get('ci_high')}] over seeds {result.get('seeds')}: "
                  f"{result.get('scores')}; search score {result.get('search_score')}", flush=True)


if __name__ == "__main__":
    main()
