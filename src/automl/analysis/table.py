"""One row per search trial (score, stop reason, frames, parameters, task metrics, validated score)
and experiment_df.csv, the study's table best first; configurations.csv, one row per configuration
(its seeds grouped), in the same order (automl.analysis.configs)."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl import reasons, tags
from automl.analysis.configs import ConfigEntry, rank_configurations
from automl.analysis.folder import StudyView, open_view
from automl.analysis.validation import read_validation_csv
from automl.paths import RunPaths, StudyPaths, atomic_write_text, trial_name
from automl.search.study import records
from automl.search.trials.tb_reader import read_scalars
from automl.summary import RunSummary, load_summary

METRICS = ("success_rate", "termination_rate", "episode_length", "episode_reward_mean")
"""Task metrics of each row; episode_reward_mean is the shaped reward under the trial's own weights."""
METRIC_TAGS = {"success_rate": tags.SUCCESS_RATE, "termination_rate": tags.TERMINATION_RATE,
               "episode_length": tags.EPISODE_LENGTH,
               "episode_reward_mean": tags.EPISODE_REWARD_MEAN}
SORT_METRICS = ("score", *METRICS)
"""What `analyze.py --metric` sorts by."""
STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
               TrialState.FAIL: "failed", TrialState.RUNNING: "running",
               TrialState.WAITING: "waiting"}
CUT = "cut"
"""The state shown for a trial the budget or Ctrl-C stopped (Optuna's FAIL, stop reason budget):
no verdict on its configuration, and not a failure."""
_STATE_ORDER = {"complete": 0, "pruned": 1, "running": 2, CUT: 2, "failed": 3, "waiting": 4}
"""Finished results first, whatever the sort metric: a partial score is not a final one."""
LEADING_COLUMNS = ("trial", "state", "stop_reason", "score", "frames", "wall_s")
TRAILING_COLUMNS = (*METRICS, "validated_score", "confirms", "configuration", "config_rank",
                    "config_mean", "config_seeds")
"""`confirms`: the trial whose configuration this one trained again on another seed (search's
--confirm-seeds); empty for a trial that sampled its configuration. `configuration`: the
configuration the trial trained (`trial_NNNN`, or `baseline` for the starting one), its rank among
the study's configurations (1: the chosen one), its mean search score and completed search seeds."""
CONFIG_COLUMNS = ("rank", "config_id", "chosen", "confirmed", "search_mean", "search_seeds",
                  "validated_mean", "validated_seeds", "ci_low", "ci_high", "improvement",
                  "improvement_ci_low", "improvement_ci_high", "trials")
"""configurations.csv's columns before the parameters; `trials` are ;-separated trial numbers."""


@dataclass
class TrialRow:
    """What the table shows of one search trial."""

    number: int
    state: str
    """complete / pruned / failed / running / waiting."""
    stop_reason: str
    """automl.reasons value; `running` while it runs."""
    score: float
    """Final score when complete; else the last score it reported (NaN if none)."""
    frames: int | None
    wall_s: float | None
    params: dict[str, Any] = field(default_factory=dict)
    """Signed native values, by parameter name."""
    metrics: dict[str, float] = field(default_factory=dict)
    validated_score: float = math.nan
    """Mean over the validation seeds, where the configuration was validated."""
    confirms: int | None = None
    """The trial whose configuration it trains again on another seed (automl.search.study.confirm)."""

    @property
    def config_id(self) -> str:
        """The trial's name, `trial_NNNN`, as its folders and the validation records name it."""
        return trial_name(self.number)

    def value(self, metric: str) -> float:
        """`score` or one of METRICS; NaN when unknown."""
        raw = self.score if metric == "score" else self.metrics.get(metric, math.nan)
        return float(raw) if raw is not None else math.nan


@dataclass(frozen=True)
class ValidationRun:
    """One validation seed of a configuration no search trial trained (a start that was kept, a
    population's winner): experiment_df.csv lists these runs where the configuration ranks, so that
    the chosen configuration's runs come first whichever it is."""

    entry: ConfigEntry
    seed: int
    score: float


