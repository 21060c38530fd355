"""hyperparameter_importance.yaml: which searched parameters (PPO, network, reward) drive the score.

The navigation AutoML pipeline's shape: `importance_ranking` (parameter, importance,
best_value) and `top_5_configs`, plus `chosen` (the configuration the study chose, as in
best_config.yaml, with what it gains over the starting configuration when validation compared them),
plus
the evaluator, the trial count it rests on, the score's definition and when it was made. Optuna's
PED-ANOVA by default; fANOVA when asked for and scikit-learn is installed.
"""

from __future__ import annotations

import datetime
import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.importance import (
    BaseImportanceEvaluator,
    FanovaImportanceEvaluator,
    PedAnovaImportanceEvaluator,
)

from automl import paths, reasons
from automl.analysis.configs import ConfigEntry, rank_configurations
from automl.analysis.folder import StudyView, open_view
from automl.analysis.table import trial_row
from automl.analysis.validation import ValidationResult, read_validation_csv
from automl.analysis.verdict import improvement_record, rule_of
from automl.analysis.yaml_style import dump_yaml
from automl.errors import ConfigError
from automl.paths import RunPaths, StudyPaths, atomic_write_text, trial_name
from automl.search.study import records

PED_ANOVA = "ped_anova"
FANOVA = "fanova"
EVALUATORS = (PED_ANOVA, FANOVA)
"""Names `analyze.py --evaluator` takes."""
TOP_N = 5
MIN_TRIALS = 2
"""Trials below which no ranking is attempted."""
RELIABLE_TRIALS = 10
"""Trials below which the report warns that the ranking is mostly noise."""
SIGNIFICANT = 4
"""Significant digits of the numbers written (the exact values are in experiment_df.csv)."""


def round_sig(value: Any, digits: int = SIGNIFICANT) -> Any:
    """Floats to `digits` significant digits (lists element-wise); NaN as None; others as they are."""
    if isinstance(value, (list, tuple)):
        return [round_sig(v, digits) for v in value]
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def pick_evaluator(name: str) -> tuple[BaseImportanceEvaluator, str | None]:
    """The evaluator for `name`, and a note when fANOVA had to fall back to PED-ANOVA."""
    if name not in EVALUATORS:
        raise ConfigError(file="command line", key="--evaluator", value=name,
                          rule=f"it must be one of {', '.join(EVALUATORS)}",
                          fix=f"use --evaluator {PED_ANOVA} (default) or --evaluator {FANOVA}")
    if name == FANOVA:
        if importlib.util.find_spec("sklearn") is not None:
            return FanovaImportanceEvaluator(seed=0), None
        return PedAnovaImportanceEvaluator(), ("fANOVA was asked for but scikit-learn is not "
                                               "installed, so PED-ANOVA was used (install "
                                               "scikit-learn for fANOVA)")
    return PedAnovaImportanceEvaluator(), None


# ---------------------------------------------------------------------------------------------
# Score definition


def describe_scoring(scoring: dict[str, Any]) -> str:
    """`1 * success_rate - 0.5 * termination_rate over the most recent 500 finished episodes`."""
    terms: list[str] = []
    for name, weight in (scoring.get("weights") or {}).items():
        w = float(weight)
        if not terms:
            terms.append(f"{w:g} * {name}")
        else:
            terms.append(f"{'-' if w < 0 else '+'} {abs(w):g} * {name}")
    episodes = scoring.get("min_episodes")
    return " ".join(terms) + f" over the most recent {episodes} finished episodes (at least one per env)"


def score_definition(view: StudyView) -> tuple[str, dict[str, Any] | None]:
    """The score's definition from the first completed trial with a readable config.yaml."""
    done = sorted((t for t in view.trials if t.state == optuna.trial.TrialState.COMPLETE),
                  key=lambda t: t.number)
    for trial in done:
        config = RunPaths(view.run_dir(trial)).config
        try:
            data = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError):
            continue
        scoring = data.get("scoring") if isinstance(data, dict) else None
        if isinstance(scoring, dict):
            return describe_scoring(scoring), scoring
    return "unknown: no completed trial has a readable config.yaml with a `scoring` section", None


# ---------------------------------------------------------------------------------------------
# Ranking


def _group(view: StudyView, name: str) -> str:
    spec = view.spec(name)
    return spec.key.split(".")[0] if spec is not None else "unknown"


