"""The export rule and the validation race: whether a configuration beats the starting one, with a
stated family-wise error rate.

Pure functions over arrays of paired differences (candidate score - start score on the same fresh
seed), vectorised over any leading axes so that the simulation in tests/stages/test_selection.py
runs the very procedure the product runs, many times at once.

The rule (docs/user/validation.md says why this test and not another):
- each candidate's test is a one-sided paired t-test of H0 "mean paired difference <= 0";
- the K candidates are corrected with Holm's step-down procedure, every look over all K (a
  candidate dropped earlier counts with p = 1, so dropping never loosens the rule);
- the race looks at the differences several times as seeds are added, so the family-wise rate
  `alpha` is spent across the looks: the look at n of at most N seeds may spend
  alpha x ((n / N)^SPEND_POWER - (n_prev / N)^SPEND_POWER) (a Lan-DeMets-style spending function;
  the looks are joined by the union bound, which holds whatever their dependence).
So the chance of exporting any configuration that is no better than the start is at most `alpha`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
"""Family-wise rate of exporting a configuration no better than the start (over the candidates and
the race's looks)."""
POWER = 0.8
"""Power the seeds should give; below it the result is `screening only`."""
SPEND_POWER = 2.0
"""Shape of the spending function: 2 keeps most of alpha for the last, largest look."""
DROP_T = -1.0
"""A candidate whose paired t statistic falls to this or below is clearly worse than the start and
is dropped from the race (dropping never exports, so it cannot raise the error rate)."""


@dataclass(frozen=True)
class RacePlan:
    """How validation spends its seeds: a first look on `first` seeds for every candidate and the
    start, then `step` more paired seeds per look for the survivors, up to `most`."""

    candidates: int
    """K, the configurations compared with the start (the Holm family)."""
    first: int
    """Seeds of the first (screening) look."""
    most: int
    """Seeds a configuration gets at most (the last look)."""
    step: int = 2
    """Paired seeds added per look after the first."""
    alpha: float = ALPHA
    """The family-wise false-export rate spent over the looks."""

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.first < 2 or self.most < self.first or self.step < 1:
            raise ValueError(f"a race needs candidates >= 1, first >= 2, most >= first and step "
                             f">= 1, not {self}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"The value of `alpha` is {self.alpha}, but must be 0 < alpha < 1")

    def looks(self) -> list[int]:
        """The seed counts at which the race looks: first, first + step, ..., most."""
        counts = list(range(self.first, self.most, self.step))
        return [*counts, self.most]

    def level(self, seeds: int) -> float:
        """The share of alpha the look at `seeds` may spend (0 for a count that is no look)."""
        looks = self.looks()
        if seeds not in looks:
            return 0.0
        i = looks.index(seeds)
        before = looks[i - 1] if i else 0
        return self.alpha * (_spent(seeds, self.most) - _spent(before, self.most))

    def as_dict(self) -> dict[str, float | int]:
        """The plan as validation_race.json stores it (a resumed race follows the stored plan)."""
        return {"candidates": self.candidates, "first": self.first, "most": self.most,
                "step": self.step, "alpha": self.alpha}


def _spent(seeds: int, most: int) -> float:
    return float((seeds / most) ** SPEND_POWER)


def t_statistic(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard error and t statistic of the paired differences over the last axis (NaN:
    a seed without a pair, left out). A zero spread gives t = +-inf for a non-zero mean and 0 for
    a zero mean (scores that do not vary, e.g. a task's maximum on every seed)."""
    d = np.asarray(diffs, dtype=float)
    n = np.sum(np.isfinite(d), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(d, axis=-1) / n
        dev = np.where(np.isfinite(d), d - mean[..., None], 0.0)
        sd = np.sqrt(np.sum(dev**2, axis=-1) / (n - 1))
        se = sd / np.sqrt(n)
        t = np.where(se > 0, mean / se, np.sign(mean) * np.inf)
    t = np.where(np.isfinite(mean) & (n >= 2), np.nan_to_num(t, nan=0.0, posinf=np.inf,
                                                                 neginf=-np.inf), np.nan)
    return mean, se, t


def p_better(diffs: np.ndarray) -> np.ndarray:
    """One-sided p-value of the paired t-test of H0 "mean difference <= 0" over the last axis; 1
    where fewer than 2 pairs."""
    from scipy.special import stdtr

    d = np.asarray(diffs, dtype=float)
    n = np.sum(np.isfinite(d), axis=-1)
    _, _, t = t_statistic(d)
    p = stdtr(np.maximum(n - 1, 1), -np.nan_to_num(t, nan=0.0))
    return np.where(n >= 2, p, 1.0)


def holm(p: np.ndarray, level: float | np.ndarray, *, family: int | None = None) -> np.ndarray:
    """Holm's step-down rejections over the last axis at family-wise `level`: the i-th smallest
    p-value (from 0) is compared with level / (family - i), stopping at the first that fails.
    `family` defaults to the last axis' length."""
    p = np.asarray(p, dtype=float)
    m = p.shape[-1] if family is None else family
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    thresholds = np.asarray(level, dtype=float)[..., None] / (m - np.arange(p.shape[-1]))
    passed = np.cumprod(ranked <= thresholds, axis=-1).astype(bool)
    reject = np.zeros_like(passed)
    np.put_along_axis(reject, order, passed, axis=-1)
    return reject


def holm_levels(p: np.ndarray, level: float | np.ndarray) -> np.ndarray:
    """The level each candidate was (or would be) tested at by Holm: level / (K - its rank)."""
    p = np.asarray(p, dtype=float)
    ranks = np.argsort(np.argsort(p, axis=-1, kind="stable"), axis=-1)
    return np.asarray(level, dtype=float)[..., None] / (p.shape[-1] - ranks)


@dataclass(frozen=True)
class Look:
    """One look of the race at every candidate's paired differences so far."""

    beats: np.ndarray
    """(..., K) bool: rejected H0 at this look (better than the start)."""
    dropped: np.ndarray
    """(..., K) bool: out of the race after this look (dropped now or before, or failed)."""
    p: np.ndarray
    """(..., K) one-sided p-values (1 for a candidate out of the race)."""
    levels: np.ndarray
    """(..., K) the Holm level each candidate was tested at in this look."""


def look(diffs: np.ndarray, *, plan: RacePlan, seeds: int, out: np.ndarray,
         failed: np.ndarray | None = None) -> Look:
    """The race's look at `seeds` seeds: `diffs` (..., K, >= seeds) paired differences, the first
    `seeds` used; `out` (..., K) candidates already out of the race; `failed` (..., K, >= seeds)
    runs of a candidate that failed (such a candidate is out, and never exported)."""
    d = np.asarray(diffs, dtype=float)[..., :seeds]
    gone = np.asarray(out, dtype=bool)
    if failed is not None:
        gone = gone | np.asarray(failed, dtype=bool)[..., :seeds].any(axis=-1)
    p = np.where(gone, 1.0, p_better(d))
    level = plan.level(seeds)
    beats = holm(p, level, family=plan.candidates) & ~gone
    _, _, t = t_statistic(d)
    worse = np.nan_to_num(t, nan=0.0) <= DROP_T
    return Look(beats=beats, dropped=gone | (worse & ~beats), p=p, levels=holm_levels(p, level))


def lower_bound(diffs: np.ndarray, level: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule's interval of the mean paired difference at one-sided `level`:
    mean -+ t(1 - level, n - 1) x se (its lower end is above 0 exactly when the test rejects at
    `level`)."""
    from scipy.special import stdtrit

    d = np.asarray(diffs, dtype=float)
    n = np.sum(np.isfinite(d), axis=-1)
    mean, se, _ = t_statistic(d)
    q = stdtrit(np.maximum(n - 1, 1), 1.0 - np.asarray(level, dtype=float))
    half = np.where(se > 0, q * se, 0.0)
    return mean - half, mean + half


def seeds_for_power(sd_diff: float, effect: float, *, candidates: int, alpha: float = ALPHA,
                    power: float = POWER) -> int | None:
    """Paired seeds a one-sided t-test at alpha / candidates needs for `power` against a gain of
    `effect` with differences of spread `sd_diff` (normal approximation, then t-corrected by
    iteration); None when the spread or the effect is not positive and finite."""
    if not (math.isfinite(sd_diff) and math.isfinite(effect)) or sd_diff <= 0 or effect <= 0:
        return None
    from scipy.special import ndtri, stdtrit

    level = alpha / candidates
    n = max(2, math.ceil(((ndtri(1 - level) + ndtri(power)) * sd_diff / effect) ** 2))
    for _ in range(50):  # t quantiles instead of normal ones: a few more seeds
        need = math.ceil(((stdtrit(n - 1, 1 - level) + stdtrit(n - 1, power)) * sd_diff / effect) ** 2)
        if need <= n:
            return n
        n = need
    return n


@dataclass(frozen=True)
class RaceOutcome:
    """Where the race ended, for each leading index."""

    beats: np.ndarray
    """(..., K) candidates that beat the start (at the look that ended the race)."""
    dropped: np.ndarray
    """(..., K) candidates out of the race."""
    seeds: np.ndarray
    """(...) seeds of the last look taken."""
    p: np.ndarray
    levels: np.ndarray


def run_race(diffs: np.ndarray, plan: RacePlan, *, failed: np.ndarray | None = None,
             available: int | None = None) -> RaceOutcome:
    """The race over differences already known: looks at plan.looks() until a candidate beats the
    start, every candidate is out, or the seeds run out (`available`: the seeds that have a
    result, default all of the last axis; `failed`: as for look()). Validation calls it after each
    round of runs with what it has (the same looks again: the decisions are a function of the
    scores); the simulation calls it once with every seed drawn up front."""
    d = np.asarray(diffs, dtype=float)
    shape = d.shape[:-1]
    have = d.shape[-1] if available is None else available
    out = np.zeros(shape, bool)
    done = np.zeros(shape[:-1], bool)
    beats = np.zeros(shape, bool)
    p = np.ones(shape)
    levels = np.zeros(shape)
    seeds = np.zeros(shape[:-1], int)
    for n in plan.looks():
        if n > have:
            break
        now = look(d, plan=plan, seeds=n, out=out, failed=failed)
        live = ~done
        tested = live[..., None] & ~out  # a candidate out of the race keeps its last look's test
        beats = np.where(live[..., None], now.beats, beats)
        p = np.where(tested, now.p, p)
        levels = np.where(tested, now.levels, levels)
        out = np.where(live[..., None], now.dropped, out)
        seeds = np.where(live, n, seeds)
        done = done | now.beats.any(axis=-1) | now.dropped.all(axis=-1)
        if done.all():
            break
    return RaceOutcome(beats=beats, dropped=out, seeds=seeds, p=p, levels=levels)


def race_finished(outcome: RaceOutcome, plan: RacePlan) -> np.ndarray:
    """Whether nothing more can be learnt: a candidate beat the start, every one is out, or the last
    look was taken."""
    return (outcome.beats.any(axis=-1) | outcome.dropped.all(axis=-1)
            | (outcome.seeds >= plan.most))