def _last_intermediate(trial: FrozenTrial) -> tuple[int, float] | None:
    if not trial.intermediate_values:
        return None
    step = max(trial.intermediate_values)
    return step, float(trial.intermediate_values[step])


def _tb_metrics(run: RunPaths) -> dict[str, float]:
    """Last value of each task metric in the run's event files (a trial still running)."""
    if not run.tb.is_dir():
        return {}
    series = read_scalars(run.tb, verify_data=False)
    return {name: series[tag][-1][1] for name, tag in METRIC_TAGS.items() if series.get(tag)}


def _metrics(view: StudyView, trial: FrozenTrial) -> tuple[dict[str, float], RunSummary | None]:
    """Task metrics (user attribute, else summary.json, else event files) and the summary."""
    run = RunPaths(view.run_dir(trial))
    summary = load_summary(run.summary)
    metrics = trial.user_attrs.get(records.METRICS) or (summary.metrics if summary else {})
    chosen = {k: float(metrics[k]) for k in METRICS if isinstance(metrics.get(k), (int, float))}
    if len(chosen) < len(METRICS) and trial.state == TrialState.RUNNING:
        chosen = {**_tb_metrics(run), **chosen}
    return chosen, summary


def trial_row(view: StudyView, trial: FrozenTrial, validated: dict[int, float]) -> TrialRow:
    """The row of one trial, from its user attributes, its summary.json and its event files."""
    metrics, summary = _metrics(view, trial)
    last = _last_intermediate(trial)
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        score = float(trial.value)
    elif last is not None:
        score = last[1]
    else:
        score = summary.score if summary is not None and summary.score is not None else math.nan
    frames = trial.user_attrs.get(records.FRAMES, (summary.frames or None) if summary else None)
    if frames is None and last is not None:
        frames = last[0]
    wall = trial.user_attrs.get(records.WALL_S, (summary.wall_s or None) if summary else None)
    if wall is None and trial.state == TrialState.RUNNING and trial.datetime_start is not None:
        wall = time.time() - trial.datetime_start.timestamp()
    state = STATE_NAMES.get(trial.state, trial.state.name.lower())
    reason = trial.user_attrs.get(records.STOP_REASON) or state
    if reason == reasons.BUDGET:
        state = CUT
    return TrialRow(number=trial.number, state=state, stop_reason=str(reason), score=score,
                    frames=int(frames) if frames is not None else None,
                    wall_s=float(wall) if wall is not None else None,
                    params=view.params(trial), metrics=metrics,
                    validated_score=validated.get(trial.number, math.nan),
                    confirms=trial.user_attrs.get(records.CONFIRMS))


def trial_rows(view: StudyView) -> list[TrialRow]:
    """Rows of every search trial, in trial order."""
    validated = {r.source_trial: r.mean for r in read_validation_csv(view.paths)}
    return [trial_row(view, t, validated) for t in view.trials]


def sort_rows(rows: list[TrialRow], *, metric: str = "score",
              descending: bool = True) -> list[TrialRow]:
    """Complete trials first, then pruned, running, failed; within each by `metric`, NaN last."""
    def key(row: TrialRow) -> tuple[int, int, float, int]:
        """Sort key: state rank, missing value last, signed metric, then trial number."""
        value = row.value(metric)
        missing = not math.isfinite(value)
        signed = 0.0 if missing else (-value if descending else value)
        return (_STATE_ORDER.get(row.state, 9), int(missing), signed, row.number)

    return sorted(rows, key=key)


def experiment_df_order(rows: list[TrialRow], *, descending: bool = True,
                        ranking: list[ConfigEntry] | None = None) -> list[TrialRow | ValidationRun]:
    """experiment_df.csv's order: the runs of each configuration of `ranking` together, in its
    order (the chosen configuration first): its search trials, or its validation seeds where no
    search trial trained it; then every other trial as `sort_rows` orders them. Without a ranking:
    validated configurations first, by validated mean, then `sort_rows`."""
    if ranking is None:
        validated = [r for r in rows if math.isfinite(r.validated_score)]
        validated.sort(key=lambda r: (-r.validated_score if descending else r.validated_score,
                                      r.number))
        rest = [r for r in rows if not math.isfinite(r.validated_score)]
        return [*validated, *sort_rows(rest, descending=descending)]
    by_number = {r.number: r for r in rows}
    ordered: list[TrialRow | ValidationRun] = []
    for entry in ranking:
        if entry.trials:
            ordered += [by_number[n] for n in entry.trials if n in by_number]
        elif entry.validated is not None:
            ordered += [ValidationRun(entry, seed, score)
                        for seed, score in zip(entry.validated.seeds, entry.validated.scores, strict=False)]
    placed = {r.number for r in ordered if isinstance(r, TrialRow)}
    return ordered + sort_rows([r for r in rows if r.number not in placed], descending=descending)


