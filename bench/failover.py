"""Failover drill: two orchestrators ("machines" a and b, own study folders and host names) on one
PostgreSQL study of the cartpole task; machine a is killed with SIGKILL, with its fork server and
trials, while it runs a trial; b must finish the study.

    uv run python bench/failover.py [--storage URL|throwaway] [--trials 8] [--frames 30000]

Trials: cartpole with 64 environments and 4 mini-batches (about 20 s each on a 2-core CPU), one
slot per machine.

Reports finished trials lost (target 0), trials run twice (0), trials left RUNNING at the end (0),
and the seconds from the kill until the dead machine's trials were failed and queued again
(the heartbeat: stale after 3 x --heartbeat-interval, noticed within one more interval).
`--storage throwaway` (default) starts a temporary local PostgreSQL server (tests/pg_server.py).
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from overhead import storage_url  # noqa: E402

from automl.paths import StudyPaths  # noqa: E402
from automl.search.optuna_loop.search_policy import counts_toward_limit  # noqa: E402
from automl.search.study import records  # noqa: E402
from automl.search.study.recovery import HOST_ENV  # noqa: E402
from automl.search.study.storage import open_storage  # noqa: E402

STUDY = "failover"


def orchestrator(name: str, tmp: Path, url: str, args: argparse.Namespace,
                 resume: bool) -> subprocess.Popen:
    env = {**os.environ, "AUTOML_LOG_ROOT": str(tmp / name), HOST_ENV: f"machine-{name}"}
    argv = [sys.executable, str(ROOT / "automl.py"), "--mode", "search", "--quiet",
            "--storage", url, "--study-name", STUDY, "--space", "templates/cartpole.yaml",
            "--search-method", "random", "--pruner", "none", "--hp-trials", str(args.trials),
            "--workers", "1", "--budget-hours", "1", "--heartbeat-interval", str(args.heartbeat),
            "env=cartpole", "env.num_envs=64", "ppo.mini_batches=4", f"train.frames={args.frames}",
            f"train.eval_frequency={args.frames // 6}", *(["--resume"] if resume else [])]
    log = (tmp / f"{name}.log").open("ab")
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (fork server, trials)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)


def owned_running(url: str, host: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials_of(url) if t.state == TrialState.RUNNING
            and (t.user_attrs.get(records.OWNER) or {}).get(records.HOST) == host]


def wait(condition, timeout: float, what: str):  # noqa: ANN001, ANN201
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def rows(folder: Path) -> list[dict[str, str]]:
    path = folder / "automl" / STUDY / "trial_final.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def drill(url: str, tmp: Path, args: argparse.Namespace) -> None:
    started = time.monotonic()
    a = orchestrator("a", tmp, url, args, resume=False)
    wait(lambda: STUDY in optuna.get_all_study_names(open_storage(StudyPaths(tmp), url)), 300,
         "a to create the study")
    b = orchestrator("b", tmp, url, args, resume=True)
    # Mid-study: a has finished a trial and runs the next one.
    wait(lambda: rows(tmp / "a") and owned_running(url, "machine-a"), 900,
         "machine a to finish one trial and run another")
    finished_before = {t.number: (t.state, t.value) for t in trials_of(url)
                       if t.state.is_finished()}
    doomed = [t.number for t in owned_running(url, "machine-a")]
    for pid in descendants(a.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed = time.monotonic()
    a.wait()
    wait(lambda: all(t.state == TrialState.FAIL for t in trials_of(url) if t.number in doomed),
         600, "the dead machine's trials to be failed")
    recovered_s = time.monotonic() - killed
    code = b.wait(timeout=3600)
    report(url, tmp, args, finished_before=finished_before, doomed=doomed,
           recovered_s=recovered_s, code=code, wall_s=time.monotonic() - started)


def report(url: str, tmp: Path, args: argparse.Namespace, *, finished_before: dict,
           doomed: list[int], recovered_s: float, code: int, wall_s: float) -> None:
    trials = {t.number: t for t in trials_of(url)}
    lost = [n for n, (state, value) in finished_before.items()
            if n not in trials or (trials[n].state, trials[n].value) != (state, value)]
    row_counts = Counter(int(r["trial"]) for m in ("a", "b") for r in rows(tmp / m))
    retried = Counter(t.user_attrs.get(records.RETRY_OF) for t in trials.values()
                      if t.user_attrs.get(records.RETRY_OF) is not None)
    twice = sorted({n for n, c in row_counts.items() if c > 1} | {n for n, c in retried.items() if c > 1})
    running = [n for n, t in trials.items() if t.state == TrialState.RUNNING]
    search = [t for t in trials.values() if t.user_attrs.get(records.PHASE) == "search"]
    counted = sum(counts_toward_limit(t) for t in search)
    redone = [n for n in doomed if retried.get(n) == 1 and any(
        t.user_attrs.get(records.RETRY_OF) == n and t.state == TrialState.COMPLETE
        for t in trials.values())]
    print(f"orchestrator b exit code {code}; study wall {wall_s:.0f} s; "
          f"{args.trials} trials of {args.frames:,} frames, heartbeat {args.heartbeat} s")
    print(f"killed machine a while it ran trial(s) {doomed}")
    print(f"finished trials lost:            {len(lost)} {lost or ''}")
    print(f"trials run twice:                {len(twice)} {twice or ''}")
    print(f"trials left RUNNING at the end:  {len(running)} {running or ''}")
    print(f"dead trials failed and re-queued {recovered_s:.1f} s after the kill; "
          f"re-run to completion by b: {len(redone)} of {len(doomed)}")
    print(f"trials counting toward --hp-trials: {counted} (limit {args.trials})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="throwaway", help="a PostgreSQL URL or `throwaway`")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--frames", type=int, default=30000)
    parser.add_argument("--heartbeat", type=int, default=10, help="--heartbeat-interval (s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, storage_url(args.storage) as url:
        drill(url, Path(tmp), args)


if __name__ == "__main__":
    main()
