"""automl's default search (multivariate TPE + Hyperband) against random search without pruning,
both run through automl.py with the same wall budget and slots, over several search seeds.

    uv run python bench/search_efficiency.py --budget-hours 1 --seeds 3            # navigation stage 1
    uv run python bench/search_efficiency.py --synthetic --budget-hours 0.02        # scripted landscape

For each seed, each method's incumbents (every configuration that was the best of its search at
some time, as the search ranks them: the default confirms a new best on a second seed and ranks
configurations by their mean, random search ranks single runs) are re-trained on 2 fresh seeds.
Printed: the validated best at the budget (the last incumbent's), and the time each method needed
to reach random search's final best, twice: on search scores (any trial's; random's final best
is then the luckiest of its single-seed draws) and on the
incumbents' validated means (not selected on their own noise). The baseline is random search in
the same invocation; target: the default reaches random's final best in <= 50% of random's time.
The two methods get different sampler seeds (random search's is the search seed +
RANDOM_SEED_OFFSET): with one seed, TPE's random start-up would draw random
search's first configurations, and both would "reach" any best found among them at once.
--synthetic swaps training for the stand-in worker (a scripted score landscape over the unified
space), which measures the search logic alone in minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from automl.paths import StudyPaths

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

METHODS = {"default": ["--search-method", "bayesian", "--pruner", "hyperband"],
           "random": ["--search-method", "random", "--pruner", "none", "--confirm-seeds", "1"]}
RANDOM_SEED_OFFSET = 1000
"""Random search's sampler seed is the search seed plus this (see the docstring)."""
VALIDATE_SEEDS = 2
"""Fresh seeds each incumbent configuration is re-trained on."""


def synthetic_worker(tmp: Path) -> str:
    behaviour = tmp / "landscape.json"
    behaviour.write_text(json.dumps({
        "seconds_per_point": 0.05, "noise": 0.02, "curve": "rise",
        "score": {"param": "ppo.learning_rate", "target": 2e-4, "log": True, "width": 0.5}}))
    return f"{sys.executable} {ROOT / 'tests' / 'standin_worker.py'} --behaviour {behaviour}"


def run(method: str, seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from automl.cli import main
    from automl.paths import StudyPaths
    from automl.search.study.loading import load_study

    name = f"eff_{method}_{seed}"
    common = ["--quiet", "--budget-hours", str(args.budget_hours), "--hp-trials", str(args.hp_trials),
              "--seed", str(seed + (RANDOM_SEED_OFFSET if method == "random" else 0)),
              "--study-name", name, "--space", args.space]
    if args.workers:
        common += ["--workers", str(args.workers)]
    if args.synthetic:
        common += ["--worker", synthetic_worker(tmp)]
    # navigation unless the command names another env (Hydra refuses two values for one group)
    has_env = any(o.split("=", 1)[0] in ("env", "+env") for o in args.overrides)
    overrides = [*([] if has_env else ["env=navigation"]), *args.overrides]
    if main(["--mode", "search", *METHODS[method], *common, *overrides]) != 0:
        raise SystemExit(f"{name}: search failed")
    import yaml

    study = load_study(StudyPaths.for_study(name))
    session = yaml.safe_load(StudyPaths.for_study(name).meta.read_text())["sessions"][0]
    done = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                  key=lambda t: t.datetime_complete)
    start = min(t.datetime_start for t in study.trials if t.datetime_start)
    curve = [((t.datetime_complete - start).total_seconds(), float(t.value)) for t in done]
    steps = incumbent_steps(done, session["confirm_seeds"], start)
    incumbents = validate_incumbents(StudyPaths.for_study(name), study, steps, args, tmp)
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    confirmations = sum(1 for t in study.trials if "confirms" in t.user_attrs)
    plan = session["pruning"]
    rungs = "/".join(f"{r // 1000}k" for r in plan["rungs"]) or "-"
    return {"curve": curve, "incumbents": incumbents,  # type: ignore[dict-item]
            "validated": incumbents[-1][1] if incumbents else float("nan"), "trials": states,
            "plan": f"{plan['algorithm']} for {plan['trials']} trials, rungs {rungs}, "
                    f"{confirmations} confirmation(s) on {session['confirm_seeds']} seed(s)"}


def incumbent_steps(done: list[optuna.trial.FrozenTrial], seeds: int,
                    start: datetime.datetime) -> list[tuple[float, int]]:
    """(time, configuration) at each completion that changed the search's best: the first of its
    configurations ranked as the search ranks them (confirmed on `seeds` seeds first, by mean;
    with one seed, the highest search score)."""
    from automl.search.study.confirm import configurations

    steps: list[tuple[float, int]] = []
    for i, t in enumerate(done):
        configs = configurations(done[: i + 1], seeds)
        if configs and (not steps or configs[0].number != steps[-1][1]):
            steps.append(((t.datetime_complete - start).total_seconds(), configs[0].number))
    return steps


