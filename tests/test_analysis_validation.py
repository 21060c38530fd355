"""Validation statistics: mean, spread, bootstrap CI; the pick by validated mean; validation.csv."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from automl.analysis.validation import (
    CSV_COLUMNS,
    best_by_search,
    bootstrap_ci,
    choose_best,
    differs_from_search_best,
    equal_seeds,
    improvement_text,
    read_validation_csv,
    selection_note,
    summarize_validation,
    write_validation_csv,
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
    assert 0.78 - 1e-9 <= result.ci_low < result.mean < result.ci_high <= 0.82 + 1e-9
    assert result.search_score == 0.80
    assert result.seeds == (101, 102, 103) and result.scores == (0.78, 0.80, 0.82)


def test_bootstrap_is_deterministic_and_narrows_with_more_seeds() -> None:
    rng = np.random.default_rng(5)
    few, many = rng.normal(1.0, 0.2, 4), rng.normal(1.0, 0.2, 64)
    assert bootstrap_ci(few) == bootstrap_ci(few)
    low_few, high_few = bootstrap_ci(few)
    low_many, high_many = bootstrap_ci(many)
    assert high_many - low_many < high_few - low_few
    assert low_many < float(np.mean(many)) < high_many
    assert bootstrap_ci([0.3]) == (0.3, 0.3)
    assert all(math.isnan(x) for x in bootstrap_ci([]))


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
    # far more: paired, the interval is tight and above 0.
    rows = [("baseline", -1, 1000, 0.2), ("baseline", -1, 1001, 0.8), ("baseline", -1, 1002, 0.5),
            ("trial_0003", 3, 1000, 0.3), ("trial_0003", 3, 1001, 0.9), ("trial_0003", 3, 1002, 0.6)]
    results = {r.config_id: r for r in summarize_validation(rows)}
    better = results["trial_0003"]
    assert better.improvement == pytest.approx(0.1)
    assert better.improvement_low == pytest.approx(0.1) and better.paired == 3
    assert better.ci_low < results["baseline"].ci_high  # unpaired, the intervals overlap
    assert choose_best(list(results.values())).config_id == "trial_0003"
    assert math.isnan(results["baseline"].improvement)


def test_the_baseline_is_kept_unless_an_interval_lies_above_zero_on_two_seeds():
    one_seed = [("baseline", -1, 1000, 0.2), ("trial_0001", 1, 1000, 0.9)]
    assert choose_best(summarize_validation(one_seed)).config_id == "baseline"  # one pair: no interval
    mixed = [("baseline", -1, 1000, 0.5), ("baseline", -1, 1001, 0.5),
             ("trial_0001", 1, 1000, 0.9), ("trial_0001", 1, 1001, 0.4)]
    results = summarize_validation(mixed)
    assert results[1].mean > results[0].mean and results[1].improvement_low < 0
    assert choose_best(results).config_id == "baseline"
    assert "nothing beat the starting configuration on these 2" in improvement_text(results)
    # Without a baseline row (a study validated before baselines), the highest mean wins.
    assert choose_best(summarize_validation(mixed[2:])).config_id == "trial_0001"


def test_validation_csv_keeps_the_improvement_columns(tmp_path):
    sp = StudyPaths(tmp_path / "study")
    rows = [("baseline", -1, 1000, 0.2), ("baseline", -1, 1001, 0.3),
            ("trial_0001", 1, 1000, 0.5), ("trial_0001", 1, 1001, 0.7)]
    results = summarize_validation(rows)
    write_validation_csv(sp, rows, results)
    back = {r.config_id: r for r in read_validation_csv(sp)}
    assert back["trial_0001"].improvement == pytest.approx(0.35)
    assert back["trial_0001"].paired == 2 and back["baseline"].paired == 0
    assert choose_best(list(back.values())).config_id == "trial_0001"


def test_a_failed_run_is_no_way_past_the_baseline_and_a_failing_baseline_can_be_beaten():
    nan = math.nan
    # The candidate crashed on one fresh seed and won the two others: it never replaces the start.
    crashed = [("baseline", -1, 1000, 5.0), ("baseline", -1, 1001, 5.0), ("baseline", -1, 1002, 5.0),
               ("trial_0003", 3, 1000, nan), ("trial_0003", 3, 1001, 10.0),
               ("trial_0003", 3, 1002, 10.0)]
    assert choose_best(summarize_validation(crashed)).config_id == "baseline"
    # The start failed on two seeds the candidate finished: the candidate replaces it.
    failing = [("baseline", -1, 1000, 5.0), ("baseline", -1, 1001, nan), ("baseline", -1, 1002, nan),
               ("trial_0003", 3, 1000, 8.0), ("trial_0003", 3, 1001, 8.0),
               ("trial_0003", 3, 1002, 8.0)]
    results = summarize_validation(failing)
    pick = choose_best(results)
    assert pick.config_id == "trial_0003" and pick.outlasted == 2 and pick.paired == 1
    assert "failed on 2 seed(s)" in improvement_text(results)


def test_too_few_paired_seeds_is_said_as_such():
    rows = [("baseline", -1, 1000, 0.2), ("trial_0001", 1, 1000, 0.9)]
    results = summarize_validation(rows)
    assert choose_best(results).config_id == "baseline"
    assert improvement_text(results).startswith("too few paired seeds to compare")


def test_configurations_compare_over_the_seeds_they_all_ran():
    rows = [("baseline", -1, 1000, 0.2), ("baseline", -1, 1001, 0.3),
            ("trial_0001", 1, 1000, 0.5), ("trial_0001", 1, 1002, 0.7)]
    kept, left = equal_seeds(rows)
    assert {row[2] for row in kept} == {1000} and left == 1
