"""Validation's results as every report reads them: per configuration its mean, spread and interval
over fresh seeds, its improvement over the starting configuration (the `baseline` row) paired by
seed, and the decision validation recorded (automl.stages.selection's rule, applied by
automl.stages.validate): which configuration was chosen, and why the others were not.

Pure functions over (config_id, source_trial, seed, score) rows, plus validation.csv in and out.
Scores are higher-is-better (the study maximizes the score of conf/scoring). Nothing here decides:
a study validated before decisions were recorded keeps its starting configuration (or, without
one, its highest validated mean).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from automl.paths import StudyPaths, atomic_write_text, trial_name

CONFIDENCE = 0.95
"""Two-sided confidence of a configuration's interval of its mean (a t interval)."""

BASELINE = "baseline"
"""config_id of the starting configuration (the space's priors, composed defaults elsewhere)."""
NO_TRIAL = -1
"""source_trial of a baseline that no search trial ran (some parameter has no prior)."""
WINNER = "pbt_winner"
"""config_id of a population's winner: its schedule, replayed from scratch (configs/, validation.csv)."""
MIN_PAIRS = 2
"""Seeds both a configuration and the baseline must have finished for a test to mean anything."""

CHOSEN = "chosen"
"""decision of the configuration validation chose (the start's row when nothing beat it)."""
BETTER = "better"
"""decision of a configuration that beat the start but was not chosen (a better one was)."""
NOT_BETTER = "not better"
"""decision of a configuration the test did not find better than the start."""
DROPPED = "dropped"
"""decision of a configuration the race dropped as clearly worse than the start."""
FAILED = "failed"
"""decision of a configuration that failed on a fresh seed (never exported)."""
START = "start"
"""decision of the starting configuration's row when another configuration was chosen."""

CSV_COLUMNS = ("config_id", "source_trial", "n_seeds", "mean", "std", "ci_low", "ci_high",
               "search_score", "improvement", "improvement_ci_low", "improvement_ci_high",
               "paired_seeds", "p_value", "test_level", "decision", "seeds", "scores")
"""validation.csv columns; `seeds` and `scores` are ;-separated, in the same order. `ci_low`,
`ci_high`: the t interval of the mean. `improvement`: mean over `paired_seeds` of (score - baseline's
score on the same seed), with the rule's interval at `test_level` (the one-sided level the paired
t-test was held to after Holm's correction and the race's spending); `p_value`: that test's;
`decision`: what validation made of the row (CHOSEN, BETTER, NOT_BETTER, DROPPED, FAILED, START)."""


class ValidationRow(NamedTuple):
    """One validation run: a configuration trained again under a fresh seed, without pruning."""

    config_id: str
    """Name of the configuration, e.g. `trial_0023`."""
    source_trial: int
    """Number of the search trial the configuration comes from."""
    seed: int
    score: float
    """Final score of the run; NaN when it failed or diverged."""


@dataclass(frozen=True)
class ValidationResult:
    """Statistics of one configuration over its validation seeds."""

    config_id: str
    source_trial: int
    n: int
    """Seeds with a finite score (the statistics rest on these)."""
    mean: float
    std: float
    """Sample standard deviation (ddof=1); 0 for a single seed."""
    ci_low: float
    """Lower end of the t interval (CONFIDENCE) of the mean."""
    ci_high: float
    search_score: float
    """The source configuration's score in the search (its mean over its search seeds, possibly
    lucky); NaN when unknown."""
    seeds: tuple[int, ...] = field(default=())
    """Every seed run, in order."""
    scores: tuple[float, ...] = field(default=())
    """Score of each seed in `seeds`; NaN for a failed run."""
    improvement: float = math.nan
    """Mean paired difference to the baseline's score on the same seeds (NaN: no baseline)."""
    improvement_low: float = math.nan
    """Lower end of the rule's interval of `improvement` (at `level`; above 0 exactly when the
    test found the configuration better)."""
    improvement_high: float = math.nan
    paired: int = 0
    """Seeds on which both this configuration and the baseline finished."""
    outlasted: int = 0
    """Seeds on which the baseline failed and this configuration finished."""
    p_value: float = math.nan
    """One-sided p-value of the paired t-test against the start (at the race's last look of it)."""
    level: float = math.nan
    """The level that test was held to (alpha after Holm's correction and the race's spending)."""
    decision: str = ""
    """What validation decided of it ('' in a study validated before decisions were recorded)."""

    @property
    def n_failed(self) -> int:
        """Seeds whose run gave no finite score."""
        return len(self.scores) - self.n

    @property
    def is_baseline(self) -> bool:
        """The starting configuration's row."""
        return self.config_id == BASELINE

    @property
    def beats_baseline(self) -> bool:
        """Validation found it better than the starting configuration (chosen or not)."""
        return not self.is_baseline and self.decision in (CHOSEN, BETTER)


