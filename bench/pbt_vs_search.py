"""Population-based training against search methods at equal total frames, each method's pick
validated on the same fresh seeds: the benchmark a skeptic asks for.

    uv run python bench/pbt_vs_search.py --out DIR [--seeds 3] [--tasks nav_falling,nav_default,hopper]
    uv run python bench/pbt_vs_search.py --out DIR --report      # the tables, from what DIR holds

Per task and replicate seed s, four methods, each with N x F frames in all (N = --population, F =
the task's frames per run), the same 2 slots:

- `pbt`: `--search-method pbt --population N --seed s`;
- `no_exploit`: the same first generation (same seed: the same values and training seeds), exploit
  switched off (`--pbt-exploit-after F + 1`: no member ever copies another);
- `random`: `--search-method random --pruner none --hp-trials N --confirm-seeds 1 --seed s`;
- `optuna`: the default search (`--search-method bayesian`, its Hyperband pruner and confirmations,
  `--seed s`), stopped by Ctrl-C as a user would once its trials trained N x F frames.

Each method's pick is the one its own search score chooses (automl_state.yaml's `best`; for the
populations, the winner's schedule: `configs/pbt_winner.json`). Every pick is retrained from
scratch for F frames on the same --val-seeds fresh seeds, and every resulting policy evaluated
deterministically on the same episodes (train_one's eval mode, seed 777). For the populations the
winner's final policy (`pbt/model.pt`) is evaluated too. A replicate's figure for a pick is its mean
over the fresh seeds.

The report compares PBT (its replayed schedule, and its final policy) with each control, paired by
replicate: the mean difference and the project's selection rule (one-sided paired t, Holm over
the three controls, alpha 0.05): a win is claimed only where that rule rejects, that is where the
Holm-level lower bound is above 0.

Every step writes its result under --out as it ends (JSON), and a rerun skips what is there: the
benchmark runs over several sessions. A search cut short is started again from scratch.
`--replicates 2` runs only that replicate. The results a report reads (`TASK/sN/val/*.json`,
`TASK/sN/METHOD/policy.json`, `TASK/sN/METHOD/pick.json`) are kept in the repository under
`bench/results/pbt_vs_search/` (`--keep` copies them there), so the tables come back on any
machine:

    uv run python bench/pbt_vs_search.py --out bench/results/pbt_vs_search --report

One arm against the benchmark's own, same seeds and protocol: `--methods pbt` runs only PBT, with
the overrides given (for the critic's refit, `ppo.value_refit_updates=2`, which then also acts in
the retrains of its schedule), and `--report --paired-with DIR` sets its replayed schedule and final
policy against DIR's PBT, paired by replicate (two-sided paired t at 0.05, with its interval):

    uv run python bench/pbt_vs_search.py --out REFIT --tasks nav_falling --methods pbt ppo.value_refit_updates=2
    uv run python bench/pbt_vs_search.py --out REFIT --tasks nav_falling --methods pbt --report --paired-with DIR
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

EVAL_SEED = 777
VAL_SEED_BASE = 9_000
"""Fresh seeds: VAL_SEED_BASE + 10 x replicate + k (none of them a search's or a segment's)."""
METHODS = ("pbt", "no_exploit", "random", "optuna")
CONTROLS = ("no_exploit", "random", "optuna")
TASKS: dict[str, dict[str, Any]] = {
    "nav_falling": {"space": "bench/spaces/navigation_falls.yaml", "frames": 1_000_000,
                    "episodes": 1000, "overrides": ["env.num_envs=256"]},
    "nav_default": {"space": "bench/spaces/navigation_default.yaml", "frames": 1_000_000,
                    "episodes": 1000, "overrides": ["env.num_envs=256"]},
    "hopper": {"space": "bench/spaces/hopper.yaml", "frames": 150_000, "episodes": 20,
               "overrides": ["env=hopper"]},
}
RUN_KEYS = ("train.frames", "train.seed", "train.save_state", "train.resume_from", "run_dir",
            "train.threads")
"""Keys a retrain sets itself (a pick's own are dropped)."""


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="results folder (kept between runs)")
    p.add_argument("--seeds", type=int, default=3, help="replicates (PBT seeds) per task")
    p.add_argument("--replicates", default=None, help="which of them to run, comma-separated "
                   "(default: all; the report reads every complete one)")
    p.add_argument("--val-seeds", type=int, default=3, help="fresh seeds per pick")
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--frames", type=int, default=None, help="frames per run for every task "
                   "(default: each task's; a quick check of the harness)")
    p.add_argument("--methods", default=",".join(METHODS), help="the methods to run (and report)")
    p.add_argument("--report", action="store_true", help="print the tables and stop")
    p.add_argument("--keep", type=Path, default=None, help="copy the results (the JSON files the "
                   "report reads) to this folder, now and after each replicate")
    p.add_argument("--paired-with", type=Path, default=None, help="with --report: set this "
                   "folder's PBT against that folder's, paired by replicate")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every task (replacing the "
                   "task's own of the same key; a quick check of the harness: env.num_envs=16)")
    args = p.parse_args()
    given = args.methods.split(",")
    if not given or set(given) - set(METHODS):
        p.error(f"--methods: choose among {', '.join(METHODS)}")
    args.methods = tuple(m for m in METHODS if m in given)
    args.replicates = ([int(r) for r in args.replicates.split(",")] if args.replicates
                       else list(range(args.seeds)))
    if not set(args.replicates) <= set(range(args.seeds)):
        p.error(f"--replicates: choose among 0..{args.seeds - 1}")
    if args.paired_with is not None and not args.report:
        p.error("--paired-with goes with --report")
    for task in TASKS.values():
        task["frames"] = args.frames or task["frames"]
        ours = {key_of(o) for o in args.overrides}
        task["overrides"] = [*(o for o in task["overrides"] if key_of(o) not in ours), *args.overrides]
    return args


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# ------------------------------------------------------------------------------------ searches
def search_flags(method: str, task: dict[str, Any], seed: int, args: argparse.Namespace) -> list[str]:
    n, frames = args.population, task["frames"]
    if method == "pbt":
        return ["--search-method", "pbt", "--population", str(n)]
    if method == "no_exploit":
        return ["--search-method", "pbt", "--population", str(n), "--pbt-exploit-after",
                str(frames + 1)]
    if method == "random":
        return ["--search-method", "random", "--pruner", "none", "--hp-trials", str(n),
                "--confirm-seeds", "1"]
    return ["--search-method", "bayesian", "--hp-trials", str(3 * n)]


