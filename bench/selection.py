"""The export rule's error rate and power, simulated: the rule validation used before (a percentile
bootstrap interval of the paired differences above 0, no correction for the K candidates, every
candidate on the same N seeds) against the race (automl.stages.selection: one-sided paired t-test,
Holm over K, alpha spent over the looks), on the same simulated studies in one invocation.

    uv run python bench/selection.py [--reps 4000] [--seed 0]

Each simulated study: the start and K candidates, unit seed-to-seed noise (a share `common` of it
shared by every configuration on a seed), normal or t3 (heavy tails, unit variance). Printed per
cell: the family-wise false-export rate (no candidate better; the chance that any is exported), the
power (one candidate +1 s better, the others equal to the start; the chance it is exported), the
seeds the race ran on average in the power case (the old rule always ran N), and the coverage of
the 95% interval of one configuration's mean (the old bootstrap, the new t interval).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from automl.stages.selection import RacePlan, run_race  # noqa: E402

RESAMPLES, CONFIDENCE = 2000, 0.95
"""The old rule's bootstrap (its resamples were drawn with seed 0 on every call)."""


def draw(rng: np.random.Generator, noise: str, shape: tuple[int, ...]) -> np.ndarray:
    if noise == "t3":
        return rng.standard_t(3, shape) / math.sqrt(3.0)
    return rng.standard_normal(shape)


def scores(rng: np.random.Generator, k: int, n: int, common: float, noise: str, gain: np.ndarray,
           reps: int) -> np.ndarray:
    """(reps, K+1, n) scores: the start first."""
    out = math.sqrt(common) * draw(rng, noise, (reps, 1, n)) + math.sqrt(1 - common) * draw(
        rng, noise, (reps, k + 1, n))
    out[:, 1:, :] += gain[:, None]
    return out


def bootstrap_low(diffs: np.ndarray) -> np.ndarray:
    """The old rule's lower end of the percentile bootstrap interval of the mean (last axis), as
    its bootstrap_ci computed it: the same resample indices on every call (seed 0)."""
    n = diffs.shape[-1]
    idx = np.random.default_rng(0).choice(np.arange(n), size=(RESAMPLES, n), replace=True)
    lows = np.empty(diffs.shape[:-1])
    flat, out = diffs.reshape(-1, n), lows.reshape(-1)
    for start in range(0, flat.shape[0], 256):
        means = flat[start:start + 256][:, idx].mean(axis=-1)
        out[start:start + 256] = np.quantile(means, (1 - CONFIDENCE) / 2, axis=-1)
    return lows


def old_rule(s: np.ndarray) -> np.ndarray:
    """(reps, K) exported by the old rule: interval above 0 on at least 2 paired seeds."""
    diffs = s[:, 1:, :] - s[:, :1, :]
    if diffs.shape[-1] < 2:
        return np.zeros(diffs.shape[:-1], bool)
    return bootstrap_low(diffs) > 0


def new_rule(s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(reps, K) exported by the race, and the seeds it ran (reps, configurations x seeds)."""
    diffs = s[:, 1:, :] - s[:, :1, :]
    k = diffs.shape[1]
    plan = RacePlan(candidates=k, first=min(3, n), most=n)
    outcome = run_race(diffs, plan)
    return outcome.beats, outcome.seeds


def coverage(rng: np.random.Generator, n: int, reps: int) -> tuple[float, float]:
    from scipy.special import stdtrit

    x = rng.standard_normal((reps, n))
    low = bootstrap_low(x)
    high = -bootstrap_low(-x)
    boot = float(((low <= 0) & (0 <= high)).mean())
    half = stdtrit(n - 1, 0.975) * x.std(axis=1, ddof=1) / math.sqrt(n)
    t = float((np.abs(x.mean(axis=1)) <= half).mean())
    return boot, t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.reps} simulated studies per cell; false export: no candidate better; power: one "
          "candidate +1 s\n")
    print(f"{'K':>2} {'seeds':>5} {'common':>6} {'noise':>6} | {'false old':>9} {'false new':>9} "
          f"{'ratio':>6} | {'power old':>9} {'power new':>9} | {'new seeds run':>13}")
    for k, n, common, noise in itertools.product((1, 3, 5), (2, 3, 5, 10), (0.0, 0.5), ("normal", "t3")):
        null = scores(rng, k, n, common, noise, np.zeros(k), args.reps)
        old_f = float(old_rule(null).any(axis=1).mean())
        new_f = float(new_rule(null, n)[0].any(axis=1).mean()) if n >= 2 else 0.0
        gain = scores(rng, k, n, common, noise, np.r_[1.0, np.zeros(k - 1)], args.reps)
        old_p = float(old_rule(gain)[:, 0].mean())
        beats, seeds = new_rule(gain, n)
        new_p = float(beats[:, 0].mean())
        ratio = f"{old_f / new_f:6.1f}" if new_f > 0 else "   inf"
        print(f"{k:>2} {n:>5} {common:>6.1f} {noise:>6} | {old_f:9.3f} {new_f:9.3f} {ratio} | "
              f"{old_p:9.3f} {new_p:9.3f} | {float(seeds.mean()):6.1f} of {n:>3}")
    print("\ncoverage of a configuration's 95% interval of its mean (normal scores):")
    for n in (2, 3, 5, 10):
        boot, t = coverage(rng, n, args.reps)
        print(f"  {n:>2} seeds: bootstrap (old) {boot:.3f}, t interval (new) {t:.3f}")


if __name__ == "__main__":
    main()
