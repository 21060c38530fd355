"""Does the score measure the policy, not the clock? A fixed policy (the hand-written navigation
controller with Gaussian action noise: its success and fall rates do not change) is scored the way
train_one scores a run, at every evaluation point, at several numbers of environments.

For each env count it prints: evaluation points written (and how many had no counted episode yet),
the long-run mean score (every counted episode after the first time limit), and the largest
deviation of a point's score from it, from the first point after one episode length (the time
limit) on. Target: every point present; every deviation within +-0.05.

    uv run python bench/score_stability.py                      # 256, 2048, 8192 envs
    uv run python bench/score_stability.py --num-envs 2048 --noise 0.5
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import yaml

from automl import paths
from automl.envs.navigation import NavigationEnv
from automl.envs.navigation_expert import Driver
from automl.run.episodes import EPISODE_METRICS, EPISODES, RecentEpisodes, episodes_per_env
from automl.run.scoring import point_score


def scoring_preset() -> dict:
    return yaml.safe_load((paths.repo_root() / "conf" / "scoring" / "navigation.yaml").read_text())


def run(num_envs: int, *, time_limits: int, eval_frequency: int, noise: float, seed: int) -> dict:
    """Score points of one fixed-policy rollout, plus the long-run per-episode rates."""
    preset = scoring_preset()
    torch.manual_seed(seed)
    env = NavigationEnv(num_envs=num_envs, device=torch.device("cpu"), seed=seed)
    driver = Driver(num_envs, env.p)
    window = RecentEpisodes(num_envs=num_envs, device=env.device, episode_metrics=env.episode_metrics,
                            per_env=episodes_per_env(preset["min_episodes"], num_envs))
    totals = dict.fromkeys(EPISODE_METRICS.values(), 0.0)
    counted_total = 0.0
    obs = env.reset(seed=seed)
    steps = time_limits * env.p.max_steps
    frames, next_eval, points = 0, eval_frequency, []
    for t in range(1, steps + 1):
        actions = driver.act(obs) + noise * torch.randn(num_envs, 2)
        result = env.step(actions)
        done = result.terminated | result.truncated
        driver.reset_where(done)
        window.add(torch.zeros(num_envs), done, result.episode)
        if t > env.p.max_steps:  # the long-run rates: every counted episode after one time limit
            counted = done & (result.episode["warmup"] == 0)
            counted_total += float(counted.sum())
            for key, name in EPISODE_METRICS.items():
                totals[name] += float(result.episode[key][counted].sum())
        obs = result.observations
        frames += num_envs
        if frames >= next_eval:
            next_eval += eval_frequency
            metrics = window.metrics()
            score = point_score(metrics, preset["weights"]) if metrics[EPISODES] else math.nan
            points.append((t, metrics[EPISODES], score, metrics.get("success_rate", math.nan),
                           metrics.get("termination_rate", math.nan)))
    long_run = {name: value / counted_total for name, value in totals.items()}
    return {"points": points, "long_run": long_run, "score": point_score(long_run, preset["weights"]),
            "max_steps": env.p.max_steps, "expected_points": frames // eval_frequency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", default="256,2048,8192")
    parser.add_argument("--time-limits", type=int, default=5, help="run length in time limits")
    parser.add_argument("--eval-frequency", type=int, default=50_000, help="frames between points")
    parser.add_argument("--noise", type=float, default=0.5, help="std of the Gaussian action noise")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"fixed policy: navigation controller + N(0, {args.noise}^2) action noise; points every "
          f"{args.eval_frequency:,} frames; score = conf/scoring/navigation.yaml")
    print("| envs | points (expected) | points before any counted episode | long-run success / falls "
          "| long-run score | max abs deviation after one time limit | within +-0.05 "
          "| within +-0.05 for good from (time limits) | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.num_envs.split(",")):
        start = time.monotonic()
        out = run(n, time_limits=args.time_limits, eval_frequency=args.eval_frequency,
                  noise=args.noise, seed=args.seed)
        late = [p for p in out["points"] if p[0] >= out["max_steps"]]
        deviations = [abs(p[2] - out["score"]) for p in late]
        within = sum(d <= 0.05 for d in deviations)
        empty = sum(1 for p in out["points"] if p[1] == 0)
        lr = out["long_run"]
        settled = next((p[0] for i, p in enumerate(late)
                        if all(d <= 0.05 for d in deviations[i:])), math.nan)
        print(f"| {n} | {len(out['points'])} ({out['expected_points']}) | {empty} "
              f"| {lr['success_rate']:.3f} / {lr['termination_rate']:.3f} | {out['score']:.3f} "
              f"| {max(deviations):.3f} | {within}/{len(late)} | {settled / out['max_steps']:.2f} "
              f"| {time.monotonic() - start:.0f} |")


if __name__ == "__main__":
    main()