def frames_used(study: Path) -> int:
    """Frames the study's trials trained: the ended ones (trial_final.csv), the running ones (a
    search's trials start at 0; a population's segments do not, so this is not their count)."""
    used = 0
    if (study / "trial_final.csv").exists():
        with (study / "trial_final.csv").open() as f:
            used += sum(int(float(row["frames"] or 0)) for row in csv.DictReader(f))
    try:
        state = yaml.safe_load((study / "automl_state.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        state = {}
    used += sum(int(r.get("frames") or 0) for r in state.get("running") or [])
    return used


def run_search(name: str, method: str, task_name: str, seed: int, args: argparse.Namespace) -> Path:
    """One search in a subprocess (the optuna one stopped by SIGINT at N x F frames)."""
    task = TASKS[task_name]
    study = args.out / "log" / "automl" / name
    if study.exists():
        shutil.rmtree(study)  # cut short in an earlier session: from scratch
    cmd = [sys.executable, str(ROOT / "automl.py"), "--mode", "search", "--quiet", "--seed",
           str(seed), "--study-name", name, "--space", str(ROOT / task["space"]), "--workers",
           str(args.workers), "--budget-hours", "24", *search_flags(method, task, seed, args),
           f"train.frames={task['frames']}", *task["overrides"]]
    budget = args.population * task["frames"]
    started = time.monotonic()
    with (args.out / "logs").joinpath(f"{name}.log").open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        stopped = False
        while proc.poll() is None:
            time.sleep(5)
            if method == "optuna" and not stopped and frames_used(study) >= budget:
                proc.send_signal(signal.SIGINT)
                stopped = True
        code = proc.wait()
    if code not in (0, 130) and not (study / "automl_state.yaml").exists():
        raise SystemExit(f"{name}: the search failed ({code}); see {args.out / 'logs' / name}.log")
    used = "" if method in ("pbt", "no_exploit") else f"{frames_used(study):,} frames "
    log(f"{name}: {used}in {time.monotonic() - started:.0f} s (exit {code})")
    return study


def pick_of(study: Path, method: str) -> dict[str, Any]:
    """The pick's overrides, its search score and (populations) the final policy."""
    state = yaml.safe_load((study / "automl_state.yaml").read_text())
    best = state.get("best") or {}
    if method in ("pbt", "no_exploit"):
        config = json.loads((study / "configs" / "pbt_winner.json").read_text())
        policy = study / "pbt" / "model.pt"
    else:
        config = json.loads((study / "configs" / f"trial_{int(best['trial']):04d}.json").read_text())
        policy = None
    return {"trial": best.get("trial"), "search_score": best.get("score"),
            "overrides": config["base_overrides"],
            "frames_used": None if method in ("pbt", "no_exploit") else frames_used(study),
            "policy": str(policy) if policy is not None and policy.exists() else None}


# ---------------------------------------------------------------------------------- validation
def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def retrain(cells: list[tuple[Path, list[str]]], args: argparse.Namespace) -> None:
    """Train each (run folder, overrides) from scratch in the slots (train_one). Any retrain that
    did not complete (stopped, failed) stops the benchmark before anything is evaluated: a rerun
    trains it again; an evaluation of a cut run would be recorded as the pick's score."""
    from automl.search.trials.launcher import plan_slots
    from automl.search.trials.runner import Job, run_jobs

    jobs = [Job(name=run.name, overrides=overrides, run_dir=run) for run, overrides in cells]
    slots = plan_slots(workers=args.workers, use_gpu=False, gpus=[], gpu_fraction=1.0,
                       threads_per_trial=1, cpus=os.cpu_count() or 1)
    results, cut = run_jobs(jobs, worker=[sys.executable, str(ROOT / "train_one.py")], slots=slots,
                            deadline=time.monotonic() + 86_400)
    failed = [(r.job.name, r.reason, r.message) for r in results if r.reason != "completed"]
    if cut or failed:
        log(f"retrains that did not complete: {failed}; stopped, the rerun trains them again")
        raise SystemExit(1)


def evaluate(model: Path, task: dict[str, Any]) -> dict[str, float]:
    """A policy on the task's fixed evaluation episodes (deterministic)."""
    done = subprocess.run([sys.executable, str(ROOT / "train_one.py"), *task["overrides"], "mode=eval",
                           f"checkpoint={model}", f"episodes={task['episodes']}",
                           f"train.seed={EVAL_SEED}", "train.threads=2"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        return {"score": math.nan, "error": done.stderr[-1500:]}
    return json.loads(done.stdout[done.stdout.index("{"):])


def validate(task_name: str, seed: int, picks: dict[str, dict[str, Any]],
             args: argparse.Namespace) -> None:
    task = TASKS[task_name]
    folder = args.out / task_name / f"s{seed}"
    fresh = [VAL_SEED_BASE + 10 * seed + k for k in range(args.val_seeds)]
    cells = []
    for method, pick in picks.items():
        for val_seed in fresh:
            if (folder / "val" / f"{method}_{val_seed}.json").exists():
                continue
            run = args.out / "runs" / task_name / f"s{seed}" / f"{method}_{val_seed}"
            if run.exists():
                shutil.rmtree(run)
            own = [o for o in pick["overrides"] if key_of(o) not in RUN_KEYS]
            cells.append((run, [*own, f"train.frames={task['frames']}", f"train.seed={val_seed}"]))
    if cells:
        log(f"{task_name} s{seed}: {len(cells)} retrains")
        retrain(cells, args)
    for method in picks:
        for val_seed in fresh:
            path = folder / "val" / f"{method}_{val_seed}.json"
            if path.exists():
                continue
            model = args.out / "runs" / task_name / f"s{seed}" / f"{method}_{val_seed}" / "model.pt"
            metrics = evaluate(model, task) if model.exists() else {"score": math.nan,
                                                                     "error": "no model.pt"}
            write_json(path, metrics)
    for method, pick in picks.items():
        evaluate_policy(task_name, seed, method, pick, args)


def replicate(task_name: str, seed: int, args: argparse.Namespace) -> None:
    folder = args.out / task_name / f"s{seed}"
    picks = {}
    for method in args.methods:
        path = folder / method / "pick.json"
        if not path.exists():
            name = f"b_{task_name}_{method}_{seed}"
            log(f"{name}: searching")
            write_json(path, pick_of(run_search(name, method, task_name, seed, args), method))
        picks[method] = json.loads(path.read_text())
        evaluate_policy(task_name, seed, method, picks[method], args)
        keep(args)
    validate(task_name, seed, picks, args)


def evaluate_policy(task_name: str, seed: int, method: str, pick: dict[str, Any],
                    args: argparse.Namespace) -> None:
    """A population's final policy, evaluated as soon as its search ends (the policy lives in the
    study's folder, which --keep does not copy)."""
    path = args.out / task_name / f"s{seed}" / method / "policy.json"
    if pick.get("policy") and Path(pick["policy"]).exists() and not path.exists():
        write_json(path, evaluate(Path(pick["policy"]), TASKS[task_name]))


# ------------------------------------------------------------------------------------- report
def figures(args: argparse.Namespace, task_name: str, out_dir: Path | None = None,
            methods: tuple[str, ...] = METHODS) -> dict[int, dict[str, float]]:
    """replicate -> {method: mean fresh-seed score, method + '_policy': final policy's score}, for
    the replicates where every one of `methods` is complete."""
    out: dict[int, dict[str, float]] = {}
    for seed in range(args.seeds):
        folder = (out_dir or args.out) / task_name / f"s{seed}"
        row: dict[str, float] = {}
        for method in methods:
            scores = [json.loads(p.read_text())["score"]
                      for p in sorted((folder / "val").glob(f"{method}_*.json"))]
            if len(scores) == args.val_seeds:
                row[method] = sum(scores) / len(scores)
            policy = folder / method / "policy.json"
            if policy.exists():
                row[f"{method}_policy"] = json.loads(policy.read_text())["score"]
        if all(m in row for m in methods):
            out[seed] = row
    return out


def paired_report(args: argparse.Namespace) -> None:
    """This folder's PBT against --paired-with's, same replicates: the mean difference of the
    replayed schedules' fresh-seed means and of the final policies, each with a two-sided paired t
    test at 0.05 and its 95% interval (an effect is claimed where the interval excludes 0)."""
    import numpy as np

    from automl.stages.selection import lower_bound, p_better

    print(f"bench: {datetime.date.today()}: {args.out} against {args.paired_with}, PBT, "
          f"{args.val_seeds} fresh seeds per schedule; evaluation seed {EVAL_SEED}")
    for task_name in args.tasks.split(","):
        ours = figures(args, task_name, methods=("pbt",))
        theirs = figures(args, task_name, args.paired_with, methods=("pbt",))
        seeds = sorted(set(ours) & set(theirs))
        print(f"\n## {task_name}: {len(seeds)} replicates in both")
        print("| replicate | schedule (this) | schedule (paired) | final policy (this) | final policy (paired) |")
        print("|---|---|---|---|---|")
        for seed in seeds:
            a, b = ours[seed], theirs[seed]
            print(f"| {seed} | {a['pbt']:.4g} | {b['pbt']:.4g} | {a.get('pbt_policy', math.nan):.4g} "
                  f"| {b.get('pbt_policy', math.nan):.4g} |")
        for answer in ("pbt", "pbt_policy"):
            d = np.array([ours[s].get(answer, math.nan) - theirs[s].get(answer, math.nan) for s in seeds])
            if np.sum(np.isfinite(d)) < 2:
                continue
            p_up, p_down = float(p_better(d)), float(p_better(-d))
            low, high = lower_bound(d, 0.025)
            effect = "an effect" if float(low) > 0 or float(high) < 0 else "no effect claimed"
            print(f"{answer}, this - paired: mean {np.nanmean(d):+.4g} (per replicate "
                  f"{', '.join(f'{x:+.3g}' for x in d)}), two-sided p {min(1.0, 2 * min(p_up, p_down)):.3g}, "
                  f"95% interval [{float(low):+.4g}, {float(high):+.4g}]: {effect}")


def report(args: argparse.Namespace) -> None:
    import numpy as np

    from automl.stages.selection import holm, holm_levels, lower_bound, p_better

    print(f"bench: {datetime.date.today()}, {os.cpu_count()} cores; population {args.population}, "
          f"{args.val_seeds} fresh seeds per pick; evaluation seed {EVAL_SEED}")
    for task_name in args.tasks.split(","):
        rows = figures(args, task_name)
        task = TASKS[task_name]
        print(f"\n## {task_name}: {len(rows)} complete replicates, {args.population} x "
              f"{task['frames']:,} frames per method, {task['episodes']} evaluation episodes")
        if not rows:
            continue
        columns = [*METHODS, "pbt_policy", "no_exploit_policy"]
        print("| replicate | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for seed, row in sorted(rows.items()):
            print(f"| {seed} | " + " | ".join(f"{row.get(c, math.nan):.4g}" for c in columns) + " |")
        for answer in ("pbt", "pbt_policy"):
            diffs = np.array([[row[answer] - row[c] for c in CONTROLS] for row in rows.values()]).T
            if diffs.shape[1] < 2:
                continue
            p = p_better(diffs)
            levels = holm_levels(p, 0.05)
            wins = holm(p, 0.05)
            low, _ = lower_bound(diffs, levels)
            for c, d, pv, lv, lo, win in zip(CONTROLS, diffs, p, levels, low, wins, strict=True):
                print(f"{answer} - {c}: mean {d.mean():+.4g} (per replicate "
                      f"{', '.join(f'{x:+.3g}' for x in d)}), one-sided p {pv:.3g}, Holm level "
                      f"{lv:.3g}, lower bound {lo:+.4g}: {'WIN' if win else 'no win claimed'}")


def keep(args: argparse.Namespace) -> None:
    """Copy every replicate's result JSON files (not the logs, studies or retrained runs) from --out
    to --keep, so that the tables survive the machine that ran them. The folders they name are
    written relative to --out (`OUT/...`) and to the repository (`REPO/...`)."""
    if args.keep is None:
        return
    for path in sorted(args.out.glob("*/s*/**/*.json")):
        target = args.keep / path.relative_to(args.out)
        text = (path.read_text().replace(str(args.out.resolve()), "OUT")
                .replace(str(args.out), "OUT").replace(str(ROOT), "REPO"))
        if not target.exists() or target.read_text() != text:
            write_json(target, json.loads(text))


def main() -> None:
    args = parse()
    os.environ["AUTOML_LOG_ROOT"] = str(args.out / "log")
    os.environ["AUTOML_PRESETS_ROOT"] = str(args.out / "presets")
    keep(args)
    if args.report:
        paired_report(args) if args.paired_with is not None else report(args)
        return
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    write_json(args.out / "run.json", {"commit": git.stdout.strip(), "args": {
        k: str(v) for k, v in vars(args).items()}})
    for seed in args.replicates:
        for task_name in args.tasks.split(","):
            replicate(task_name, seed, args)
            keep(args)
    report(args)


if __name__ == "__main__":
    main()
