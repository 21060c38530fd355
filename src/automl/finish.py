"""The end of a study, in every mode: the configuration chosen (validation's pick, else the
search's best), best_config.yaml and its preset exported, the final run (stage mode), the reports,
and the closing summary on the console.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
import yaml

from automl.config import GROUPS
from automl.errors import ConfigError
from automl.paths import StudyPaths, trial_name
from automl.requests import Request
from automl.reruns import StageLog, completed, config_record, run_final
from automl.search.study import records
from automl.search.trials.forkserver import ForkServer


def groups_of(user_overrides: Sequence[str]) -> dict[str, str]:
    """The config-group choices among a study's overrides (`env=cartpole` -> {"env": "cartpole"})."""
    return {k: v for k, _, v in (o.partition("=") for o in user_overrides) if k in GROUPS}


def _user_overrides(sp: StudyPaths, study: optuna.Study, config_id: str) -> list[str]:
    """The command-line overrides a configuration ran with: its config file's, else (a trial that
    ran on another machine of a shared study) those the study started with."""
    try:
        return list(config_record(sp, config_id).get("user_overrides", []))
    except (OSError, ValueError):
        return list(study.user_attrs.get(records.STUDY_OVERRIDES) or [])


def finish(request: Request, sp: StudyPaths, study: optuna.Study, validated: list[Any],
           deadline: float, log: StageLog, *, final: bool, forkserver: ForkServer | None = None,
           done: str = "done") -> None:
    """Choose, run the final stage, export and report; print the summary. `done`: the phase
    automl_state.yaml says at the end."""
    from automl.analysis.validation import choose_best, improvement_record, selection_note

    chosen_id, exported, verdict = None, None, None
    if validated and any(r.n for r in validated):
        chosen = choose_best(validated)
        chosen_id = chosen.config_id
        exported = _export(sp, study, chosen_id, validated, log)
        log.note(sp, selection_note(validated))
        record = improvement_record(validated)
        verdict = str(record["text"])
        _write_best(sp, log, chosen=record, best={
            "config_id": chosen_id, "trial": chosen.source_trial, "score": chosen.mean,
            "seeds": chosen.n, "basis": "validation"})
    elif configs := completed(study, request.search):
        top = configs[0]
        chosen_id = trial_name(top.number)
        exported = _export(sp, study, chosen_id, None, log, search=(top.mean, len(top.scores)))
        log.note(sp, f"the choice rests on the search alone ({chosen_id}, {len(top.scores)} "
                 "seed(s)): no validation result")
        _write_best(sp, log, chosen=None, best={
            "config_id": chosen_id, "trial": top.number, "score": top.mean,
            "seeds": len(top.scores), "basis": "search"})
    if final and chosen_id is not None:
        run_final(request, sp, study, chosen_id, deadline, log, forkserver)
    from automl.analysis.reports import write_reports

    log.phase = "report"
    write_reports(sp, study=study)
    log.phase = done
    log.write(sp)
    print_summary(sp, validated, chosen_id, exported, log, verdict)


def _export(sp: StudyPaths, study: optuna.Study, config_id: str, validated: list[Any] | None,
            log: StageLog, *, search: tuple[float, int] | None = None) -> tuple[Any, Any] | None:
    """best_config.yaml and its preset for the chosen configuration (validation's pick, else the
    search's best: `search` = its mean and seeds); a configuration that cannot be exported (its
    values lost) is noted, and the study's other outputs are still written."""
    from automl.analysis.export import export_best_config, export_validated_best, trial_config_values

    user = _user_overrides(sp, study, config_id)
    try:
        if validated is not None:
            return export_validated_best(sp, validated, study=study, groups=groups_of(user),
                                         user_overrides=user)
        assert search is not None
        number = int(config_id.removeprefix("trial_"))
        return export_best_config(
            sp, config_values=trial_config_values(sp, number, study=study),
            source={"trial": number, "search_score": search[0], "search_seeds": search[1],
                    "validated": False}, groups=groups_of(user), user_overrides=user)
    except ConfigError as err:
        log.note(sp, f"best_config.yaml not written: {err.message}")
        return None
    except ValueError as err:  # values that do not nest (a key both a value and a section)
        log.note(sp, f"best_config.yaml not written: {err}")
        return None


def _write_best(sp: StudyPaths, log: StageLog, *, best: dict[str, Any], **extra: Any) -> None:
    """automl_state.yaml's `best`: the chosen configuration (keeping the search's `params` of it)."""
    state = yaml.safe_load(sp.state.read_text()) if sp.state.exists() else None
    earlier = (state or {}).get("best") or {}
    if earlier.get("trial") == best["trial"] and "params" in earlier:
        best = {**best, "params": earlier["params"]}
    log.write(sp, best=best, **extra)


def print_summary(sp: StudyPaths, validated: list[Any], chosen_id: str | None,
                  exported: tuple[Any, Any] | None, log: StageLog, verdict: str | None) -> None:
    """The closing summary: the choice, the stage notes, where the outputs are, and last what the
    choice gains over the starting configuration (when validation compared them)."""
    print("\nautoml: summary")
    if chosen_id is None:
        print("  no completed trial: nothing to choose")
    else:
        chosen = next((r for r in validated if r.config_id == chosen_id), None)
        if chosen is not None and chosen.n:
            print(f"  best validated configuration: {chosen_id}, score {chosen.mean:.4g} "
                  f"(95% CI {chosen.ci_low:.4g} .. {chosen.ci_high:.4g}, {chosen.n} seeds)")
        else:
            print(f"  best configuration (not validated): {chosen_id}")
    for note in log.notes:
        print(f"  note: {note}")
    if exported:
        print(f"  best config: {exported[0]}  (Hydra preset: {exported[1]})")
    print(f"  importance: {sp.importance_yaml}")
    print(f"  plots: {sp.plots_dir}")
    print(f"  all trials: {sp.experiment_df_csv}")
    if verdict:
        print(f"automl: result: {verdict}")
