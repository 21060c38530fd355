"""An Isaac Lab task learning from its own skrl agent configuration, against the start every Isaac Lab
task had before (conf/ppo/isaaclab.yaml + conf/network/tiny.yaml), at equal frames on the same seeds.

    uv run python bench/isaaclab_start.py [--task Isaac-Cartpole] [--seeds 1,2,3,4,5]
        [--frames 1000000] [--num-envs 256] [--eval-frequency 100000]

Each seed trains the task twice, one run at a time (`train_one.py` subprocesses): `old` is the old
start, `task` the task's own configuration (`env=isaaclab env.task=...` now). Printed: the return
under the task's own weights at each evaluation point (mean over seeds) for both, the final return
per seed, and the paired difference task - old at the end with its two-sided 95% Student t interval
over seeds, and the ratio of the mean final returns (task / old).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from automl import tags  # noqa: E402
from automl.analysis.validation import mean_interval  # noqa: E402
from automl.search.trials.tb_reader import read_scalars  # noqa: E402

STARTS = {"old": ["ppo=isaaclab", "network=tiny"], "task": []}
RETURN = tags.task_metric_tag("return")


def run(task: str, start: str, seed: int, args: argparse.Namespace, folder: Path) -> dict[int, float]:
    """The return at each evaluation point of one training run, by frames."""
    run_dir = folder / f"{start}_{seed}"
    command = [sys.executable, "train_one.py", "env=isaaclab", f"env.task={task}",
               f"env.num_envs={args.num_envs}", f"train.frames={args.frames}",
               f"train.eval_frequency={args.eval_frequency}", f"train.seed={seed}",
               "train.quiet=true", f"run_dir={run_dir}", *STARTS[start]]
    began = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{start} seed {seed} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    points = dict(read_scalars(run_dir / "tb").get(RETURN, []))
    last = points[max(points)] if points else math.nan
    print(f"  {start:>4} seed {seed}: return {last:.3f} at {max(points, default=0):,} frames "
          f"({time.monotonic() - began:.0f} s)", flush=True)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="Isaac-Cartpole")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--eval-frequency", type=int, default=100_000)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    curves: dict[str, list[dict[int, float]]] = {start: [] for start in STARTS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for start in STARTS:
                curves[start].append(run(args.task, start, seed, args, Path(tmp)))
    frames = sorted(set.intersection(*(set(c) for runs in curves.values() for c in runs)))
    print(f"\n{args.task}, {args.num_envs} envs, seeds {args.seeds}: mean return over seeds")
    print(f"{'frames':>10} " + " ".join(f"{s:>8}" for s in STARTS))
    for f in frames:
        print(f"{f:>10,} " + " ".join(f"{np.mean([c[f] for c in curves[s]]):>8.3f}" for s in STARTS))
    end = frames[-1]
    finals = {s: [c[end] for c in curves[s]] for s in STARTS}
    differences = [t - o for t, o in zip(finals["task"], finals["old"], strict=True)]
    low, high = mean_interval(differences)
    print(f"\nfinal return per seed: old {finals['old']}, task {finals['task']}")
    print(f"paired difference task - old at {end:,} frames: mean {np.mean(differences):+.3f}, "
          f"95% t interval [{low:+.3f}, {high:+.3f}] over {len(seeds)} seeds")
    print(f"ratio of mean final returns task / old: {np.mean(finals['task']) / np.mean(finals['old']):.3f}")


if __name__ == "__main__":
    main()
