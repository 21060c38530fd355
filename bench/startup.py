"""Trial start latency: time from "slot free" to the trial's first environment step, for a cold
`python train_one.py` start against a start forked from the warm fork server, in this invocation.

    uv run python bench/startup.py [--runs 3]

Target: the forked start is >= 5x faster than the cold one. Both run the same tiny navigation
trial; the trial writes the Unix time of its first env step into summary.json (`first_step_at`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from automl.paths import RunPaths  # noqa: E402
from automl.search.trials.forkserver import ForkServer  # noqa: E402
from automl.search.trials.launcher import Slot, default_worker, launch  # noqa: E402

OVERRIDES = ["env.num_envs=64", "train.frames=64", "train.eval_frequency=64", "train.quiet=true",
             "train.threads=1"]


def one_start(root: Path, name: str, forkserver: ForkServer | None) -> float:
    run = RunPaths(root / name)
    launched = time.time()
    proc = launch(number=0, command=[*default_worker(), *OVERRIDES, f"run_dir={run.root}"], run=run,
                  slot=Slot(index=0, threads=1), forkserver=forkserver)
    code = proc.process.wait()
    summary = json.loads(run.summary.read_text())
    if code != 0 or summary.get("first_step_at") is None:
        raise RuntimeError(f"{name} failed (exit {code}); see {run.stderr_log}")
    return summary["first_step_at"] - launched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cold = [one_start(root, f"cold{i}", None) for i in range(args.runs)]
        server = ForkServer()
        t0 = time.monotonic()
        server.wait_ready()
        warmup = time.monotonic() - t0
        forked = [one_start(root, f"fork{i}", server) for i in range(args.runs)]
        server.close()
    c, f = statistics.median(cold), statistics.median(forked)
    print(f"cold start   (python train_one.py): median {c:6.2f} s  runs {[round(x, 2) for x in cold]}")
    print(f"forked start (fork server):         median {f:6.2f} s  runs {[round(x, 2) for x in forked]}")
    print(f"fork server warm-up, paid once per search: {warmup:.2f} s")
    print(f"ratio cold / forked: {c / f:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
