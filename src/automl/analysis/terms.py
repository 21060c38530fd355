"""Reward-term diagnostics: each reward term's share of the shaped return at the end of training,
in the best trials of a study against the worst.

A trial's event files hold each raw term's per-step mean, `Reward / <term>` (train.py's
`write_point`), and its config.yaml the weights it trained with (`reward.scales`, task defaults
included). A term's contribution in a trial is |weight x term| at the end of training; its share in
a group of trials is its mean contribution over the group divided by the sum of every term's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import FrozenTrial

from automl import tags
from automl.analysis.folder import StudyView
from automl.analysis.importance import round_sig
from automl.paths import RunPaths, trial_name
from automl.search.space import REWARD_PREFIX
from automl.search.study import records
from automl.search.trials.tb_reader import read_scalars

REPORT_KEY = "reward_term_shares"
"""Key of the table in hyperparameter_importance.yaml."""
END_FRACTION = 0.1
"""The end of training: the mean of this last fraction of a term's logged points (at least one)."""
MIN_TRIALS = 2
"""Scored trials with reward terms below which there is nothing to compare (one per group)."""
QUARTER_TRIALS = 4
"""Trials from which the groups are the best and worst quarter; below it, the best and worst half
(the middle trial of three is left out)."""
SHARE_MEANING = (
    "A term's share is its mean |weight x term| over the group divided by the sum of every "
    f"term's, each term taken at the mean of its last {END_FRACTION:.0%} of logged points (at "
    "least the last); the events hold each term's per-step mean, so |weight x mean| stands for "
    "the mean of |weight x term|")


@dataclass(frozen=True)
class TrialTerms:
    """One trial's reward weights and each weighted, logged term at the end of training."""

    number: int
    weights: dict[str, float]
    """`reward.scales` the trial trained with, by term."""
    ends: dict[str, float]
    """Each term's raw per-step mean at the end of training, for the terms it weighted and logged."""

    def contribution(self, term: str) -> float:
        """|weight x term| at the end of training; 0 for a term the trial did not log."""
        return abs(self.weights.get(term, 0.0) * self.ends.get(term, 0.0))


@dataclass(frozen=True)
class TermRow:
    """One term of the table: its weights and shares in the best and the worst group."""

    term: str
    weights_top: tuple[float, float] | None
    """Lowest and highest weight among the best group's trials (equal when fixed); None if unset."""
    weights_bottom: tuple[float, float] | None
    """The same among the worst group's trials."""
    share_top: float
    """Share of the shaped return in the best group (NaN when every term is 0 there)."""
    share_bottom: float
    """Share of the shaped return in the worst group."""

    @property
    def difference(self) -> float:
        """share_top - share_bottom: positive for a term the best trials lean on more."""
        return self.share_top - self.share_bottom


@dataclass(frozen=True)
class TermShares:
    """The table and what it rests on, or a note saying why there is none."""

    rows: list[TermRow]
    """Terms by difference, the one the best trials lean on most first."""
    top: list[int]
    """Trial numbers of the best group, best first."""
    bottom: list[int]
    """Trial numbers of the worst group, best first."""
    group: str = "quarter"
    """`quarter`, or `half` for a study of fewer than QUARTER_TRIALS usable trials."""
    usable: int = 0
    """Completed trials with reward terms, the groups' pool."""
    left_out: int = 0
    """Scored trials without reward terms (no events, no weights or no `Reward / <term>` series)."""
    note: str | None = None
    """Why there is no table; None when there is one."""

    @property
    def basis(self) -> str:
        """How many trials each group holds and what a share means."""
        text = (f"Best {self.group}: the {len(self.top)} best of the {self.usable} completed trials "
                f"with reward terms; worst {self.group}: the {len(self.bottom)} worst")
        if self.left_out:
            text += f" ({self.left_out} completed trial(s) without reward terms left out)"
        return f"{text}. {SHARE_MEANING}"


# ---------------------------------------------------------------------------------------------
# One trial


def end_value(points: list[tuple[int, float]], fraction: float = END_FRACTION) -> float | None:
    """Mean of the last `fraction` of the finite values (at least the last one); None if none."""
    values = [v for _, v in points if math.isfinite(v)]
    if not values:
        return None
    n = max(1, math.ceil(fraction * len(values)))
    return sum(values[-n:]) / n


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _config_scales(config: Path) -> Mapping[str, Any] | None:
    """config.yaml's `reward.scales`, or None when the file or the key is missing or unreadable."""
    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError):
        return None
    reward = data.get("reward") if isinstance(data, dict) else None
    scales = reward.get("scales") if isinstance(reward, dict) else None
    return scales if isinstance(scales, dict) else None


