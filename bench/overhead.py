"""Orchestrator overhead per trial (scheduling, event-file polling, CSV and YAML writes), measured
with the stand-in worker so no training time is mixed in.

    uv run python bench/overhead.py [--trials 200] [--workers 2] [--storage URL|throwaway]

Runs the search loop in this process twice, with N/4 and N trials, and prints the search loop's own
CPU seconds per trial (set-up and the final reports excluded; process CPU time: the stand-in trials
are other processes) for each and their ratio: the baseline is the small study, so a ratio near 1
means no growth with the number of trials.
Target: < 50 ms per trial.

`--storage URL` runs both studies in that database instead of the journal file (each under a fresh
study name); `--storage throwaway` starts a temporary local PostgreSQL server for it (the tests'
tests/pg_server.py: needs the server binaries, initdb and pg_ctl).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


@contextlib.contextmanager
def storage_url(spec: str | None) -> Iterator[str | None]:
    """The storage to measure: None (journal file), a URL, or a throwaway PostgreSQL server."""
    if spec != "throwaway":
        yield spec
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import start_server

    server = start_server()
    try:
        yield next(server).create_database(f"bench_{os.getpid()}")
    finally:
        server.close()


def run_search(trials: int, workers: int, tmp: Path, storage: str | None = None
               ) -> tuple[float, float]:
    """Orchestrator CPU seconds and wall seconds for a search of `trials` stand-in trials."""
    from automl.cli import main
    from automl.search.optuna_loop.scheduler import Scheduler

    loop_cpu: list[float] = []
    original = Scheduler.run

    def timed_run(self: Scheduler):  # noqa: ANN202 - the search loop alone, not set-up or reports
        start = time.process_time()
        try:
            return original(self)
        finally:
            loop_cpu.append(time.process_time() - start)

    Scheduler.run = timed_run  # type: ignore[method-assign]

    behaviour = tmp / "behaviour.json"
    behaviour.write_text(json.dumps({"seconds_per_point": 0.0,
                                     "score": {"param": "ppo.learning_rate", "target": 3e-4,
                                               "log": True}}))
    worker = f"{sys.executable} {ROOT / 'tests' / 'standin_worker.py'} --behaviour {behaviour}"
    os.environ["AUTOML_LOG_ROOT"] = str(tmp / f"log{trials}")
    wall = time.monotonic()
    flags = ["--storage", storage] if storage else []
    code = main([*flags, "--mode", "search", "--quiet", "--hp-trials", str(trials), "--workers", str(workers),
                 "--search-method", "random", "--pruner", "none", "--budget-hours", "2",
                 "--space", str(ROOT / "templates" / "fine_tuning.yaml"), "--worker", worker,
                 "--study-name", f"overhead{trials}_{int(time.time())}", "train.frames=50000",
                 "train.eval_frequency=10000"])
    Scheduler.run = original  # type: ignore[method-assign]
    if code != 0:
        raise SystemExit(f"search failed with exit code {code}")
    return loop_cpu[0], time.monotonic() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--storage", default=None,
                        help="a database URL, or `throwaway` (default: the journal file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, storage_url(args.storage) as url:
        from automl.search.study.storage import hide_password

        print(f"storage: {hide_password(url) if url else 'journal file'}")
        small = max(10, args.trials // 4)
        cpu_small, wall_small = run_search(small, args.workers, Path(tmp), url)
        cpu_big, wall_big = run_search(args.trials, args.workers, Path(tmp), url)
    per_small, per_big = cpu_small / small * 1000, cpu_big / args.trials * 1000
    print(f"{small:4d} trials: orchestrator CPU {cpu_small:6.2f} s = {per_small:5.1f} ms/trial "
          f"(wall {wall_small:.0f} s)")
    print(f"{args.trials:4d} trials: orchestrator CPU {cpu_big:6.2f} s = {per_big:5.1f} ms/trial "
          f"(wall {wall_big:.0f} s)")
    print(f"growth: {per_big / per_small:.2f}x per trial at {args.trials} vs {small} trials "
          f"(1.0 = none); target < 50 ms/trial")


if __name__ == "__main__":
    main()
