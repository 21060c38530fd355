"""Slot utilisation of population-based training with uneven segments: (sum of the segments'
training seconds) / (the population loop's wall seconds x slots), with and without the generation
barrier, in one invocation.

    uv run python bench/pbt_utilisation.py [--population 8] [--segments 6] [--seconds 3] [--spread 0.3]

Segments are the stand-in worker's (tests/standin_worker.py: scripted scores, no torch), each
lasting `--seconds` x a factor from U(1 - spread, 1 + spread) drawn from its seed, so the measure
is the orchestration's alone: how long slots wait for a generation's slowest member (the barrier,
`--pbt-barrier`: the baseline) or for nothing (each member's next segment decided as its own ends,
the default). Training seconds are each segment's own wall_s (summary.json); the loop's wall runs
from PbtLoop.run's start to its end. Also printed: the share of slot time occupied by a segment
process, from its launch to the loop seeing it exit (so the stand-in's own start, a cold Python
process, counts as busy: what is left idle is the loop's deciding, queueing and launching, the
barrier's waits and the end's tail). Target: >= 0.95 without the barrier at a +-30% spread.
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
sys.path.insert(0, str(ROOT / "tests"))

INTERVAL = 10_000
"""Frames per segment: one evaluation point (train.eval_frequency) each."""


def population(name: str, extra: list[str], args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """Run one population; its utilisation, wall, training seconds and segment count."""
    from search_harness import run_search, search_argv, write_behaviour

    from automl.paths import StudyPaths
    from automl.search.pbt import loop

    behaviour = write_behaviour(tmp, name, seconds_per_point=args.seconds,
                                time_jitter=args.spread, horizon=args.segments * INTERVAL,
                                noise=0.05, score={"param": "ppo.learning_rate", "target": 3e-4,
                                                   "log": True})
    span: dict[str, float] = {}
    launched: dict[int, float] = {}
    occupied: list[float] = []
    original, launch, finish = loop.PbtLoop.run, loop.launch, loop.PbtLoop._finish

    def run(self):  # noqa: ANN001, ANN202
        span["start"] = time.time()
        try:
            return original(self)
        finally:
            span["end"] = time.time()

    def timed_launch(**kwargs):  # noqa: ANN003, ANN202
        launched[kwargs["number"]] = time.time()
        return launch(**kwargs)

    def timed_finish(self, r, code):  # noqa: ANN001, ANN202
        occupied.append(time.time() - launched[r.trial.number])
        return finish(self, r, code)

    loop.PbtLoop.run, loop.launch, loop.PbtLoop._finish = run, timed_launch, timed_finish  # type: ignore[method-assign]
    os.environ["AUTOML_LOG_ROOT"] = str(tmp)
    argv = search_argv(study=name, space="pbt.yaml", behaviour=behaviour, hp_trials=1,
                       workers=args.slots, budget_hours=1.0,
                       flags=["--search-method", "pbt", "--population", str(args.population),
                              "--pbt-interval", str(INTERVAL), "--seed", "0", *extra],
                       overrides=[f"train.frames={args.segments * INTERVAL}",
                                  f"train.eval_frequency={INTERVAL}"])
    try:
        code = run_search(argv)
    finally:
        loop.PbtLoop.run, loop.launch, loop.PbtLoop._finish = original, launch, finish  # type: ignore[method-assign]
    if code != 0:
        raise SystemExit(f"{name}: the population failed ({code})")
    study = StudyPaths.for_study(name)
    walls = [json.loads(p.read_text())["wall_s"] for p in study.trials_dir.glob("*/summary.json")]
    wall = span["end"] - span["start"]
    return {"utilisation": sum(walls) / (wall * args.slots), "wall": wall, "trained": sum(walls),
            "segments": len(walls), "occupied": sum(occupied) / (wall * args.slots)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--segments", type=int, default=6, help="segments per member")
    parser.add_argument("--seconds", type=float, default=3.0, help="a segment's mean seconds")
    parser.add_argument("--spread", type=float, default=0.3, help="+- share of a segment's time")
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        barrier = population("pbt_barrier", ["--pbt-barrier"], args, Path(tmp))
        free = population("pbt_free", [], args, Path(tmp))
    print(f"{args.population} members x {args.segments} segments of {args.seconds:g} s "
          f"+-{args.spread:.0%} (stand-in worker), {args.slots} slots on {os.cpu_count()} cores")
    for label, r in (("no barrier (default)", free), ("barrier (--pbt-barrier)", barrier)):
        print(f"  {label:<24} utilisation {r['utilisation']:.3f}: {r['trained']:.1f} s trained in "
              f"{r['wall']:.1f} s x {args.slots} slots, {r['segments']:.0f} segments; slots "
              f"occupied (launch to exit seen) {r['occupied']:.3f}")
    print(f"ratio: {free['utilisation'] / barrier['utilisation']:.3f}x (target: >= 0.95 without the "
          "barrier)")


if __name__ == "__main__":
    main()
