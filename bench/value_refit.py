"""The critic after a reward change, with and without `ppo.value_refit_updates`: how many PPO updates
the value loss takes to come back to its level before the change.

    uv run python bench/value_refit.py [--seeds 3] [--parent-frames 300000] [--updates 10]

Per seed: a parent trains navigation from the weighting known to fall (termination 0,
forward_velocity 2.0, arrival_bonus 0) for --parent-frames and saves its state; then three
children continue it for --updates PPO updates each, on the same seed: `same` (reward unchanged:
the level going on), `changed` (termination -200, PPO as configured) and `refit` (termination -200,
`ppo.value_refit_updates=2`). Every run writes one evaluation point per PPO update, so each point's
`Loss / Value loss` is that update's (skrl's mean over its epochs and mini-batches, in return
units: navigation has no value normaliser). The parent's level is the mean of its last 5 updates.
Printed: each child's value loss per update and the first update at or below the parent's level.
Target (the issue's): the refit child back to the level within 5 updates.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ENVS, ROLLOUTS = 256, 24
UPDATE = ENVS * ROLLOUTS
FALLS = ["reward.scales.termination=0", "reward.scales.forward_velocity=2.0",
         "reward.scales.arrival_bonus=0"]
BASE = [f"env.num_envs={ENVS}", f"ppo.rollouts={ROLLOUTS}", f"train.eval_frequency={UPDATE}",
        "train.threads=2", "train.quiet=true"]
CHILDREN = {"same": [], "changed": ["reward.scales.termination=-200"],
            "refit": ["reward.scales.termination=-200", "ppo.value_refit_updates=2"]}


def train(run: Path, overrides: list[str]) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "train_one.py"), *BASE, *overrides,
                           f"run_dir={run}"], capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{run.name} failed: {done.stderr[-2000:]}")


def value_losses(run: Path) -> list[float]:
    from automl.search.trials.tb_reader import read_scalars

    points = read_scalars(run / "tb").get("Loss / Value loss", [])
    return [value for _, value in sorted(points)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--parent-frames", type=int, default=300_000)
    p.add_argument("--updates", type=int, default=10)
    args = p.parse_args()
    parent_frames = -(-args.parent_frames // UPDATE) * UPDATE
    met = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, args.seeds + 1):
            parent = Path(tmp) / f"parent_{seed}"
            train(parent, [*FALLS, f"train.seed={seed}", f"train.frames={parent_frames}",
                           "train.save_state=true"])
            level = sum(value_losses(parent)[-5:]) / 5
            print(f"seed {seed}: parent's value loss, mean of its last 5 updates: {level:.4g}")
            for name, extra in CHILDREN.items():
                child = Path(tmp) / f"{name}_{seed}"
                train(child, [*FALLS, *extra, f"train.seed={seed}",
                              f"train.frames={parent_frames + args.updates * UPDATE}",
                              f"train.resume_from={parent / 'state.pt'}"])
                losses = value_losses(child)
                back = next((i + 1 for i, v in enumerate(losses) if v <= level), None)
                met += name == "refit" and back is not None and back <= 5
                print(f"  {name:<8} " + " ".join(f"{v:9.4g}" for v in losses)
                      + f"   back at or below the level: {'update ' + str(back) if back else 'never'}")
    print(f"refit back to the parent's level within 5 updates on {met} of {args.seeds} seeds")
    print(f"bench: {datetime.date.today()}, {os.cpu_count()} cores, navigation, {ENVS} envs, "
          f"parents of {parent_frames:,} frames")


if __name__ == "__main__":
    main()