def evidence(view: StudyView) -> tuple[list[optuna.trial.FrozenTrial], str]:
    """The trials a ranking rests on, as completed trials with their values, and what the values
    are. Fewer than RELIABLE_TRIALS completed trials (a small or heavily pruned study): the score
    at the deepest evaluation point that more trials reached, pruned ones included, when that gives
    more trials; a pruned trial's score there is comparable with the others' there."""
    scored = view.scored()
    basis = "the final score of each completed trial"
    if len(scored) >= RELIABLE_TRIALS:
        return scored, basis
    reported = [t for t in view.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                       optuna.trial.TrialState.PRUNED)
                or t.user_attrs.get(records.STOP_REASON) == reasons.BUDGET]  # cut: FAIL
    steps = sorted({s for t in reported for s in t.intermediate_values}, reverse=True)
    for step in steps:
        at = [t for t in reported if math.isfinite(t.intermediate_values.get(step, math.nan))]
        if len(at) > len(scored):
            as_final = [optuna.trial.create_trial(
                params=t.params, distributions=t.distributions, value=t.intermediate_values[step],
                user_attrs=t.user_attrs) for t in at]
            as_final.sort(key=lambda t: float(t.value or 0.0), reverse=view.maximize)
            return as_final, (f"the score at {step:,} frames of {len(at)} completed and pruned "
                              f"trials (only {len(scored)} completed)")
    return scored, basis


def _importances(view: StudyView, evaluator: BaseImportanceEvaluator,
                 scored: list[optuna.trial.FrozenTrial]) -> dict[str, float]:
    """Raw importances over `scored` (a copy of the study holding only those)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory"
    try:
        copy = optuna.create_study(direction=view.study.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    copy.add_trials(scored)
    with warnings.catch_warnings():
        # PED-ANOVA warns on small studies and `normalize=False` is experimental: both expected.
        warnings.simplefilter("ignore")
        found = optuna.importance.get_param_importances(copy, evaluator=evaluator,
                                                        normalize=False)
    return {name: float(value) for name, value in found.items()}


def ranking(view: StudyView, evaluator: BaseImportanceEvaluator,
            scored: list[optuna.trial.FrozenTrial] | None = None,
            best: dict[str, Any] | None = None) -> tuple[list[dict], str | None]:
    """[{parameter, group, importance, best_value}] sorted, summing to 1; or [] and why not.
    `scored`: the trials it rests on (default: the completed ones), best first. `best`: the chosen
    configuration's values (default: the first of `scored`), given as `best_value`."""
    scored = view.scored() if scored is None else scored
    if len(scored) < MIN_TRIALS:
        return [], (f"no ranking: {len(scored)} trial(s) with a finite score, but an "
                    f"importance needs at least {MIN_TRIALS}; run more trials")
    try:
        raw = _importances(view, evaluator, scored)
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as err:
        return [], f"no ranking: {type(evaluator).__name__} failed on this study ({err})"
    total = sum(v for v in raw.values() if math.isfinite(v))
    if not raw or total <= 0:
        return [], ("no ranking: no parameter separates the best trials from the rest (every "
                    "importance is 0; constant parameters or too few distinct scores)")
    best = view.params(scored[0]) if best is None else best
    shares = {name: raw.get(name, 0.0) / total for name in view.param_names}
    shares = {k: (v if math.isfinite(v) else 0.0) for k, v in shares.items()}
    order = sorted(shares, key=lambda n: -shares[n])
    return [{"parameter": name, "group": _group(view, name),
             "importance": round(shares[name], 4), "best_value": round_sig(best.get(name))}
            for name in order], None


def top_configs(view: StudyView, ranked: list[ConfigEntry], n: int = TOP_N) -> list[dict[str, Any]]:
    """The first `n` configurations of the study's ranking (automl.analysis.configs), each once with
    its seeds grouped: config_id, parameters, search mean and seeds, validated mean and seeds, and
    two metrics of its first trial."""
    trials = {t.number: t for t in view.trials}
    configs = []
    for config in ranked[:n]:
        entry: dict[str, Any] = {"config_id": config.config_id}
        if config.trial is not None and config.config_id != trial_name(config.trial):
            entry["trial"] = config.trial
        entry.update({k: round_sig(v) for k, v in config.params.items()})
        entry["score"] = round_sig(config.search_mean)
        entry["seeds"] = len(config.search_scores)
        if config.validated is not None:
            entry["validated_score"] = round_sig(config.validated.mean)
            entry["validated_seeds"] = config.validated.n
        first = trials.get(config.trial) if config.trial is not None else None
        if first is not None:
            row = trial_row(view, first, {})
            entry["episode_reward_mean"] = round_sig(row.metrics.get("episode_reward_mean"))
            entry["success_rate"] = round_sig(row.metrics.get("success_rate"))
        if config.chosen:
            entry["chosen"] = True
        configs.append(entry)
    return configs


