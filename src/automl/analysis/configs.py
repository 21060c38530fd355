"""Configurations, not trials: the seeds of one configuration grouped into one entry, in the one order
every report uses (experiment_df.csv, configurations.csv, hyperparameter_importance.yaml), so that
they name the same choice as best_config.yaml and automl_state.yaml.

The order: the chosen configuration first (validation's pick, automl.analysis.validation.choose_best,
when validation.csv has a finite score; else the search's best), then the other validated
configurations by validated mean, then the search's configurations as automl.search.study.confirm ranks
them (confirmed on every seed by mean, then those on fewer seeds, refuted ones last). A configuration
confirmed on fewer seeds than the study asks for never ranks above a confirmed one in the search's
part, and only validation (fresh seeds) moves one above another.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from automl.analysis.folder import StudyView
from automl.analysis.validation import WINNER, ValidationResult, read_validation_csv, validated_order
from automl.paths import trial_name
from automl.search.study import records
from automl.search.study.confirm import Configuration, configurations


@dataclass(frozen=True)
class ConfigEntry:
    """One configuration of the study: its search trials and seeds, and its validation."""

    config_id: str
    """`trial_NNNN` (the trial that sampled it), or `baseline`."""
    trial: int | None
    """The trial that sampled it; None for a starting configuration no search trial ran."""
    params: dict[str, Any]
    """Its values by parameter name (native)."""
    trials: tuple[int, ...] = ()
    """Every search trial that trained it (the first, then its confirmations on other seeds)."""
    search_scores: tuple[float, ...] = ()
    """Completed search seeds' scores."""
    confirmed: bool = False
    """Every seed the study confirms on completed."""
    validated: ValidationResult | None = None
    chosen: bool = False
    """The configuration the study chose (exported as best_config.yaml)."""
    baseline: bool = False
    """The starting configuration (the space's priors)."""

    @property
    def search_mean(self) -> float:
        """Mean search score over its completed seeds (NaN: none)."""
        return sum(self.search_scores) / len(self.search_scores) if self.search_scores else math.nan

    @property
    def validated_mean(self) -> float:
        """Mean over its validation seeds (NaN: not validated)."""
        return self.validated.mean if self.validated is not None else math.nan


def confirm_seeds(view: StudyView) -> int:
    """Seeds the study confirms a configuration on (1 for a study from before confirmation)."""
    stored = view.study.user_attrs.get(records.STUDY_CONFIRM_SEEDS)
    return stored if isinstance(stored, int) and stored > 0 else 1


def _baseline_params(view: StudyView, record: dict[str, Any]) -> dict[str, Any]:
    values = record.get("config_values") or {}
    if view.space is None:
        return dict(record.get("params") or {})
    return {p.name: values.get(p.key) for p in view.space.params}


def _read_record(view: StudyView, config_id: str) -> dict[str, Any]:
    try:
        data = json.loads(view.paths.config_file(config_id).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_baseline(view: StudyView) -> dict[str, Any]:
    return _read_record(view, "baseline")


def _population_winner(view: StudyView) -> list[ConfigEntry]:
    """The population's winner from configs/pbt_winner.json (written where the population ends),
    with its segment's score; none where there is no such record."""
    record = _read_record(view, WINNER)
    if not record:
        return []
    score = record.get("score")
    trial = record.get("source_trial")
    return [ConfigEntry(config_id=WINNER, trial=trial if isinstance(trial, int) else None,
                        params=dict(record.get("params") or {}),
                        trials=(trial,) if isinstance(trial, int) else (),
                        search_scores=(float(score),) if isinstance(score, int | float)
                        and math.isfinite(score) else ())]


def rank_configurations(view: StudyView) -> list[ConfigEntry]:
    """Every configuration of the study in the module's order; the first is the chosen one."""
    searched = configurations(view.trials, confirm_seeds(view))
    by_number: dict[int, Configuration] = {c.number: c for c in searched}
    members: dict[int, list[int]] = {}
    for t in view.trials:
        confirms = t.user_attrs.get(records.CONFIRMS)
        members.setdefault(confirms if isinstance(confirms, int) else t.number, []).append(t.number)

    def entry(config: Configuration | None, result: ValidationResult | None) -> ConfigEntry:
        baseline = result is not None and result.is_baseline
        if config is None and result is not None and not baseline:
            # a configuration no search trial sampled: a population's winner (`pbt_winner`)
            return ConfigEntry(config_id=result.config_id, trial=result.source_trial, validated=result,
                               params=dict(_read_record(view, result.config_id).get("params") or {}))
        if config is None:  # a starting configuration that no search trial ran
            return ConfigEntry(config_id="baseline", trial=None, validated=result, baseline=True,
                               params=_baseline_params(view, _read_baseline(view)))
        return ConfigEntry(config_id="baseline" if baseline else trial_name(config.number),
                           trial=config.number, params=view.params(config.trial),
                           trials=tuple(members.get(config.number, [config.number])),
                           search_scores=config.scores, confirmed=config.confirmed,
                           validated=result, baseline=baseline)

    results = read_validation_csv(view.paths)
    ordered: list[ConfigEntry] = []
    seen: set[int] = set()
    if any(r.n > 0 for r in results):
        for r in validated_order(results):
            config = by_number.get(r.source_trial) if r.config_id.startswith("trial_") or r.is_baseline else None
            if config is None and r.config_id.startswith("trial_"):
                continue  # a trial the study no longer holds
            ordered.append(entry(config, r))
            seen.add(r.source_trial)
    ordered += [entry(c, None) for c in searched if c.number not in seen]
    if not ordered:  # a population, not validated: its winner, as best_config.yaml names it
        ordered += _population_winner(view)
    if ordered:
        ordered[0] = dataclasses.replace(ordered[0], chosen=True)
    return ordered