def _cell(value: Any) -> str:
    """CSV text: lists as JSON, floats exact, missing as empty."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def experiment_df_text(view: StudyView, rows: list[TrialRow | ValidationRun],
                       ranking: list[ConfigEntry] | None = None) -> str:
    """experiment_df.csv content: the leading columns, each parameter, each metric, validated score
    and the configuration each run trained (from `ranking`, else the study's). A validation run
    has no trial number; its state is `validation` and its stop reason names its seed."""
    ranking = rank_configurations(view) if ranking is None else ranking
    where = {n: (rank, entry) for rank, entry in enumerate(ranking, 1) for n in entry.trials}
    rank_of = {entry.config_id: rank for rank, entry in enumerate(ranking, 1)}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = view.param_names
    writer.writerow([*LEADING_COLUMNS, *names, *TRAILING_COLUMNS])
    for r in rows:
        if isinstance(r, ValidationRun):
            e = r.entry
            line = ["", "validation", f"validation seed {r.seed}", r.score, None, None,
                    *(e.params.get(n) for n in names), *[None] * len(METRICS), e.validated_mean,
                    None, e.config_id, rank_of[e.config_id], e.search_mean, 0]
            writer.writerow([_cell(v) for v in line])
            continue
        lead = [r.number, r.state, r.stop_reason, r.score, r.frames, r.wall_s]
        rank, entry = where.get(r.number, (None, None))
        config = [entry.config_id, rank, entry.search_mean,
                  len(entry.search_scores)] if entry is not None else [None] * 4
        validated = entry.validated_mean if entry is not None else r.validated_score
        tail = [r.metrics.get(m) for m in METRICS] + [validated, r.confirms, *config]
        writer.writerow([_cell(v) for v in (*lead, *(r.params.get(n) for n in names), *tail)])
    return buffer.getvalue()


def configurations_text(view: StudyView, ranking: list[ConfigEntry]) -> str:
    """configurations.csv content: one row per configuration, chosen first (see CONFIG_COLUMNS)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = view.param_names
    writer.writerow([*CONFIG_COLUMNS, *names])
    for rank, e in enumerate(ranking, 1):
        v = e.validated
        stats = ([v.mean, v.n, v.ci_low, v.ci_high, v.improvement, v.improvement_low,
                  v.improvement_high] if v is not None else [None] * 7)
        writer.writerow([_cell(x) for x in (
            rank, e.config_id, int(e.chosen), int(e.confirmed), e.search_mean,
            len(e.search_scores), *stats, ";".join(map(str, e.trials)),
            *(e.params.get(n) for n in names))])
    return buffer.getvalue()


def write_experiment_df(study_paths: StudyPaths, study: optuna.Study | None = None) -> Path:
    """Rewrite experiment_df.csv and configurations.csv atomically, in the configurations' order."""
    return write_tables(open_view(study_paths, study))


def write_tables(view: StudyView, rows: list[TrialRow] | None = None) -> Path:
    """experiment_df.csv (`rows`, default: every trial's) and configurations.csv; returns the first."""
    ranking = rank_configurations(view)
    rows = trial_rows(view) if rows is None else rows
    ordered = experiment_df_order(rows, descending=view.maximize, ranking=ranking)
    atomic_write_text(view.paths.experiment_df_csv, experiment_df_text(view, ordered, ranking))
    atomic_write_text(view.paths.configurations_csv, configurations_text(view, ranking))
    return view.paths.experiment_df_csv
