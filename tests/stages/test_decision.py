"""Validation's decision (automl.stages.decision.decided): the rule applied to validation's rows,
what each row is called, the start kept unless the test says otherwise, failures, and the power
statement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automl.analysis.validation import choose_best
from automl.analysis.verdict import improvement_text
from automl.stages.decision import decided, power_statement
from automl.stages.selection import RacePlan

nan = math.nan


def rows_of(scores: dict[str, list[float]], *, first_seed: int = 1000) -> list[tuple[str, int, int, float]]:
    """Seed-major rows as validation writes them (source trial from the id)."""
    out = []
    longest = max(len(v) for v in scores.values())
    for i in range(longest):
        for config_id, values in scores.items():
            if i < len(values):
                trial = -1 if config_id == "baseline" else int(config_id.removeprefix("trial_"))
                out.append((config_id, trial, first_seed + i, values[i]))
    return out


def by_id(results):
    return {r.config_id: r for r in results}


def test_a_clear_gain_is_chosen_with_the_tests_interval():
    base = [0.20, 0.80, 0.50, 0.40, 0.60]
    rows = rows_of({"baseline": base, "trial_0003": [b + 0.1 + 0.01 * i for i, b in enumerate(base)]})
    plan = RacePlan(candidates=1, first=3, most=5)
    results = by_id(decided(rows, plan, looked_at=5))
    pick = results["trial_0003"]
    assert pick.decision == "chosen" and results["baseline"].decision == "start"
    assert pick.p_value < pick.level and pick.level == pytest.approx(plan.level(3))  # decided at 3
    assert 0 < pick.improvement_low < pick.improvement < pick.improvement_high
    assert pick.paired == 3  # the seeds the deciding look used
    assert choose_best(list(results.values())) is pick


def test_better_on_every_seed_of_three_is_not_enough_among_three_candidates():
    """The old rule exported this (its bootstrap interval on 3 seeds is [min, max], above 0)."""
    rows = rows_of({"baseline": [1.0, 2.0, 3.0], "trial_0001": [1.1, 2.3, 3.2],
                    "trial_0002": [0.5, 1.0, 2.0], "trial_0004": [1.2, 1.9, 2.8]})
    results = decided(rows, RacePlan(candidates=3, first=3, most=3), looked_at=3)
    found = by_id(results)
    assert found["baseline"].decision == "chosen"
    assert found["trial_0001"].decision == "not better" and found["trial_0001"].improvement_low < 0
    assert found["trial_0002"].decision == "dropped"
    assert "nothing beat the starting configuration on 3 fresh seeds" in improvement_text(results)


def test_a_failed_run_is_no_way_past_the_start_and_a_failing_start_can_be_beaten():
    crashed = rows_of({"baseline": [5.0, 5.0, 5.1], "trial_0003": [nan, 10.0, 10.0]})
    results = by_id(decided(crashed, RacePlan(candidates=1, first=3, most=3), looked_at=3))
    assert results["trial_0003"].decision == "failed" and results["baseline"].decision == "chosen"
    failing = rows_of({"baseline": [nan, nan, nan], "trial_0003": [8.0, 8.0, 8.0]})
    out = decided(failing, RacePlan(candidates=1, first=3, most=3), looked_at=3)
    # The start has no score at all: no test, and the one configuration that ran is chosen.
    assert choose_best(out).config_id == "trial_0003"
    partly = rows_of({"baseline": [5.0, nan, nan], "trial_0003": [8.0, 8.0, 8.0]})
    out = by_id(decided(partly, RacePlan(candidates=1, first=3, most=3), looked_at=3))
    assert out["trial_0003"].decision == "not better"  # one pair: no test; the start finished one


def test_too_few_seeds_keep_the_start():
    rows = rows_of({"baseline": [0.2], "trial_0001": [0.9]})
    results = decided(rows, None, looked_at=1)
    assert choose_best(results).config_id == "baseline"
    assert improvement_text(results).startswith("too few paired seeds to compare")


def test_without_a_baseline_the_highest_mean_that_never_failed_is_chosen():
    rows = rows_of({"trial_0001": [0.9, nan], "trial_0002": [0.5, 0.6], "trial_0003": [0.4, 0.4]})
    assert choose_best(decided(rows, None, looked_at=2)).config_id == "trial_0002"


def test_the_largest_paired_gain_of_those_that_beat_the_start_is_chosen():
    rng = np.random.default_rng(0)
    base = list(rng.normal(0, 1, 10))
    rows = rows_of({"baseline": base, "trial_0001": [b + 3 + 0.1 * rng.normal() for b in base],
                    "trial_0002": [b + 5 + 0.1 * rng.normal() for b in base]})
    results = by_id(decided(rows, RacePlan(candidates=2, first=3, most=10), looked_at=10))
    assert results["trial_0002"].decision == "chosen" and results["trial_0001"].decision == "better"


def test_power_statement_says_screening_only_below_the_seeds_80_percent_needs():
    rng = np.random.default_rng(1)
    base = list(rng.normal(0, 1, 3))
    rows = rows_of({"baseline": base, "trial_0001": [b + rng.normal(0, 1.4) for b in base]})
    plan = RacePlan(candidates=1, first=3, most=3)
    statement = power_statement(decided(rows, plan, looked_at=3), plan)
    assert statement["screening_only"] and statement["seeds_needed"] > 3
    assert statement["most_seeds"] == 3 and statement["power"] == 0.8