def mean_interval(scores: Sequence[float], *, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided t interval of the mean: (x, x) for one score, NaNs for none."""
    from scipy.special import stdtrit

    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    mean = float(values.mean())
    if values.size == 1:
        return mean, mean
    half = float(stdtrit(values.size - 1, 0.5 + confidence / 2) * values.std(ddof=1)
                 / math.sqrt(values.size))
    return mean - half, mean + half


def _result(config_id: str, source_trial: int, runs: list[ValidationRow],
            search_score: float) -> ValidationResult:
    finite = [float(r.score) for r in runs if math.isfinite(r.score)]
    mean = float(np.mean(finite)) if finite else math.nan
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else (0.0 if finite else math.nan)
    low, high = mean_interval(finite)
    return ValidationResult(config_id=config_id, source_trial=source_trial, n=len(finite),
                            mean=mean, std=std, ci_low=low, ci_high=high,
                            search_score=search_score, seeds=tuple(int(r.seed) for r in runs),
                            scores=tuple(float(r.score) for r in runs))


def summarize_validation(rows: Iterable[tuple[str, int, int, float]], *,
                         search_scores: Mapping[int, float] | None = None
                         ) -> list[ValidationResult]:
    """Group rows (config_id, source_trial, seed, score) by config; one result each, in order.

    `search_scores` maps a source trial number to its search score (fills `search_score`).
    """
    groups: dict[str, list[ValidationRow]] = {}
    for raw in rows:
        row = ValidationRow(*raw)
        groups.setdefault(str(row.config_id), []).append(row)
    results = []
    for config_id, runs in groups.items():
        trials = {int(r.source_trial) for r in runs}
        if len(trials) != 1:
            raise ValueError(f"config {config_id!r} comes from several source trials "
                             f"{sorted(trials)}, but must come from one: give each its own id")
        source = trials.pop()
        search = (search_scores or {}).get(source, math.nan)
        results.append(_result(config_id, source, runs, float(search)))
    return paired_with_baseline(results)


def paired_with_baseline(results: Sequence[ValidationResult]) -> list[ValidationResult]:
    """Each configuration with its mean improvement over the baseline, paired by seed (a seed
    counts when both finished), and the seeds it finished where the baseline failed (the rule's
    interval and decision are validation's: automl.stages.validate); the results unchanged when
    there is no baseline row."""
    base = next((r for r in results if r.is_baseline), None)
    if base is None:
        return list(results)
    by_seed = dict(zip(base.seeds, base.scores, strict=True))
    paired = []
    for r in results:
        if r.is_baseline:
            paired.append(r)
            continue
        runs = [(by_seed[seed], score) for seed, score in zip(r.seeds, r.scores, strict=True)
                if seed in by_seed and math.isfinite(score)]
        diffs = [score - start for start, score in runs if math.isfinite(start)]
        if r.decision:  # as validation decided it: over the seeds its test looked at
            paired.append(dataclasses.replace(r, outlasted=len(runs) - len(diffs)))
            continue
        paired.append(dataclasses.replace(
            r, improvement=float(np.mean(diffs)) if diffs else math.nan, paired=len(diffs),
            outlasted=len(runs) - len(diffs)))
    return paired


def _rank_key(result: ValidationResult) -> tuple[int, float, float, int]:
    # A config that fails on some seed is not reliable: it ranks below every config that never
    # failed, whatever its mean. Ties: smaller spread, then the earlier trial.
    std = result.std if math.isfinite(result.std) else math.inf
    return (int(result.n_failed > 0), -result.mean, std, result.source_trial)


def baseline_of(results: Sequence[ValidationResult]) -> ValidationResult | None:
    """The baseline row when it has a finite score on some seed; else None."""
    return next((r for r in results if r.is_baseline and r.n > 0), None)


def choose_best(results: Sequence[ValidationResult]) -> ValidationResult:
    """The configuration validation chose (its row's decision is CHOSEN); in a study validated
    before decisions were recorded, the starting configuration, or without one the highest
    validated mean (never the highest search score)."""
    candidates = [r for r in results if r.n > 0]
    if not candidates:
        ids = ", ".join(r.config_id for r in results) or "none"
        raise ValueError(f"no validated configuration has a finite score (configs: {ids}); "
                         "validation needs at least one run that finished")
    chosen = next((r for r in candidates if r.decision == CHOSEN), None)
    if chosen is not None:
        return chosen
    return baseline_of(results) or min(candidates, key=_rank_key)


def validated_order(results: Sequence[ValidationResult]) -> list[ValidationResult]:
    """Validated configurations as a user reads them: the pick first, then the others with a
    finite score by validated mean (one failing on some seed below those that never failed), then
    those without one."""
    scored = [r for r in results if r.n > 0]
    if not scored:
        return list(results)
    pick = choose_best(results)
    rest = sorted((r for r in scored if r is not pick), key=_rank_key)
    return [pick, *rest, *(r for r in results if r.n == 0)]


# ---------------------------------------------------------------------------------------------
# validation.csv


def _number(value: float) -> str:
    return "" if value is None else repr(float(value))


def _optional(value: float) -> str:
    """A statistic that may not apply (an improvement without a baseline): empty when NaN."""
    return repr(float(value)) if math.isfinite(value) else ""


def write_validation_csv(study_paths: StudyPaths, rows: Iterable[tuple[str, int, int, float]],
                         results: Sequence[ValidationResult]) -> Path:
    """Write validation.csv atomically: one line per result, with its seeds and scores from `rows`."""
    per_config: dict[str, list[ValidationRow]] = {}
    for raw in rows:
        row = ValidationRow(*raw)
        per_config.setdefault(str(row.config_id), []).append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        runs = per_config.get(r.config_id, [])
        seeds = [str(x.seed) for x in runs] if runs else [str(s) for s in r.seeds]
        scores = [_number(x.score) for x in runs] if runs else [_number(s) for s in r.scores]
        writer.writerow([r.config_id, r.source_trial, len(seeds), _number(r.mean), _number(r.std),
                         _number(r.ci_low), _number(r.ci_high), _number(r.search_score),
                         _optional(r.improvement), _optional(r.improvement_low),
                         _optional(r.improvement_high), r.paired or "", _optional(r.p_value),
                         _optional(r.level), r.decision, ";".join(seeds), ";".join(scores)])
    atomic_write_text(study_paths.validation_csv, buffer.getvalue())
    return study_paths.validation_csv


def _float(text: str | None) -> float:
    return float(text) if text and text.strip() else math.nan


def read_validation_csv(study_paths: StudyPaths) -> list[ValidationResult]:
    """validation.csv back as results; [] when the study has none (yet)."""
    try:
        text = study_paths.validation_csv.read_text()
    except OSError:
        return []
    results = []
    for line in csv.DictReader(io.StringIO(text)):
        scores = tuple(_float(s) for s in line["scores"].split(";")) if line["scores"] else ()
        seeds = tuple(int(s) for s in line["seeds"].split(";")) if line["seeds"] else ()
        results.append(ValidationResult(
            config_id=line["config_id"], source_trial=int(line["source_trial"]),
            n=sum(math.isfinite(s) for s in scores), mean=_float(line["mean"]),
            std=_float(line["std"]), ci_low=_float(line["ci_low"]), ci_high=_float(line["ci_high"]),
            search_score=_float(line["search_score"]), seeds=seeds, scores=scores,
            improvement=_float(line.get("improvement")),
            improvement_low=_float(line.get("improvement_ci_low")),
            improvement_high=_float(line.get("improvement_ci_high")),
            paired=int(line.get("paired_seeds") or 0), p_value=_float(line.get("p_value")),
            level=_float(line.get("test_level")), decision=line.get("decision") or ""))
    return paired_with_baseline(results)  # from the seeds and scores, as when it was written


def config_id_for(trial_number: int) -> str:
    """The id validation gives a search trial's configuration: `trial_0023`."""
    return trial_name(trial_number)