def trial_weights(view: StudyView, trial: FrozenTrial) -> dict[str, float]:
    """The trial's reward weights: its config.yaml's `reward.scales` (every term, task defaults
    included), else the `reward.scales.<term>` keys of its config_values (the searched ones)."""
    scales = _config_scales(RunPaths(view.run_dir(trial)).config)
    if scales is None:
        values = trial.user_attrs.get(records.CONFIG_VALUES)
        values = values if isinstance(values, Mapping) else {}
        scales = {k.removeprefix(REWARD_PREFIX): v for k, v in values.items()
                  if isinstance(k, str) and k.startswith(REWARD_PREFIX)}
    return {str(term): float(w) for term, w in scales.items() if _is_number(w)}


def trial_terms(view: StudyView, trial: FrozenTrial) -> TrialTerms | None:
    """The trial's weights and end-of-training terms; None when it has no weighted term logged."""
    weights = trial_weights(view, trial)
    tb = RunPaths(view.run_dir(trial)).tb
    if not weights or not tb.is_dir():
        return None
    series = read_scalars(tb, verify_data=False)
    ends: dict[str, float] = {}
    for term in weights:
        tag = tags.reward_term_tag(term)
        if tag == tags.EPISODE_REWARD_MEAN:  # the shaped return itself, never a term
            continue
        value = end_value(series.get(tag, []))
        if value is not None:
            ends[term] = value
    return TrialTerms(number=trial.number, weights=weights, ends=ends) if ends else None


# ---------------------------------------------------------------------------------------------
# The table


def group_size(usable: int) -> int:
    """Trials in each group: a quarter from QUARTER_TRIALS trials on, else a half (rounded down)."""
    return usable // 4 if usable >= QUARTER_TRIALS else usable // 2


def group_shares(group: list[TrialTerms], terms: list[str]) -> dict[str, float]:
    """Each term's mean contribution over the group, over the sum of all; NaN when all are 0."""
    means = {t: sum(x.contribution(t) for x in group) / len(group) for t in terms}
    total = sum(means.values())
    return {t: (m / total if total > 0 else math.nan) for t, m in means.items()}


def _weight_range(group: list[TrialTerms], term: str) -> tuple[float, float] | None:
    weights = [x.weights[term] for x in group if term in x.weights]
    return (min(weights), max(weights)) if weights else None


def _no_table(scored: int, usable: int) -> str:
    if scored == 0:
        return "no reward-term shares: the study has no completed trial with a finite score yet"
    if usable == 0:
        return (f"no reward-term shares: none of the {scored} completed trials logged a weighted "
                f"reward term (a `{tags.REWARD_TERM_PREFIX}<term>` series in its event files for a "
                "term of its reward.scales)")
    return (f"no reward-term shares: only {usable} of the {scored} completed trials logged its "
            f"reward terms, and comparing the best with the worst needs at least {MIN_TRIALS}")


def _row_order(row: TermRow) -> tuple[float, str]:
    return (-row.difference if math.isfinite(row.difference) else math.inf, row.term)


def term_shares(view: StudyView) -> TermShares:
    """Each reward term's share of the shaped return in the best and the worst quarter of the
    completed trials (halves below QUARTER_TRIALS), or a note saying why there is no table."""
    scored = view.scored()
    usable = [x for x in (trial_terms(view, t) for t in scored) if x is not None]
    if len(usable) < MIN_TRIALS:
        return TermShares(rows=[], top=[], bottom=[], usable=len(usable),
                          left_out=len(scored) - len(usable),
                          note=_no_table(len(scored), len(usable)))
    k = group_size(len(usable))
    top, bottom = usable[:k], usable[-k:]
    terms = sorted({term for x in top + bottom for term in x.ends})
    share_top, share_bottom = group_shares(top, terms), group_shares(bottom, terms)
    rows = [TermRow(term=t, weights_top=_weight_range(top, t),
                    weights_bottom=_weight_range(bottom, t),
                    share_top=share_top[t], share_bottom=share_bottom[t]) for t in terms]
    return TermShares(rows=sorted(rows, key=_row_order), top=[x.number for x in top],
                      bottom=[x.number for x in bottom],
                      group="quarter" if len(usable) >= QUARTER_TRIALS else "half",
                      usable=len(usable), left_out=len(scored) - len(usable))


def _share(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def shares_entry(shares: TermShares) -> dict[str, Any]:
    """The `reward_term_shares` entry of hyperparameter_importance.yaml: the table and its basis,
    or only a note. Weights are [lowest, highest] in the group."""
    if shares.note is not None:
        return {"note": shares.note}
    terms = [{"term": r.term,
              "weight_top": round_sig(list(r.weights_top)) if r.weights_top else None,
              "weight_bottom": round_sig(list(r.weights_bottom)) if r.weights_bottom else None,
              "share_top": _share(r.share_top), "share_bottom": _share(r.share_bottom),
              "difference": _share(r.difference)} for r in shares.rows]
    return {"basis": shares.basis, "top_trials": [trial_name(n) for n in shares.top],
            "bottom_trials": [trial_name(n) for n in shares.bottom], "terms": terms}
