"""Throughput of the built-in task and of training, with ratios to baselines run in this invocation.

    uv run python bench/throughput.py [--quick] [--device cpu|cuda|both]

Env-only: batched navigation steps/s at 256, 2048, 8192 environments; baseline: the same code at
one environment (the gain from batching). Training: train_one frames/s at 256 environments with the
medium network on CPU (2048 and 8192 on cuda); baseline: env-only steps/s at the same size (the
share of time left to PPO). Targets (2-core CPU): env-only >= 1,000,000 steps/s at 2048;
training >= 15,000 frames/s at 256. GPU: training >= 300,000 frames/s at 2048.
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
from automl.envs.navigation import NavigationEnv  # noqa: E402
from automl.paths import RunPaths  # noqa: E402
from automl.train import train  # noqa: E402


def env_steps_per_s(num_envs: int, device: str, seconds: float) -> float:
    env = NavigationEnv(num_envs=num_envs, device=device, seed=0)
    env.reset()
    gen = torch.Generator(device=device).manual_seed(0)
    actions = [torch.rand(num_envs, 2, generator=gen, device=device) * 2 - 1 for _ in range(64)]
    with torch.no_grad():
        for a in actions[:10]:
            env.step(a)
        if device == "cuda":
            torch.cuda.synchronize()
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for a in actions:
                env.step(a)
            steps += len(actions)
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return steps * num_envs / elapsed


def train_frames_per_s(num_envs: int, device: str, frames: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_run_config([f"env.num_envs={num_envs}", f"env.device={device}",
                               f"train.frames={frames}", f"train.eval_frequency={frames // 4}",
                               f"train.threads={threads}", "train.quiet=true", f"run_dir={tmp}"])
        summary = train(cfg, RunPaths(Path(tmp)))
    return summary.frames / summary.wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    parser.add_argument("--device", default="both", choices=["cpu", "cuda", "both"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (a search trial on CPU uses 1 by default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds = 1.0 if args.quick else 3.0
    devices = ["cpu", "cuda"] if args.device == "both" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("cuda: not measured (no GPU visible)")
        devices.remove("cuda")
    for device in devices:
        base = env_steps_per_s(1, device, seconds)
        print(f"[{device}] env-only baseline, 1 env: {base:,.0f} steps/s")
        env_rate = {}
        for n in (256, 2048, 8192):
            env_rate[n] = env_steps_per_s(n, device, seconds)
            print(f"[{device}] env-only {n:>5} envs: {env_rate[n]:>12,.0f} steps/s  "
                  f"x{env_rate[n] / base:,.0f} vs 1 env")
        sizes = (256,) if device == "cpu" else (2048, 8192)
        for n in sizes:
            frames = (60_000 if args.quick else 300_000) * (1 if device == "cpu" else 20)
            fps = train_frames_per_s(n, device, frames, args.threads)
            print(f"[{device}] train_one {n:>5} envs, medium network: {fps:>10,.0f} frames/s  "
                  f"= {fps / env_rate.get(n, env_steps_per_s(n, device, seconds)):.3f} of env-only")


if __name__ == "__main__":
    main()
