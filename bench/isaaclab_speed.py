"""Isaac Lab task speed on this machine, with ratios to a baseline run in this invocation.

    uv run python bench/isaaclab_speed.py [--task Isaac-Cartpole] [--num-envs 16,256] [--device cpu]
        [--train-frames 20000]

Env-only: steps x environments per second of the task with random actions (Newton, MuJoCo-Warp on
cpu). Training: train_one's frames/s on the same task and size (conf/env/isaaclab.yaml otherwise);
the ratio training / env-only is the share of time left to the simulator. Kernels are compiled
before timing (a first build and a few steps), so the figures are those of a warm kernel cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from automl.config import load_run_config  # noqa: E402
from automl.envs.isaaclab_task import make_isaaclab_env  # noqa: E402
from automl.paths import RunPaths  # noqa: E402
from automl.run.train import train  # noqa: E402


def env_frames_per_s(task: str, num_envs: int, device: str, steps: int) -> tuple[float, float]:
    """(frames/s stepping the task with random actions, seconds to build it)."""
    start = time.perf_counter()
    env = make_isaaclab_env(task=task, num_envs=num_envs, device=torch.device(device), seed=0, params={})
    built = time.perf_counter() - start
    env.reset(seed=0)
    generator = torch.Generator().manual_seed(0)
    shape = (num_envs, *env.action_space.shape)
    for _ in range(5):  # first steps compile or load kernels
        env.step(torch.rand(shape, generator=generator) * 2 - 1)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(torch.rand(shape, generator=generator) * 2 - 1)
    elapsed = time.perf_counter() - start
    env.close()
    return steps * num_envs / elapsed, built


def train_frames_per_s(task: str, num_envs: int, device: str, frames: int) -> float:
    cfg = load_run_config(["env=isaaclab", f"env.task={task}", f"env.num_envs={num_envs}",
                           f"env.device={device}", f"train.frames={frames}",
                           f"train.eval_frequency={max(frames // 4, num_envs)}", "train.quiet=true"])
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, RunPaths(Path(tmp) / "run"))
    return summary.metrics["frames_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="Isaac-Cartpole")
    parser.add_argument("--num-envs", default="16,256", help="comma-separated sizes")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=200, help="env-only steps timed per size")
    parser.add_argument("--train-frames", type=int, default=20000, help="train_one frames per size")
    args = parser.parse_args()
    print(f"task {args.task}, device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'envs':>6} {'build s':>8} {'env-only f/s':>13} {'train f/s':>10} {'train/env':>10}")
    for num_envs in (int(n) for n in args.num_envs.split(",")):
        env_fps, built = env_frames_per_s(args.task, num_envs, args.device, args.steps)
        train_fps = train_frames_per_s(args.task, num_envs, args.device, args.train_frames)
        print(f"{num_envs:>6} {built:>8.1f} {env_fps:>13,.0f} {train_fps:>10,.0f} {train_fps / env_fps:>10.2f}",
              flush=True)


if __name__ == "__main__":
    main()
