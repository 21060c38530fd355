"""The end of every mode: the configuration chosen (validation's decision, else the search's best)
exported as best_config.yaml and its preset, automl_state.yaml's `chosen` and `best`, the reports,
and the closing summary on the console.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from automl.analysis.validation import ValidationResult
from automl.config import GROUPS
from automl.errors import ConfigError
from automl.paths import trial_name
from automl.requests import SearchOptions
from automl.stages.candidates import completed
from automl.stages.context import Stages


def groups_of(user_overrides: Sequence[str]) -> dict[str, str]:
    """The config-group choices among a study's overrides (`env=cartpole` -> {"env": "cartpole"})."""
    return {k: v for k, _, v in (o.partition("=") for o in user_overrides) if k in GROUPS}


UNVALIDATED_HINT = "--mode validate compares it with the starting configuration on fresh seeds"


@dataclass(frozen=True)
class Choice:
    """What a study hands back: the chosen configuration, where it was exported, and (after
    validation) what it gains over the starting configuration."""

    config_id: str | None
    """`trial_NNNN`, `baseline` or `pbt_winner`; None: nothing to choose."""
    exported: tuple[Any, Any] | None = None
    """best_config.yaml and its Hydra preset, when written."""
    verdict: str | None = None
    """The result line after the chosen id: the gain over the start with the rule's interval, that
    nothing beat it, or what an unvalidated choice rests on."""
    answer: str | None = None
    """What is handed back where it is not a configuration (a population's trained policy): the
    summary names it instead of an unvalidated "best configuration"."""


def choose(st: Stages, validated: list[ValidationResult], search: SearchOptions | None) -> Choice:
    """Validation's choice where it has a result, else the search's best (`search`: the options
    that rank the study's configurations; None: a population, which has no such ranking):
    exported, noted and written to automl_state.yaml."""
    from automl.analysis.validation import choose_best
    from automl.analysis.verdict import improvement_record, rule_of, selection_note

    if validated and any(r.n for r in validated):
        chosen = choose_best(validated)
        exported = _export(st, chosen.config_id, validated)
        st.note(selection_note(validated))
        record = improvement_record(validated, rule=rule_of(st.paths, validated))
        write_best(st, chosen=record, best={
            "config_id": chosen.config_id, "trial": chosen.source_trial, "score": chosen.mean,
            "seeds": chosen.n, "basis": "validation"})
        return Choice(chosen.config_id, exported, str(record["text"]))
    configs = completed(st.study, search) if search is not None else []
    if not configs:
        return Choice(None, verdict="no completed trial")
    top = configs[0]
    config_id = trial_name(top.number)
    exported = _export(st, config_id, None, search=(top.mean, len(top.scores)))
    st.note(f"the choice rests on the search alone ({config_id}, {len(top.scores)} seed(s)): no "
            "validation result")
    write_best(st, chosen=None, best={"config_id": config_id, "trial": top.number,
                                       "score": top.mean, "seeds": len(top.scores), "basis": "search"})
    return Choice(config_id, exported, f"the search's best, mean {top.mean:.4g} over "
                  f"{len(top.scores)} seed(s), not validated ({UNVALIDATED_HINT})")


def _export(st: Stages, config_id: str, validated: list[ValidationResult] | None, *,
            search: tuple[float, int] | None = None) -> tuple[Any, Any] | None:
    """best_config.yaml and its preset for the chosen configuration (validation's pick, else the
    search's best: `search` = its mean and seeds); a configuration that cannot be exported (its
    values lost) is noted, and the study's other outputs are still written."""
    from automl.analysis.export import export_best_config, export_validated_best, trial_config_values
    from automl.analysis.verdict import rule_of

    user = st.user_overrides(config_id)
    try:
        if validated is not None:
            return export_validated_best(st.paths, validated, study=st.study, groups=groups_of(user),
                                         user_overrides=user, rule=rule_of(st.paths, validated))
        assert search is not None
        number = int(config_id.removeprefix("trial_"))
        return export_best_config(
            st.paths, config_values=trial_config_values(st.paths, number, study=st.study),
            source={"config_id": config_id, "trial": number, "search_score": search[0],
                    "search_seeds": search[1], "validated": False}, groups=groups_of(user), user_overrides=user)
    except ConfigError as err:
        st.note(f"best_config.yaml not written: {err.message}")
        return None
    except ValueError as err:  # values that do not nest (a key both a value and a section)
        st.note(f"best_config.yaml not written: {err}")
        return None


def write_best(st: Stages, *, best: dict[str, Any], **extra: Any) -> None:
    """automl_state.yaml's `best`: the chosen configuration (keeping the search's `params` of it;
    `chosen`, in `extra`, is validation's record of it, None where the choice was not validated)."""
    state = yaml.safe_load(st.paths.state.read_text()) if st.paths.state.exists() else None
    earlier = (state or {}).get("best") or {}
    if earlier.get("trial") == best["trial"] and "params" in earlier:
        best = {**best, "params": earlier["params"]}
    st.log.write(st.paths, best=best, **extra)


def report(st: Stages, validated: list[ValidationResult], choice: Choice, *, done: str = "done") -> None:
    """The reports, the phase `done` in automl_state.yaml, and the closing summary."""
    from automl.analysis.reports import write_reports

    st.log.phase = "report"
    write_reports(st.paths, study=st.study)
    st.log.phase = done
    st.log.write(st.paths)
    print_summary(st, validated, choice)


def print_summary(st: Stages, validated: list[ValidationResult], choice: Choice) -> None:
    """The closing summary: the choice, the stage notes, where the outputs are, and last what the
    choice gains over the starting configuration (when validation compared them)."""
    sp = st.paths
    print("\nautoml: summary")
    if choice.config_id is None:
        print("  no completed trial: nothing to choose")
    else:
        chosen = next((r for r in validated if r.config_id == choice.config_id), None)
        if chosen is not None and chosen.n:
            print(f"  best validated configuration: {choice.config_id}, score {chosen.mean:.4g} "
                  f"(95% CI {chosen.ci_low:.4g} .. {chosen.ci_high:.4g}, {chosen.n} seeds)")
        elif choice.answer is not None:
            print(f"  answer: {choice.answer}")
        else:
            print(f"  best configuration (not validated): {choice.config_id}")
    for note in st.log.notes:
        print(f"  note: {note}")
    if choice.exported:
        print(f"  best config: {choice.exported[0]}  (Hydra preset: {choice.exported[1]})")
    print(f"  importance: {sp.importance_yaml}")
    print(f"  plots: {sp.plots_dir}")
    print(f"  all trials: {sp.experiment_df_csv}")
    print(result_line(choice))


def result_line(choice: Choice) -> str:
    """The last line of every mode: the chosen configuration by name, then its verdict."""
    what = f"{choice.config_id} chosen" if choice.config_id is not None else "nothing chosen"
    return f"automl: result: {what}" + (f": {choice.verdict}" if choice.verdict else "")
