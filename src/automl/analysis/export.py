"""The chosen configuration, exported twice: best_config.yaml in the study folder (for people) and
a Hydra preset <study>/experiment/<study>_best.yaml that train_one runs as `+experiment=<study>_best`
(automl.presets)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from automl import presets
from automl.analysis.folder import open_view
from automl.analysis.validation import (
    ValidationResult,
    baseline_of,
    choose_best,
)
from automl.analysis.verdict import improvement_text
from automl.analysis.yaml_style import dump_yaml
from automl.errors import ConfigError
from automl.paths import StudyPaths, atomic_write_text
from automl.search.study import records

EXPERIMENT_GROUP = presets.GROUP
preset_name = presets.preset_name


def nest(config_values: Mapping[str, Any]) -> dict[str, Any]:
    """`{"ppo.learning_rate": 3e-4}` -> `{"ppo": {"learning_rate": 3e-4}}`."""
    tree: dict[str, Any] = {}
    for key, value in config_values.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"config key {key!r} goes below {part!r}, which is itself set "
                                 "to a value: a key cannot be both a value and a section")
            node = child
        if isinstance(node.get(leaf), dict):
            raise ValueError(f"config key {key!r} is set to a value, but other keys go below it")
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return tree


def _plain(value: Any) -> Any:
    """NaN and inf as null (YAML readers disagree on them); numpy scalars as Python ones."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def command_line_values(overrides: Sequence[str]) -> dict[str, Any]:
    """The values a study's command-line overrides set, by config key, read with Hydra's own
    override grammar (`env.num_envs=256` -> `{"env.num_envs": 256}`, `1e-4` a float); group
    choices (`env=navigation`) and deletions (`~key`) are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from automl.config import GROUPS

    parser = OverridesParser.create()
    values: dict[str, Any] = {}
    for override in overrides:
        try:
            [parsed] = parser.parse_overrides([override])
        except Exception:  # noqa: BLE001 - Hydra refused it when the study ran; nothing to add
            continue
        key = parsed.key_or_group
        if parsed.is_delete() or key in GROUPS or "." not in key:
            continue
        values[key] = parsed.value()
    return values


def export_best_config(study_paths: StudyPaths, *, config_values: Mapping[str, Any],
                       source: Mapping[str, Any], groups: Mapping[str, str] | None = None,
                       user_overrides: Sequence[str] = (), conf_dir: Path | None = None
                       ) -> tuple[Path, Path]:
    """Write best_config.yaml and the preset <study>/experiment/<study>_best.yaml (automl.presets;
    `conf_dir`: another folder for it); return both paths.

    `config_values`: the configuration by config key (sampled and fixed values, as in a trial's
    `config_values` attribute). `source`: where it comes from (trial, validated mean, CI, ...), kept
    in best_config.yaml's `source:` and the preset's `experiment:`. `groups`: config-group choices
    the study ran with (`{"env": "navigation"}`), written as the preset's default overrides.
    `user_overrides`: the study's command line; its values win over the space's, as they did when
    the configuration trained (`env.num_envs=256` over a space's fixed 2048).
    """
    name = preset_name(study_paths.name)
    preset = (conf_dir / EXPERIMENT_GROUP / f"{name}.yaml" if conf_dir
              else presets.export_path(study_paths.root, study_paths.name))
    values = nest({**config_values, **command_line_values(user_overrides)})
    provenance = {"study": study_paths.name, **{k: _plain(v) for k, v in source.items()}}
    usage = f"uv run train_one.py +{EXPERIMENT_GROUP}={name}"
    best = {**values, **({"groups": dict(groups)} if groups else {}),
            "source": {**provenance, "preset": str(preset), "run_with": usage}}
    verdict = source.get("against_starting_configuration")
    atomic_write_text(study_paths.best_config,
                      f"# Best configuration of study {study_paths.name}, {how_chosen(source)}.\n"
                      + (f"# Against the starting configuration: {verdict}.\n" if verdict else "")
                      + f"# Train it again: {usage}\n" + dump_yaml(best))
    body: dict[str, Any] = {}
    if groups:
        body["defaults"] = [{f"override /{group}": option} for group, option in groups.items()]
    body.update(values)
    body["experiment"] = provenance
    atomic_write_text(preset, "# @package _global_\n"
                      f"# Best configuration of study {study_paths.name} (written by automl).\n"
                      f"#   {usage}\n" + dump_yaml(body))
    return study_paths.best_config, preset


def how_chosen(source: Mapping[str, Any]) -> str:
    """One line on how the configuration was chosen, from its `source` record."""
    def number(key: str) -> str:
        """The source record's value under `key` to 4 significant digits, or `n/a`."""
        value = _plain(source.get(key))
        return f"{value:.4g}" if isinstance(value, (int, float)) else "n/a"

    if source.get("config_id") == "baseline" and "starting_mean" in source:
        return (f"the starting configuration, kept: nothing of the search beat it on the same "
                f"{source.get('n_seeds')} fresh seed(s) (its mean score {number('validated_mean')}; "
                f"{source.get('validated_configs', '?')} configuration(s) validated)")
    if "improvement" in source:
        return (f"chosen by validation: of the configurations the rule found better than the "
                f"starting configuration on the same fresh seeds, the largest paired improvement "
                f"({number('improvement')}, interval {number('improvement_ci_low')} .. "
                f"{number('improvement_ci_high')} at one-sided level {number('test_level')}, "
                f"p = {number('p_value')}; mean score {number('validated_mean')} over "
                f"{source.get('n_seeds')} seed(s))")
    if "validated_mean" in source:
        return (f"chosen by validation: the highest mean score ({number('validated_mean')}) over "
                f"{source.get('n_seeds')} fresh seed(s) among {source.get('validated_configs', '?')} "
                "validated configuration(s)")
    if source.get("method") == "pbt":
        return (f"the winning member's schedule of population-based training (member "
                f"{source.get('member')}, score {number('search_score')} at {source.get('frames')} "
                "frames), not validated")
    seeds = source.get("search_seeds", 1)
    return (f"chosen by the search alone: its best configuration (confirmed ones first), search "
            f"score {number('search_score')} (mean of {seeds} seed(s)), not validated")


def trial_config_values(study_paths: StudyPaths, trial_number: int, *,
                        study: optuna.Study | None = None) -> dict[str, Any]:
    """A search trial's configuration by config key: its `config_values` attribute, else its
    parameters through the study's search space (sampled and fixed values)."""
    view = open_view(study_paths, study)
    trial = next((t for t in view.trials if t.number == trial_number), None)
    if trial is None:
        numbers = [t.number for t in view.trials]
        raise ConfigError(file=str(study_paths.root), key="trial", value=trial_number,
                          rule=f"study {view.study.study_name} has no search trial of that number "
                          f"(it has {_span(numbers)})", fix="pick a trial number it has")
    stored = trial.user_attrs.get(records.CONFIG_VALUES)
    if isinstance(stored, Mapping) and stored:
        return dict(stored)
    if view.space is None:
        raise ConfigError(file=str(study_paths.search_space), key=records.CONFIG_VALUES,
                          value=None, rule=f"trial {trial_number} stores no config values and the "
                          "study's search space cannot be read",
                          fix="restore search_space.yaml in the study folder")
    return view.space.config_values(view.params(trial))


def _span(numbers: Sequence[int]) -> str:
    return f"trials {min(numbers)}..{max(numbers)}" if numbers else "no trials"


def export_validated_best(study_paths: StudyPaths, results: Sequence[ValidationResult], *,
                          study: optuna.Study | None = None,
                          groups: Mapping[str, str] | None = None,
                          user_overrides: Sequence[str] = (),
                          conf_dir: Path | None = None, rule: str = "") -> tuple[Path, Path]:
    """Export the configuration validation chose (its decision in validation.csv: the starting
    configuration unless something beat it), with its statistics; `rule`: the rule it was chosen by."""
    best = choose_best(results)
    source: dict[str, Any] = {
        "trial": best.source_trial, "config_id": best.config_id, "validated_mean": best.mean,
        "validated_std": best.std, "ci_low": best.ci_low, "ci_high": best.ci_high,
        "n_seeds": best.n, "search_score": best.search_score,
        "validated_configs": sum(1 for r in results if r.n > 0)}
    base = baseline_of(results)
    if base is not None:
        source["starting_mean"] = base.mean
        if not best.is_baseline:
            source.update({"improvement": best.improvement, "improvement_ci_low": best.improvement_low,
                           "improvement_ci_high": best.improvement_high, "paired_seeds": best.paired,
                           "p_value": best.p_value, "test_level": best.level})
        source["against_starting_configuration"] = improvement_text(results, rule=rule)
    values = config_values_of(study_paths, best, study=study)
    return export_best_config(study_paths, config_values=values, source=source, groups=groups,
                              user_overrides=user_overrides, conf_dir=conf_dir)


def config_values_of(study_paths: StudyPaths, result: ValidationResult, *,
                     study: optuna.Study | None = None) -> dict[str, Any]:
    """A validated configuration by config key: the baseline's from configs/baseline.json (its
    search trial's where one ran it), a search trial's from the study, any other (a population's
    winner, `pbt_winner`) from its configs/<config_id>.json."""
    if (result.is_baseline and result.source_trial < 0) or not result.config_id.startswith("trial_"):
        try:
            record = json.loads(study_paths.config_file(result.config_id).read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(file=str(study_paths.config_file(result.config_id)),
                              key="config_values", value=None,
                              rule=f"the starting configuration's record cannot be read ({err})",
                              fix="run --mode validate again to rebuild it") from None
        return dict(record["config_values"])
    return trial_config_values(study_paths, result.source_trial, study=study)
