"""What validation's result says, in words: the result line (the pick's gain over the starting
configuration with the rule's interval, or that nothing beat it), its record for automl_state.yaml
and the reports, the selection note, and the rule as validation_race.json records it (with
"screening only" where the seeds could not have shown a gain)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from automl.analysis.validation import (
    MIN_PAIRS,
    NO_TRIAL,
    ValidationResult,
    baseline_of,
    choose_best,
)
from automl.paths import StudyPaths


def _interval(r: ValidationResult) -> str:
    if not math.isfinite(r.improvement_low):  # not tested (no race): the mean difference alone
        return f"{r.improvement:+.4g}"
    return f"{r.improvement:+.4g} [{r.improvement_low:+.4g}, {r.improvement_high:+.4g}]"


def improvement_text(results: Sequence[ValidationResult], *, rule: str = "") -> str:
    """What the pick gains over the starting configuration, in one line:
    `+X [lo, hi] over the starting configuration on K fresh seeds (rule)`, or that nothing beat
    it; `rule` names the test and its correction (validation's race record)."""
    base = baseline_of(results)
    if base is None:
        return ("no comparison with the starting configuration: it has no validated score "
                "(it was not validated, or every run of it failed)")
    how = f" ({rule})" if rule else ""
    pick = choose_best(results)
    failed = (f"; the starting configuration failed on {pick.outlasted} seed(s) it finished"
              if pick.outlasted else "")
    if not pick.is_baseline and pick.paired == 0:
        return (f"the starting configuration failed on every seed {pick.config_id} finished "
                f"({pick.outlasted}); {pick.config_id} never failed ({pick.mean:.4g})")
    if not pick.is_baseline:
        return (f"{_interval(pick)} over the starting configuration on {pick.paired} fresh seeds "
                f"({pick.config_id}: {pick.mean:.4g}, starting configuration: {base.mean:.4g}){failed}"
                f"{how}")
    candidates = [r for r in results if not r.is_baseline and r.n > 0]
    if not candidates:
        return (f"no comparison: only the starting configuration was validated ({base.mean:.4g} "
                f"on {base.n} fresh seeds)")
    if all(r.paired < MIN_PAIRS and not r.outlasted for r in candidates):
        most = max(r.paired for r in candidates)
        return (f"too few paired seeds to compare with the starting configuration (at most {most}, "
                f"{MIN_PAIRS} needed): it is kept ({base.mean:.4g} on {base.n} fresh seeds)")
    others = [r for r in results if not r.is_baseline and r.paired > 0]
    text = (f"nothing beat the starting configuration on {base.n} fresh seeds (its score "
            f"{base.mean:.4g} [{base.ci_low:.4g}, {base.ci_high:.4g}])")
    if others:
        best = max(others, key=lambda r: (r.improvement, -r.source_trial))
        text += f"; the closest, {best.config_id}: {_interval(best)} on {best.paired} seeds"
    return text + how


def improvement_record(results: Sequence[ValidationResult], *, rule: str = "") -> dict[str, object]:
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
                           "paired_seeds": pick.paired, "p_value": pick.p_value,
                           "test_level": pick.level})
    record["text"] = improvement_text(results, rule=rule)
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


def read_race(study_paths: StudyPaths) -> dict[str, Any]:
    """validation_race.json (the race validation ran: plan, seeds, rule, power); {} when none."""
    try:
        data = json.loads(study_paths.validation_race.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def rule_of(study_paths: StudyPaths, results: Sequence[ValidationResult]) -> str:
    """The rule validation applied, and, where nothing beat the start on too few seeds to show a
    gain of one seed-to-seed standard deviation, that the result is screening only."""
    race = read_race(study_paths)
    rule = str(race.get("rule") or "")
    power = race.get("power") or {}
    kept = any(r.n > 0 for r in results) and choose_best(results).is_baseline
    if rule and kept and power.get("screening_only"):
        need = power.get("seeds_needed")
        effect = power.get("effect")
        at = f"{effect:.3g}" if isinstance(effect, float) and math.isfinite(effect) else "unknown"
        rule += (f"; screening only: {power.get('most_seeds')} seeds give under "
                 f"{power.get('power', 0.8):.0%} power for a gain of one seed-to-seed standard "
                 f"deviation ({at}); " + (f"about {need} would" if need else "the noise could not be "
                                          "measured"))
    return rule
