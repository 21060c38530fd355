"""Slot utilisation of a CPU search of short real trials: (sum of the trials' training seconds) /
(search wall seconds x slots). Training seconds = each trial's own wall_s in summary.json (its time
inside the trainer, from building its env to writing its summary); the search wall is the search
loop's, from its start to the end of its last trial.

    uv run python bench/utilisation.py [--trials 6] [--frames 60000]

Runs the same search twice in this invocation: with the fork server (default) and, as the
baseline, with a cold `python train_one.py` start per trial (--no-fork-server). Target: >= 0.9.

Where the idle slot-seconds go, per search: `start` (launch to the trainer's clock: fork or cold
start, imports, composing the config), `end` (summary written to the orchestrator seeing the exit),
`refill` (exit seen to the next launch on that slot) and `tail` (slots left idle at the end because
no trial was left to start while the last ones finished).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


@dataclass
class Timeline:
    """Unix times seen by the orchestrator: search start/end, and each trial's launch, slot, exit."""

    start: float = 0.0
    end: float = 0.0
    slots: int = 0
    launched: dict[int, tuple[float, int]] = field(default_factory=dict)
    seen: dict[int, float] = field(default_factory=dict)


def search(name: str, extra: list[str], args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """Run one search, return its utilisation and its idle slot-seconds by phase."""
    from automl.cli import main
    from automl.paths import StudyPaths
    from automl.search.optuna_loop import scheduler, trial_start

    line = Timeline()
    originals = trial_start.launch, scheduler.Scheduler._finish, scheduler.Scheduler.run

    def launch(**kwargs):  # noqa: ANN003, ANN202
        line.launched[kwargs["number"]] = (time.time(), kwargs["slot"].index)
        return originals[0](**kwargs)

    def finish(self, r, code):  # noqa: ANN001, ANN202
        line.seen[r.trial.number] = time.time()
        return originals[1](self, r, code)

    def run(self):  # noqa: ANN001, ANN202
        line.start, line.slots = time.time(), len(self.s.slots)
        try:
            return originals[2](self)
        finally:
            line.end = time.time()

    trial_start.launch, scheduler.Scheduler._finish, scheduler.Scheduler.run = launch, finish, run
    os.environ["AUTOML_LOG_ROOT"] = str(tmp)
    try:
        code = main(["--mode", "search", "--quiet", "--hp-trials", str(args.trials), "--pruner", "none",
                     "--search-method", "random", "--seed", "0", "--budget-hours", "2",
                     "--space", str(ROOT / "templates" / "quick_ppo_validation.yaml"),
                     "--study-name", name, *extra, f"train.frames={args.frames}",
                     f"train.eval_frequency={args.frames // 4}", "env.num_envs=256"])
    finally:
        trial_start.launch, scheduler.Scheduler._finish, scheduler.Scheduler.run = originals
    if code != 0:
        raise SystemExit(f"{name}: search failed ({code})")
    trials = StudyPaths.for_study(name)
    trained = start = end = 0.0
    by_slot: dict[int, list[tuple[float, float]]] = {}
    for number, (launched, slot) in line.launched.items():
        summary = json.loads(trials.trial_run(number).summary.read_text())
        trained += summary["wall_s"]
        start += summary["started_at"] - launched
        end += line.seen[number] - (summary["started_at"] + summary["wall_s"])
        by_slot.setdefault(slot, []).append((launched, line.seen[number]))
    refill = tail = 0.0
    for runs in by_slot.values():
        runs.sort()
        refill += runs[0][0] - line.start + sum(
            runs[i + 1][0] - runs[i][1] for i in range(len(runs) - 1))
        tail += line.end - runs[-1][1]
    tail += (line.slots - len(by_slot)) * (line.end - line.start)
    wall = line.end - line.start
    return {"utilisation": trained / (wall * line.slots), "slots": line.slots, "wall": wall,
            "trained": trained, "start": start, "end": end, "refill": refill, "tail": tail,
            "trials": len(line.launched)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--frames", type=int, default=60000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        forked = search("util_fork", [], args, Path(tmp))
        cold = search("util_cold", ["--no-fork-server"], args, Path(tmp))
    print(f"{args.trials} navigation trials of {args.frames:,} frames, {forked['slots']} slots on "
          f"{os.cpu_count()} cores")
    print(f"utilisation with the fork server: {forked['utilisation']:.3f} (target >= 0.9)")
    print(f"utilisation with cold starts:     {cold['utilisation']:.3f} (baseline)")
    print(f"ratio: {forked['utilisation'] / cold['utilisation']:.2f}x")
    print("idle slot-seconds      fork server   cold start")
    for key in ("start", "end", "refill", "tail"):
        print(f"  {key:<8} (total)   {forked[key]:9.2f} s   {cold[key]:9.2f} s")
    for key in ("start", "end", "refill"):
        print(f"  {key:<8} per trial {forked[key] / forked['trials']:9.3f} s   "
              f"{cold[key] / cold['trials']:9.3f} s")
    for label, r in (("fork server", forked), ("cold start", cold)):
        idle = r["wall"] * r["slots"] - r["trained"]
        print(f"  {label}: {r['trained']:.1f} s trained in {r['wall']:.1f} s x {r['slots']} slots; "
              f"idle {idle:.2f} s = start + end + refill + tail "
              f"{r['start'] + r['end'] + r['refill'] + r['tail']:.2f} s")


if __name__ == "__main__":
    main()
