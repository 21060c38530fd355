"""Validation's results as the reports read them: mean, spread, t interval, the paired improvement,
the recorded decision (a legacy study's fallback), validation.csv (the decisions themselves:
tests/stages/test_validate.py)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from automl.analysis.validation import (
    CSV_COLUMNS,
    choose_best,
    mean_interval,
    read_validation_csv,
    summarize_validation,
    write_validation_csv,
)
from automl.analysis.verdict import (
    best_by_search,
    differs_from_search_best,
    improvement_text,
    selection_note,
)
from automl.paths import StudyPaths

# Trial 3 was the best search run (0.95) thanks to a lucky seed; trial 7 is better on average.
LUCKY = [("trial_0003", 3, seed, s) for seed, s in ((101, 0.50), (102, 0.55), (103, 0.60))]
STEADY = [("trial_0007", 7, seed, s) for seed, s in ((101, 0.78), (102, 0.80), (103, 0.82))]
SEARCH = {3: 0.95, 7: 0.80}


def test_statistics_of_one_config() -> None:
    (result,) = summarize_validation(STEADY, search_scores=SEARCH)
    assert (result.config_id, result.source_trial, result.n) == ("trial_0007", 7, 3)
    assert result.mean == pytest.approx(0.80)
    assert result.std == pytest.approx(statistics.stdev([0.78, 0.80, 0.82]))
    # A t interval on 3 seeds is wider than their range (a bootstrap's would be the range itself).
    assert result.ci_low < 0.78 < result.mean < 0.82 < result.ci_high
    assert result.search_score == 0.80
    assert result.seeds == (101, 102, 103) and result.scores == (0.78, 0.80, 0.82)


def test_the_interval_of_a_mean_is_a_t_interval() -> None:
    from scipy import stats

    rng = np.random.default_rng(5)
    few, many = rng.normal(1.0, 0.2, 4), rng.normal(1.0, 0.2, 64)
    low, high = mean_interval(few)
    want = stats.t.interval(0.95, 3, loc=few.mean(), scale=stats.sem(few))
    assert (low, high) == pytest.approx(want)
    low_many, high_many = mean_interval(many)
    assert high_many - low_many < high - low
    assert mean_interval([0.3]) == (0.3, 0.3)
    assert all(math.isnan(x) for x in mean_interval([]))


def _decided(results, decisions):
    """Results with the decisions validation would have recorded."""
    import dataclasses

    return [dataclasses.replace(r, decision=decisions.get(r.config_id, "not better")) for r in results]


def test_choice_by_validated_mean_not_by_lucky_search_run() -> None:
    results = summarize_validation(LUCKY + STEADY, search_scores=SEARCH)
    assert best_by_search(results).source_trial == 3
    assert choose_best(results).source_trial == 7
    assert differs_from_search_best(results)
    note = selection_note(results)
    assert "trial_0007" in note and "trial_0003" in note and "0.95" in note


def test_same_choice_means_no_difference() -> None:
    results = summarize_validation(LUCKY + STEADY, search_scores={3: 0.5, 7: 0.8})
    assert not differs_from_search_best(results)
    assert "only" not in selection_note(results)


def test_a_failed_seed_ranks_a_config_below_reliable_ones() -> None:
    failing = [("trial_0001", 1, 101, 0.99), ("trial_0001", 1, 102, math.nan)]
    results = summarize_validation(failing + STEADY)
    flaky = next(r for r in results if r.source_trial == 1)
    assert (flaky.n, flaky.n_failed, flaky.mean, flaky.std) == (1, 1, 0.99, 0.0)
    assert choose_best(results).source_trial == 7


def test_nothing_validated_is_an_error() -> None:
    with pytest.raises(ValueError, match="no validated configuration"):
        choose_best(summarize_validation([("trial_0001", 1, 101, math.nan)]))
    with pytest.raises(ValueError, match="several source trials"):
        summarize_validation([("c", 1, 1, 0.1), ("c", 2, 1, 0.2)])


def test_csv_round_trip(tmp_path: Path) -> None:
    study_paths = StudyPaths(tmp_path / "study")
    rows = LUCKY + STEADY + [("trial_0009", 9, 101, math.nan)]
    results = summarize_validation(rows, search_scores=SEARCH)
    path = write_validation_csv(study_paths, rows, results)
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == list(CSV_COLUMNS)
    assert lines[2].endswith("101;102;103,0.78;0.8;0.82")
    back = read_validation_csv(study_paths)
    assert [r.config_id for r in back] == ["trial_0003", "trial_0007", "trial_0009"]
    for got, want in zip(back, results, strict=True):
        assert got.source_trial == want.source_trial and got.n == want.n
        assert got.seeds == want.seeds
        np.testing.assert_allclose([got.mean, got.std, got.ci_low, got.ci_high, got.search_score],
                                   [want.mean, want.std, want.ci_low, want.ci_high,
                                    want.search_score])
        np.testing.assert_allclose(got.scores, want.scores)
    assert read_validation_csv(StudyPaths(tmp_path / "none")) == []


def test_improvement_over_the_baseline_is_paired_by_seed():
    # The candidate is 0.1 above the start on every seed, though the seeds spread its scores by
    # far more: paired, its improvement is exact.
    rows = [("baseline", -1, 1000, 0.2), ("baseline", -1, 1001, 0.8), ("baseline", -1, 1002, 0.5),
            ("trial_0003", 3, 1000, 0.3), ("trial_0003", 3, 1001, 0.9), ("trial_0003", 3, 1002, 0.6)]
    results = {r.config_id: r for r in summarize_validation(rows)}
    better = results["trial_0003"]
    assert better.improvement == pytest.approx(0.1) and better.paired == 3
    assert better.ci_low < results["baseline"].ci_high  # unpaired, the intervals overlap
    assert math.isnan(results["baseline"].improvement)


def test_the_recorded_decision_is_the_choice_and_a_legacy_study_keeps_its_start():
    rows = [("baseline", -1, 1000, 0.5), ("baseline", -1, 1001, 0.5),
            ("trial_0001", 1, 1000, 0.9), ("trial_0001", 1, 1001, 0.8)]
    results = summarize_validation(rows)
    assert choose_best(results).config_id == "baseline"  # no decision recorded: the start stands
    chosen = _decided(results, {"trial_0001": "chosen", "baseline": "start"})
    assert choose_best(chosen).config_id == "trial_0001" and chosen[1].beats_baseline
    assert not _decided(results, {"baseline": "chosen"})[1].beats_baseline
    # Without a baseline row (a study validated before baselines), the highest mean wins.
    assert choose_best(summarize_validation(rows[2:])).config_id == "trial_0001"


def test_validation_csv_keeps_the_test_and_the_decision(tmp_path):
    import dataclasses

    sp = StudyPaths(tmp_path / "study")
    rows = [("baseline", -1, 1000, 0.2), ("baseline", -1, 1001, 0.3),
            ("trial_0001", 1, 1000, 0.5), ("trial_0001", 1, 1001, 0.7)]
    results = summarize_validation(rows)
    results[1] = dataclasses.replace(results[1], improvement_low=0.1, improvement_high=0.6,
                                     p_value=0.01, level=0.025, decision="chosen")
    results[0] = dataclasses.replace(results[0], decision="start")
    write_validation_csv(sp, rows, results)
    back = {r.config_id: r for r in read_validation_csv(sp)}
    got = back["trial_0001"]
    assert got.improvement == pytest.approx(0.35) and got.paired == 2 and back["baseline"].paired == 0
    assert (got.improvement_low, got.p_value, got.level, got.decision) == (0.1, 0.01, 0.025, "chosen")
    assert choose_best(list(back.values())).config_id == "trial_0001"
    text = improvement_text(list(back.values()), rule="the rule")
    assert text.startswith("+0.35 [+0.1, +0.6] over the starting configuration on 2 fresh seeds")
    assert text.endswith("(the rule)")


def test_too_few_paired_seeds_is_said_as_such():
    rows = [("baseline", -1, 1000, 0.2), ("trial_0001", 1, 1000, 0.9)]
    results = summarize_validation(rows)
    assert choose_best(results).config_id == "baseline"
    assert improvement_text(results).startswith("too few paired seeds to compare")