def validate_incumbents(study_paths: StudyPaths, study: optuna.Study, steps: list[tuple[float, int]],
                        args: argparse.Namespace, tmp: Path) -> list[tuple[float, float]]:
    """Every configuration that was the search's best at some time, re-trained on VALIDATE_SEEDS
    fresh seeds (the seeds `--mode validate` picks): (time it became the best, validated mean).

    The search's best score is the luckiest draw of a noisy run; these means are not selected
    on their own noise, so "time to reach" on them measures the configurations the search found."""
    import shlex

    from automl.search.trials.launcher import default_worker, plan_slots
    from automl.search.trials.runner import Job, run_jobs
    from automl.stages.candidates import fresh_seeds
    from automl.stages.context import StageLog, Stages

    stages = Stages(paths=study_paths, study=study, log=StageLog(), resources=None)  # type: ignore[arg-type]
    seeds = fresh_seeds(stages, VALIDATE_SEEDS)
    numbers = list(dict.fromkeys(number for _, number in steps))  # an incumbent may come back
    jobs = [Job(name=f"{number}_{seed}", run_dir=study_paths.root / "incumbents" / f"{number}_{seed}",
                overrides=[*stages.trial_file(number)["base_overrides"], f"train.seed={seed}"])
            for number in numbers for seed in seeds]
    worker = shlex.split(synthetic_worker(tmp)) if args.synthetic else default_worker()
    slots = plan_slots(workers=args.workers, use_gpu=False, gpus=[], gpu_fraction=1.0,
                       threads_per_trial=1, cpus=os.cpu_count() or 1)
    results, _ = run_jobs(jobs, worker=worker, slots=slots, deadline=float("inf"))
    scores: dict[int, list[float]] = {}
    for r in results:
        scores.setdefault(int(r.job.name.split("_")[0]), []).append(r.score)  # NaN when it failed
    return [(t, statistics.fmean(scores[number])) for t, number in steps]


def without_priors(space: Path, tmp: Path) -> str:
    """A copy of the space file with every `prior:` removed (nothing else changes)."""
    import yaml

    data = yaml.safe_load(space.read_text())
    for section in data.values():
        if isinstance(section, dict):
            for spec in section.values():
                if isinstance(spec, dict):
                    spec.pop("prior", None)
    copy = tmp / f"{space.stem}_no_prior.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(copy)


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float:
    best = float("-inf")
    for t, value in curve:
        best = max(best, value)
        if best >= target:
            return t
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-hours", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--hp-trials", type=int, default=10000,
                        help="both searches' --hp-trials (10000: the budget alone ends both "
                        "searches, and the default sizes its pruning plan to what the budget holds)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--space", default=str(ROOT / "templates" / "ppo_search_space.yaml"))
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--no-prior", action="store_true",
                        help="drop the space's priors: no method starts with the all-priors trial, "
                        "so the comparison is of the samplers and pruners alone")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.frames=500000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["AUTOML_LOG_ROOT"] = tmp
        os.environ["AUTOML_PRESETS_ROOT"] = tmp  # exported presets: not into conf/experiment/
        if args.no_prior:
            args.space = without_priors(Path(args.space), Path(tmp))
        ratios, validated_ratios = [], []
        for seed in range(args.seeds):
            res = {m: run(m, seed, args, Path(tmp)) for m in METHODS}
            target = max(v for _, v in res["random"]["curve"]) if res["random"]["curve"] else 0.0
            t_ours = time_to_reach(res["default"]["curve"], target)
            t_rand = time_to_reach(res["random"]["curve"], target)
            ratios.append(t_ours / t_rand if t_rand > 0 else float("inf"))
            v_target = res["random"]["validated"]
            v_ours = time_to_reach(res["default"]["incumbents"], v_target)
            v_rand = time_to_reach(res["random"]["incumbents"], v_target)
            validated_ratios.append(v_ours / v_rand if v_rand > 0 else float("inf"))
            print(f"seed {seed}: random's best search score {target:.4g}; reached by default in "
                  f"{t_ours:.0f} s, by random in {t_rand:.0f} s (ratio {ratios[-1]:.2f}); "
                  f"validated best: default {res['default']['validated']:.4g}, random {v_target:.4g}; "
                  f"random's validated best reached by default in {v_ours:.0f} s, by random in "
                  f"{v_rand:.0f} s (ratio {validated_ratios[-1]:.2f}); incumbents (s, validated): "
                  f"default {fmt(res['default']['incumbents'])}, random {fmt(res['random']['incumbents'])}; "
                  f"trials: default {res['default']['trials']}, random {res['random']['trials']}; "
                  f"default's plan: {res['default']['plan']}",
                  flush=True)
    print(f"median time ratio default/random, search scores: {statistics.median(ratios):.2f}; "
          f"validated incumbents: {statistics.median(validated_ratios):.2f} (target <= 0.50)")


def fmt(incumbents: list[tuple[float, float]]) -> str:
    return " ".join(f"{t:.0f}:{v:.4g}" for t, v in incumbents)


if __name__ == "__main__":
    main()
