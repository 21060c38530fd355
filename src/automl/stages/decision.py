"""Validation's decision from its runs: the paired differences to the start, the race's outcome
over them (automl.stages.selection's rule), what each configuration is called, the interval the
result line states, and whether the seeds could have shown a gain at all (the power statement).
Pure functions over validation's rows."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from automl.analysis.validation import (
    BASELINE,
    BETTER,
    CHOSEN,
    DROPPED,
    FAILED,
    NOT_BETTER,
    START,
    ValidationResult,
    baseline_of,
    summarize_validation,
)
from automl.stages import selection


def paired_matrix(ids: list[str], seeds: list[int], scores: dict[tuple[str, int], float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Paired differences (K, seeds) of the candidates `ids` against the start (NaN where either
    has no score) and the candidates' failed runs (K, seeds)."""
    diffs = np.full((len(ids), len(seeds)), math.nan)
    failed = np.zeros((len(ids), len(seeds)), bool)
    for k, config_id in enumerate(ids):
        for i, seed in enumerate(seeds):
            score = scores.get((config_id, seed))
            start = scores.get((BASELINE, seed))
            if score is not None and not math.isfinite(score):
                failed[k, i] = True
            if score is not None and start is not None:
                diffs[k, i] = score - start
    return diffs, failed


def race_outcome(ids: list[str], seeds: list[int], scores: dict[tuple[str, int], float],
                 plan: selection.RacePlan, done: int) -> selection.RaceOutcome:
    """The race over the runs made, looking at up to `done` seeds."""
    diffs, failed = paired_matrix(ids, seeds, scores)
    return selection.run_race(diffs, plan, failed=failed, available=done)


def rule_text(plan: selection.RacePlan) -> str:
    """The rule in a few words, for the result line and the reports."""
    return (f"one-sided paired t-test, Holm over {plan.candidates} candidate(s), alpha "
            f"{plan.alpha:g} spent over looks at {', '.join(map(str, plan.looks()))} seeds: a "
            f"no-better configuration is exported at most {plan.alpha:.0%} of the time")


def decided(rows: list[tuple[str, int, int, float]], plan: selection.RacePlan | None, *,
            looked_at: int, search_scores: dict[int, float] | None = None) -> list[ValidationResult]:
    """Validation's results from its rows (config_id, source_trial, seed, score; seeds in the
    order they were drawn), with the decision of the race that looked at up to `looked_at` seeds:
    a configuration that failed on a fresh seed is FAILED; one the race found better is BETTER,
    and the one of those with the largest paired improvement is CHOSEN; where none is, a
    configuration the start failed beside (finishing every seed the start failed, with no pair to
    test) is; else the start is. Without a baseline or a race, _without_race decides."""
    results = summarize_validation(rows, search_scores=search_scores)
    if baseline_of(results) is None or plan is None or looked_at < 2:
        return _without_race(results)
    ids = [r.config_id for r in results if not r.is_baseline]
    seeds = list(dict.fromkeys(int(row[2]) for row in rows))
    scores = {(str(row[0]), int(row[2])): float(row[3]) for row in rows}
    outcome = race_outcome(ids, seeds, scores, plan, looked_at)
    diffs, _ = paired_matrix(ids, seeds, scores)
    decided_rows: dict[str, ValidationResult] = {}
    for k, r in enumerate(r for r in results if not r.is_baseline):
        used = diffs[k, : int(outcome.seeds)]
        level = float(outcome.levels[k]) or plan.alpha / plan.candidates
        low, high = selection.lower_bound(used, level)
        finite = used[np.isfinite(used)]
        decision = (FAILED if r.n_failed else BETTER if outcome.beats[k]
                    else DROPPED if outcome.dropped[k] else NOT_BETTER)
        if decision == NOT_BETTER and r.paired == 0 and r.outlasted:
            decision = BETTER  # the start failed on every seed this one finished
        decided_rows[r.config_id] = dataclasses.replace(
            r, improvement=float(finite.mean()) if finite.size else math.nan,
            improvement_low=float(low), improvement_high=float(high), paired=int(finite.size),
            p_value=float(outcome.p[k]), level=level, decision=decision)
    better = [r for r in decided_rows.values() if r.decision == BETTER]
    pick = max(better, key=lambda r: (r.improvement if math.isfinite(r.improvement) else math.inf,
                                      -r.source_trial), default=None)
    out = []
    for r in results:
        if r.is_baseline:
            out.append(dataclasses.replace(r, decision=START if pick else CHOSEN))
        else:
            row = decided_rows[r.config_id]
            out.append(dataclasses.replace(row, decision=CHOSEN) if row is pick else row)
    return out


def _without_race(results: list[ValidationResult]) -> list[ValidationResult]:
    """No baseline or too few seeds to race: the start is kept where it has a score (its rows say
    nothing was tested); else the highest validated mean of the configurations that never failed."""
    scored = [r for r in results if r.n > 0]
    base = baseline_of(results)
    pick = base if base is not None else min(
        scored, key=lambda r: (r.n_failed > 0, -r.mean, r.source_trial), default=None)
    return [dataclasses.replace(r, decision=CHOSEN if r is pick else
                                (FAILED if r.n_failed else START if r.is_baseline else NOT_BETTER))
            for r in results]


def power_statement(results: list[ValidationResult], plan: selection.RacePlan) -> dict[str, Any]:
    """Whether these seeds could have shown a gain of one seed-to-seed standard deviation of the
    start's score with POWER: the seeds that would need at the noise measured (the paired
    differences' spread, pooled over the candidates), and `screening_only` where the race's most
    seeds fall short."""
    base = baseline_of(results)
    spreads = []
    for r in results:
        if base is None or r.is_baseline or r.paired < 2:
            continue
        by_seed = dict(zip(r.seeds, r.scores, strict=True))
        diffs = [by_seed[s] - b for s, b in zip(base.seeds, base.scores, strict=True)
                 if s in by_seed and math.isfinite(b) and math.isfinite(by_seed[s])]
        if len(diffs) >= 2:
            spreads.append(float(np.var(diffs, ddof=1)))
    sd_diff = math.sqrt(float(np.mean(spreads))) if spreads else math.nan
    effect = base.std if base is not None else math.nan
    need = selection.seeds_for_power(sd_diff, effect, candidates=plan.candidates, alpha=plan.alpha)
    return {"effect": effect, "sd_paired_difference": sd_diff, "power": selection.POWER,
            "seeds_needed": need, "most_seeds": plan.most,
            "screening_only": need is None or need > plan.most}
