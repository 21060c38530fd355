"""Validation statistics: per-config mean, spread and bootstrap CI over fresh seeds, each
configuration's improvement over the starting configuration (the `baseline` row) paired by seed, and
the final pick.

Pure functions over (config_id, source_trial, seed, score) rows, plus validation.csv in and out.
Scores are higher-is-better (the study maximizes the score of conf/scoring).

The pick: a configuration replaces the starting one only when the bootstrap interval of its paired
improvement lies above 0 (on at least MIN_PAIRS seeds); of those, the highest validated mean wins.
Otherwise the starting configuration is kept. Without a baseline row (an older study), the highest
validated mean wins.
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

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
"""Fixed, so the same scores always give the same interval."""
CONFIDENCE = 0.95

BASELINE = "baseline"
"""config_id of the starting configuration (the space's priors, composed defaults elsewhere)."""
NO_TRIAL = -1
"""source_trial of a baseline that no search trial ran (some parameter has no prior)."""
MIN_PAIRS = 2
"""Seeds both a configuration and the baseline must have finished for an interval to mean anything."""

CSV_COLUMNS = ("config_id", "source_trial", "n_seeds", "mean", "std", "ci_low", "ci_high",
               "search_score", "improvement", "improvement_ci_low", "improvement_ci_high",
               "paired_seeds", "seeds", "scores")
"""validation.csv columns; `seeds` and `scores` are ;-separated, in the same order. `improvement`:
mean over `paired_seeds` of (score - baseline's score on the same seed), with its bootstrap 95%
interval; empty on the baseline's row and without a baseline."""


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
    """Lower end of the bootstrap 95% confidence interval of the mean."""
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
    """Lower end of the bootstrap 95% interval of `improvement`."""
    improvement_high: float = math.nan
    paired: int = 0
    """Seeds on which both this configuration and the baseline finished."""
    outlasted: int = 0
    """Seeds on which the baseline failed and this configuration finished."""

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
        """It never failed, and its paired improvement's interval lies above 0 on at least
        MIN_PAIRS seeds, or the baseline failed where it finished (and no pair says otherwise).
        With 2 or 3 pairs the bootstrap's lower end is the smallest paired difference: the rule
        then means better on every paired seed."""
        if self.is_baseline or self.n_failed > 0:
            return False
        above = math.isfinite(self.improvement_low) and self.improvement_low > 0
        return ((self.paired >= MIN_PAIRS and above)
                or (self.outlasted > 0 and (self.paired == 0 or above)))


def bootstrap_ci(scores: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (x, x) for one score, NaNs for none."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    if values.size == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(resamples, values.size), replace=True).mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _result(config_id: str, source_trial: int, runs: list[ValidationRow],
            search_score: float) -> ValidationResult:
    finite = [float(r.score) for r in runs if math.isfinite(r.score)]
    mean = float(np.mean(finite)) if finite else math.nan
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else (0.0 if finite else math.nan)
    low, high = bootstrap_ci(finite)
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
    """Each configuration with its improvement over the baseline, paired by seed (a seed counts
    when both finished) and the seeds it finished where the baseline failed; the results
    unchanged when there is no baseline row."""
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
        low, high = bootstrap_ci(diffs)
        paired.append(dataclasses.replace(
            r, improvement=float(np.mean(diffs)) if diffs else math.nan, improvement_low=low,
            improvement_high=high, paired=len(diffs), outlasted=len(runs) - len(diffs)))
    return paired


def equal_seeds(rows: Sequence[tuple[str, int, int, float]]
                ) -> tuple[list[tuple[str, int, int, float]], int | None]:
    """Rows restricted to the seeds every configuration has a run of (finished or failed), so
    configurations compare over the same seeds; returns the rows, and how many seeds are left
    where that left some out (None where nothing was left out)."""
    per_config: dict[str, set[int]] = {}
    for row in rows:
        per_config.setdefault(str(row[0]), set()).add(int(row[2]))
    if not per_config:
        return [], None
    common = set.intersection(*per_config.values())
    kept = [row for row in rows if int(row[2]) in common]
    return kept, (len(common) if len(kept) < len(rows) else None)


def _rank_key(result: ValidationResult) -> tuple[int, float, float, int]:
    # A config that fails on some seed is not reliable: it ranks below every config that never
    # failed, whatever its mean. Ties: smaller spread, then the earlier trial.
    std = result.std if math.isfinite(result.std) else math.inf
    return (int(result.n_failed > 0), -result.mean, std, result.source_trial)


def baseline_of(results: Sequence[ValidationResult]) -> ValidationResult | None:
    """The baseline row when it has a finite score on some seed; else None."""
    return next((r for r in results if r.is_baseline and r.n > 0), None)


def choose_best(results: Sequence[ValidationResult]) -> ValidationResult:
    """The pick (module docstring): the best configuration whose paired improvement over the
    baseline is above 0 with 95% confidence, else the baseline; without a baseline, the highest
    validated mean (never the highest search score)."""
    candidates = [r for r in results if r.n > 0]
    if not candidates:
        ids = ", ".join(r.config_id for r in results) or "none"
        raise ValueError(f"no validated configuration has a finite score (configs: {ids}); "
                         "validation needs at least one run that finished")
    base = baseline_of(results)
    if base is None:
        return min(candidates, key=_rank_key)
    winners = [r for r in candidates if r.beats_baseline]
    return min(winners, key=_rank_key) if winners else base


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


def improvement_text(results: Sequence[ValidationResult]) -> str:
    """What the pick gains over the starting configuration, in one line:
    `+X [lo, hi] over the starting configuration on K fresh seeds`, or that nothing beat it."""
    base = baseline_of(results)
    if base is None:
        return ("no comparison with the starting configuration: it has no validated score "
                "(it was not validated, or every run of it failed)")
    pick = choose_best(results)
    failed = (f"; the starting configuration failed on {pick.outlasted} seed(s) it finished"
              if pick.outlasted else "")
    if not pick.is_baseline and pick.paired == 0:
        return (f"the starting configuration failed on every seed {pick.config_id} finished "
                f"({pick.outlasted}); {pick.config_id} never failed ({pick.mean:.4g})")
    if not pick.is_baseline:
        return (f"{pick.improvement:+.4g} [{pick.improvement_low:+.4g}, {pick.improvement_high:+.4g}] "
                f"over the starting configuration on {pick.paired} fresh seeds ({pick.config_id}: "
                f"{pick.mean:.4g}, starting configuration: {base.mean:.4g}){failed}")
    candidates = [r for r in results if not r.is_baseline and r.n > 0]
    if not candidates:
        return (f"no comparison: only the starting configuration was validated ({base.mean:.4g} "
                f"on {base.n} fresh seeds)")
    if all(r.paired < MIN_PAIRS and not r.outlasted for r in candidates):
        most = max(r.paired for r in candidates)
        return (f"too few paired seeds to compare with the starting configuration (at most {most}, "
                f"{MIN_PAIRS} needed): it is kept ({base.mean:.4g} on {base.n} fresh seeds)")
    others = [r for r in results if not r.is_baseline and r.paired > 0]
    text = (f"nothing beat the starting configuration on these {base.n} fresh seeds (its score "
            f"{base.mean:.4g} [{base.ci_low:.4g}, {base.ci_high:.4g}])")
    if others:
        best = max(others, key=lambda r: (r.improvement, -r.source_trial))
        text += (f"; the closest, {best.config_id}: {best.improvement:+.4g} "
                 f"[{best.improvement_low:+.4g}, {best.improvement_high:+.4g}] on {best.paired} seeds")
    return text


def improvement_record(results: Sequence[ValidationResult]) -> dict[str, object]:
    """The pick against the starting configuration, for automl_state.yaml and the reports."""
    pick = choose_best(results)
    base = baseline_of(results)
    record: dict[str, object] = {"config_id": pick.config_id, "trial": pick.source_trial,
                                 "validated_mean": pick.mean, "n_seeds": pick.n,
                                 "beats_starting_configuration": pick.beats_baseline}
    if base is not None:
        record["starting_configuration_mean"] = base.mean
        if not pick.is_baseline:
            record.update({"improvement": pick.improvement, "improvement_ci_low": pick.improvement_low,
                           "improvement_ci_high": pick.improvement_high,
                           "paired_seeds": pick.paired})
    record["text"] = improvement_text(results)
    return record


def best_by_search(results: Sequence[ValidationResult]) -> ValidationResult:
    """The validated configuration whose search score (its mean over its search seeds) was highest."""
    known = [r for r in results if math.isfinite(r.search_score)]
    if not known:
        raise ValueError("no validated configuration carries its search score; "
                         "pass search_scores= to summarize_validation")
    return max(known, key=lambda r: (r.search_score, -r.source_trial))


def differs_from_search_best(results: Sequence[ValidationResult]) -> bool:
    """Whether validation picks another configuration than the highest search score among them."""
    return choose_best(results).source_trial != best_by_search(results).source_trial


def selection_note(results: Sequence[ValidationResult]) -> str:
    """One line for the console and logs: what validation chose, and why when it overrules."""
    best = choose_best(results)
    if best.is_baseline:
        ran = f", search trial {best.source_trial}" if best.source_trial != NO_TRIAL else ""
        what = f"kept the starting configuration (baseline{ran})"
    else:
        what = f"picked {best.config_id} (trial {best.source_trial})"
    text = (f"validation {what}: mean {best.mean:.4g} over {best.n} seeds, 95% CI "
            f"[{best.ci_low:.4g}, {best.ci_high:.4g}]")
    known = [r for r in results if math.isfinite(r.search_score)]
    if known and differs_from_search_best(results) and not best.is_baseline:
        lucky = best_by_search(results)
        text += (f"; the highest search score among them, {lucky.config_id} (search score "
                 f"{lucky.search_score:.4g}), validated at only {lucky.mean:.4g}")
    return text


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
                         _optional(r.improvement_high), r.paired or "",
                         ";".join(seeds), ";".join(scores)])
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
            paired=int(line.get("paired_seeds") or 0)))
    return paired_with_baseline(results)  # from the seeds and scores, as when it was written


def config_id_for(trial_number: int) -> str:
    """The id validation gives a search trial's configuration: `trial_0023`."""
    return trial_name(trial_number)
