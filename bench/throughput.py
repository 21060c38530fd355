"""Throughput of the built-in task and of training, with ratios to baselines run in this invocation.

    uv run python bench/throughput.py [--quick] [--device cpu|cuda|both]
    uv run python bench/throughput.py --concurrent 1,2,4,8 [--device cuda] [--num-envs 2048]

Env-only: batched navigation steps/s at 256, 2048, 8192 environments; baseline: the same code at
one environment (the gain from batching). Training: train_one frames/s at 256 environments with the
medium network on CPU (2048 and 8192 on cuda); baseline: env-only steps/s at the same size (the
share of time left to PPO). Targets (2-core CPU): env-only >= 1,000,000 steps/s at 2048;
training >= 15,000 frames/s at 256. GPU: training >= 300,000 frames/s at 2048.

--concurrent: N trials started together on one device (one GPU shared, or the CPU cores split
between them), each its own process forked from the fork server as in a search; aggregate
frames/s = all frames / (last trial's end - first trial's trainer start); baseline: 1 trial.
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
from automl.run.train import train  # noqa: E402


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


def concurrent_frames_per_s(count: int, device: str, num_envs: int, frames: int,
                            server: object) -> tuple[float, list[float]]:
    """Aggregate frames/s of `count` trials sharing the device, and each trial's own frames/s."""
    import json
    import os

    from automl.search.trials.gpus import visible_gpus
    from automl.search.trials.launcher import Slot, default_worker, launch

    threads = max(1, (os.cpu_count() or 1) // count)
    gpu = (visible_gpus() or ["0"])[0] if device == "cuda" else None
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i in range(count):
            run = RunPaths(Path(tmp) / f"trial_{i}")
            overrides = [f"env.num_envs={num_envs}", f"env.device={device}", f"train.frames={frames}",
                         f"train.eval_frequency={frames // 4}", f"train.threads={threads}",
                         "train.quiet=true", f"run_dir={run.root}", f"train.seed={i}"]
            procs.append(launch(number=i, command=[*default_worker(), *overrides], run=run,
                                slot=Slot(index=i, threads=threads, gpu=gpu), forkserver=server))
        codes = [p.process.wait() for p in procs]
        if any(codes):
            tails = "\n".join(p.stderr_tail(5) for p in procs)
            raise SystemExit(f"{count} concurrent trials: exit codes {codes}\n{tails}")
        summaries = [json.loads(p.run.summary.read_text()) for p in procs]
    start = min(s["started_at"] for s in summaries)
    end = max(s["started_at"] + s["wall_s"] for s in summaries)
    return (sum(s["frames"] for s in summaries) / (end - start),
            [s["frames"] / s["wall_s"] for s in summaries])


def concurrent(args: argparse.Namespace) -> None:
    from automl.search.trials.forkserver import ForkServer
    from automl.search.trials.launcher import Slot, trial_env

    counts = [int(x) for x in args.concurrent.split(",")]
    if args.device == "cuda" and not torch.cuda.is_available():
        print("cuda: not measured (no GPU visible)")
        return
    frames = args.frames or (2_000_000 if args.device == "cuda" else 100_000)
    server = ForkServer(env=trial_env(Slot(index=0, threads=1)))
    try:
        server.wait_ready()
        base = None
        for count in counts:
            aggregate, each = concurrent_frames_per_s(count, args.device, args.num_envs, frames, server)
            base = base or aggregate
            print(f"[{args.device}] {count} concurrent trial(s), {args.num_envs} envs each, "
                  f"{frames:,} frames each: {aggregate:>10,.0f} frames/s aggregate  "
                  f"x{aggregate / base:.2f} vs {counts[0]}  (per trial: "
                  f"{', '.join(f'{x:,.0f}' for x in each)})")
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    parser.add_argument("--device", default="both", choices=["cpu", "cuda", "both"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (a search trial on CPU uses 1 by default)")
    parser.add_argument("--concurrent", default="",
                        help="comma-separated trial counts sharing one device, e.g. 1,2,4,8")
    parser.add_argument("--num-envs", type=int, default=2048, help="--concurrent: envs per trial")
    parser.add_argument("--frames", type=int, default=0,
                        help="--concurrent: frames per trial (default 2M on cuda, 100k on cpu)")
    args = parser.parse_args()
    if args.concurrent:
        if args.device == "both":
            parser.error("--concurrent needs --device cpu or --device cuda")
        concurrent(args)
        return
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