def chosen_record(ranked: list[ConfigEntry], results: list[ValidationResult], *,
                  rule: str = "") -> dict[str, Any] | None:
    """The chosen configuration and, after validation, what it gains over the starting one."""
    if not ranked:
        return None
    pick = ranked[0]
    record: dict[str, Any] = {"config_id": pick.config_id,
                              "basis": "validation" if pick.validated is not None else "search"}
    if pick.validated is not None and any(r.n > 0 for r in results):
        record.update({k: round_sig(v) if isinstance(v, float) else v
                       for k, v in improvement_record(results, rule=rule).items()
                       if k != "config_id"})
    else:
        record.update({"search_score": round_sig(pick.search_mean),
                       "seeds": len(pick.search_scores), "confirmed": pick.confirmed})
    return record


def _chosen(view: StudyView, configs: list[ConfigEntry]) -> dict[str, Any] | None:
    results = read_validation_csv(view.paths)
    return chosen_record(configs, results, rule=rule_of(view.paths, results))


def importance_report(view: StudyView, *, evaluator: str = PED_ANOVA) -> dict[str, Any]:
    """Content of hyperparameter_importance.yaml (see the module docstring)."""
    chosen, fallback = pick_evaluator(evaluator)
    used, basis = evidence(view)
    configs = rank_configurations(view)
    ranked, note = ranking(view, chosen, used, best=configs[0].params if configs else None)
    definition, scoring = score_definition(view)
    report: dict[str, Any] = {"importance_ranking": ranked,
                              "top_5_configs": top_configs(view, configs),
                              "chosen": _chosen(view, configs)}
    if note:
        report["note"] = note
    report["trials_used"] = len(used)
    report["basis"] = basis
    if ranked and len(used) < RELIABLE_TRIALS:
        report["warning"] = (f"the ranking rests on {len(used)} trials; below {RELIABLE_TRIALS} it "
                             "is mostly noise: run more trials before trusting it")
    report["evaluator"] = type(chosen).__name__
    if fallback:
        report["evaluator_note"] = fallback
    report.update({
        "completed_trials": len(view.scored()),
        "study_name": view.study.study_name,
        "score_definition": definition,
        "scoring": scoring,
        "generated_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    })
    return report


def importance_text(report: dict[str, Any]) -> str:
    """The report as the YAML text of hyperparameter_importance.yaml, under a comment header."""
    header = (f"# Hyperparameter importance of study {report['study_name']}: which searched "
              "parameters drive the score.\n# Made by analyze.py --importance; "
              "best_value is the value in the chosen configuration (`chosen`, as in "
              "best_config.yaml).\n")
    return header + dump_yaml(report)


def write_importance(study_paths: StudyPaths, *, study: optuna.Study | None = None,
                     evaluator: str = PED_ANOVA) -> Path:
    """Write hyperparameter_importance.yaml in the study folder and copy it to analysis/."""
    report = importance_report(open_view(study_paths, study), evaluator=evaluator)
    return save_importance(study_paths, report)


def save_importance(study_paths: StudyPaths, report: dict[str, Any]) -> Path:
    """Write a report to the study folder, and copy it to analysis/hyperparameter_importance.yaml
    when it has a result: a study that chose nothing (an empty resumed one, say) never replaces
    another study's report there."""
    text = importance_text(report)
    atomic_write_text(study_paths.importance_yaml, text)
    if report.get("chosen"):
        atomic_write_text(paths.latest_importance_yaml(), text)
    return study_paths.importance_yaml


def read_importance(study_paths: StudyPaths) -> dict[str, Any] | None:
    """The study's importance YAML, or None when missing or unreadable."""
    try:
        data = yaml.safe_load(study_paths.importance_yaml.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None
