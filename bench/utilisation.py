"""Slot utilisation of a CPU search of short real trials: (sum of the trials' training seconds) /
(search wall seconds x slots). Training seconds = each trial's own wall_s in summary.json (its time
inside the trainer); the search wall is the search loop's, from first launch to last trial end.

    uv run python bench/utilisation.py [--trials 6] [--frames 60000]

Runs the same search twice in this invocation: with the fork server (default) and, as the
baseline, with a cold `python train_one.py` start per trial (--no-fork-server). Target: >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def search(name: str, extra: list[str], args: argparse.Namespace, tmp: Path) -> tuple[float, int]:
    """Utilisation and slot count of one search."""
    from automl.cli import main
    from automl.paths import StudyPaths
    from automl.scheduler import Scheduler

    walls: list[tuple[float, int]] = []
    original = Scheduler.run

    def timed(self: Scheduler):  # noqa: ANN202
        start = time.monotonic()
        try:
            return original(self)
        finally:
            walls.append((time.monotonic() - start, len(self.s.slots)))

    Scheduler.run = timed  # type: ignore[method-assign]
    os.environ["AUTOML_LOG_ROOT"] = str(tmp)
    code = main(["--mode", "search", "--quiet", "--hp-trials", str(args.trials), "--pruner", "none",
                 "--search-method", "random", "--seed", "0", "--budget-hours", "2",
                 "--space", str(ROOT / "templates" / "quick_ppo_validation.yaml"),
                 "--study-name", name, *extra, f"train.frames={args.frames}",
                 f"train.eval_frequency={args.frames // 4}", "env.num_envs=256"])
    Scheduler.run = original  # type: ignore[method-assign]
    if code != 0:
        raise SystemExit(f"{name}: search failed ({code})")
    trained = sum(json.loads(p.read_text())["wall_s"]
                  for p in StudyPaths.for_study(name).trials_dir.glob("*/summary.json"))
    wall, slots = walls[0]
    return trained / (wall * slots), slots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--frames", type=int, default=60000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        forked, slots = search("util_fork", [], args, Path(tmp))
        cold, _ = search("util_cold", ["--no-fork-server"], args, Path(tmp))
    print(f"{args.trials} navigation trials of {args.frames:,} frames, {slots} slots on "
          f"{os.cpu_count()} cores")
    print(f"utilisation with the fork server: {forked:.3f} (target >= 0.9)")
    print(f"utilisation with cold starts:     {cold:.3f} (baseline)")
    print(f"ratio: {forked / cold:.2f}x")


if __name__ == "__main__":
    main()
