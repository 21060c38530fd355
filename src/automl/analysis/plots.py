"""The study's plots (PNG in plots/): every trial's score curve, score against each parameter,
the importance ranking, the optimization history and the reward terms' shares.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never pyplot: no global state,
no display needed. A study with nothing to show yet gets a figure that says so.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from optuna.trial import FrozenTrial, TrialState

from automl import reasons, tags
from automl.analysis.folder import StudyView, open_view
from automl.analysis.importance import importance_report, read_importance
from automl.analysis.table import STATE_NAMES
from automl.analysis.terms import TermShares
from automl.paths import RunPaths, StudyPaths
from automl.search.study import records
from automl.search.trials.tb_reader import read_scalars

MULTI_TRIAL = "multi_trial.png"
EXPERIMENT_VARIABLES = "experiment_variables.png"
IMPORTANCE = "importance.png"
OPTIMIZATION_HISTORY = "optimization_history.png"
TERM_SHARES = "reward_term_shares.png"
DPI = 100
CMAP = "viridis"
END_MARKERS = {reasons.COMPLETED: "o", reasons.PLATEAU: "s", reasons.DROP: "v",
               reasons.PRUNED: "x", reasons.BUDGET: "D", reasons.TIMEOUT: "*",
               reasons.ERROR: "X", reasons.CONSTRAINT: "+", "running": ">"}
"""Marker at the last point of a trial's curve, by why it ended."""


def _save(fig: Figure, path: Path) -> Path:
    """PNG written to a temp file and renamed: a viewer never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    FigureCanvasAgg(fig)
    fig.savefig(tmp, format="png", dpi=DPI)
    os.replace(tmp, path)
    return path


def message_figure(title: str, text: str) -> Figure:
    """A figure that only says why there is nothing to plot."""
    fig = Figure(figsize=(7, 3))
    fig.suptitle(title)
    fig.text(0.5, 0.5, textwrap.fill(text, 70), ha="center", va="center", fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------
# Multi-trial: score against frames


def score_curve(view: StudyView, trial: FrozenTrial) -> list[tuple[int, float]]:
    """The trial's score series from its event files, else the values it reported to Optuna."""
    tb = RunPaths(view.run_dir(trial)).tb
    points = read_scalars(tb, verify_data=False).get(tags.SCORE, []) if tb.is_dir() else []
    if not points:
        points = sorted(trial.intermediate_values.items())
    return [(int(s), float(v)) for s, v in points if math.isfinite(v)]


def _end_reason(trial: FrozenTrial) -> str:
    reason = trial.user_attrs.get("stop_reason")
    return str(reason) if reason else STATE_NAMES.get(trial.state, "running")


def plot_multi_trial(view: StudyView) -> Figure:
    """Every search trial's score against frames; the end marker says why it stopped."""
    curves = {t.number: (score_curve(view, t), _end_reason(t)) for t in view.trials}
    curves = {n: c for n, c in curves.items() if c[0]}
    title = f"Score against frames, every search trial ({view.study.study_name})"
    if not curves:
        return message_figure(title, "No trial has reported a score yet.")
    finals = [points[-1][1] for points, _ in curves.values()]
    norm = Normalize(min(finals), max(finals) if max(finals) > min(finals) else min(finals) + 1)
    cmap = _cmap()
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax = fig.add_subplot()
    for points, reason in curves.values():
        steps, values = zip(*points, strict=True)
        color = cmap(norm(values[-1]))
        ax.plot(steps, values, color=color, alpha=0.75, linewidth=1.2)
        ax.plot(steps[-1], values[-1], marker=END_MARKERS.get(reason, "o"), color=color,
                markersize=8, markeredgewidth=2, linestyle="none")
    used = sorted({reason for _, reason in curves.values()})
    handles = [Line2D([], [], color="black", marker=END_MARKERS.get(r, "o"), linestyle="none",
                      label=f"{r} ({sum(c[1] == r for c in curves.values())})") for r in used]
    ax.legend(handles=handles, title="stop reason (trials)", loc="best")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="last score of the trial")
    ax.set(title=f"{title}: {len(curves)} trials", xlabel="frames", ylabel="score")
    ax.grid(alpha=0.3)
    return fig


def _cmap() -> Any:
    from matplotlib import colormaps

    return colormaps[CMAP]


# ---------------------------------------------------------------------------------------------
# Experiment variables: final score against each parameter


def _panel_values(view: StudyView, name: str, values: list[Any]) -> tuple[list[float], dict]:
    """x positions of `values` and the axis settings (log scale, tick labels, label)."""
    spec = view.spec(name)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    categorical = (spec.kind in ("choice", "categorical") if spec is not None else not numeric)
    if categorical:
        labels = ([str(spec.to_native(c)) for c in spec.grid_values() or []] if spec is not None
                  else sorted({str(v) for v in values}))
        index = {label: i for i, label in enumerate(labels)}
        rng = np.random.default_rng(0)  # a little jitter so equal choices do not hide each other
        xs = [index.get(str(v), 0) + float(rng.uniform(-0.08, 0.08)) for v in values]
        return xs, {"ticks": labels, "xlabel": f"{name} (choice)"}
    negative_log = spec is not None and spec.log and spec.sign < 0
    xs = [abs(float(v)) if negative_log else float(v) for v in values]
    label = f"|{name}| (magnitude; the values are negative)" if negative_log else name
    if spec is not None and spec.log:
        label += ", log scale"
    return xs, {"log": bool(spec is not None and spec.log), "xlabel": label}


def plot_experiment_variables(view: StudyView) -> Figure:
    """One panel per searched parameter: its value against the trial's final score."""
    scored = view.scored()
    names = view.param_names
    title = f"Final score against each searched parameter ({view.study.study_name})"
    if not scored or not names:
        why = "No completed trial yet." if not scored else "The study searches no parameter."
        return message_figure(title, why)
    scores = [float(t.value or 0.0) for t in scored]
    norm = Normalize(min(scores), max(scores) if max(scores) > min(scores) else min(scores) + 1)
    ncols = min(len(names), 3 if len(names) <= 9 else 4)
    nrows = math.ceil(len(names) / ncols)
    width, height = 4.3 * ncols + 1.2, 3.4 * nrows + 0.9
    # Fixed margins, not constrained layout: it costs seconds for a grid of panels.
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.7 / width, right=1 - 1.3 / width, bottom=0.9 / height,
                        top=1 - 0.6 / height, wspace=0.28, hspace=0.8 * 3.4 / (3.4 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    params = [view.params(t) for t in scored]
    for i, (ax, name) in enumerate(zip(axes, names, strict=False)):
        pairs = [(p[name], s) for p, s in zip(params, scores, strict=True) if p.get(name) is not None]
        xs, axis = _panel_values(view, name, [v for v, _ in pairs])
        ax.scatter(xs, [s for _, s in pairs], c=[s for _, s in pairs], cmap=CMAP, norm=norm,
                   edgecolors="black", linewidths=0.4, s=36)
        if axis.get("log"):
            ax.set_xscale("log")
        if "ticks" in axis:
            ax.set_xticks(range(len(axis["ticks"])), axis["ticks"], rotation=20, fontsize=8)
        ax.set(title=name, xlabel=axis["xlabel"], ylabel="score" if i % ncols == 0 else "")
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    bar = fig.add_axes((1 - 0.95 / width, 0.9 / height, 0.18 / width, 1 - 1.5 / height))
    fig.colorbar(ScalarMappable(norm=norm, cmap=_cmap()), cax=bar, label="final score")
    fig.suptitle(f"{title}: {len(scored)} completed trials")
    return fig


# ---------------------------------------------------------------------------------------------
# Importance and history


def plot_importance(report: dict[str, Any]) -> Figure:
    """Horizontal bars of the importance ranking, or a figure that says why there is none."""
    ranked = report.get("importance_ranking") or []
    title = f"Hyperparameter importance ({report.get('study_name', '?')})"
    if not ranked:
        return message_figure(title, str(report.get("note") or "no ranking"))
    labels = [f"{r['parameter']} ({r.get('group', '?')})" for r in ranked]
    values = [float(r["importance"]) for r in ranked]
    fig = Figure(figsize=(9, 1.6 + 0.38 * len(ranked)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(range(len(ranked)), values, color=_cmap()(0.35))
    ax.set_yticks(range(len(ranked)), labels)
    ax.invert_yaxis()
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    caption = f"{report.get('evaluator', '')} over {report.get('basis', 'the completed trials')}"
    if report.get("warning"):
        caption += f"\nWARNING: {report['warning']}"
    ax.set(title=f"{title}\n{caption}",
           xlabel="importance (share of the total, sums to 1)")
    ax.set_xlim(0, max(values) * 1.15 or 1)
    return fig


def plot_optimization_history(view: StudyView) -> Figure:
    """Each completed trial's score by trial number, with the best score so far."""
    done = sorted(view.scored(), key=lambda t: t.number)
    title = f"Optimization history ({view.study.study_name})"
    if not done:
        return message_figure(title, "No completed trial yet.")
    numbers = [t.number for t in done]
    scores = [float(t.value or 0.0) for t in done]
    best = np.maximum.accumulate(scores) if view.maximize else np.minimum.accumulate(scores)
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(numbers, scores, color=_cmap()(0.3), label="completed trial", zorder=3)
    ax.step(numbers, best, where="post", color="tab:red", label="best so far")
    stopped = [t for t in view.trials if t.intermediate_values and (
        t.state == TrialState.PRUNED or t.user_attrs.get(records.STOP_REASON) == reasons.BUDGET)]
    if stopped:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in stopped]
        ax.scatter([t.number for t in stopped], last, marker="x", color="grey",
                   label="stopped early (last reported score)")
    ax.set(title=title, xlabel="trial number", ylabel="score")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return fig


def _importance_for(view: StudyView, importance: dict[str, Any] | None) -> dict[str, Any]:
    """The given report, else the folder's YAML if it is up to date, else a fresh one."""
    if importance is not None:
        return importance
    stored = read_importance(view.paths)
    if stored is not None and stored.get("completed_trials") == len(view.scored()):
        return stored
    return importance_report(view)


# ---------------------------------------------------------------------------------------------
# Reward terms


def plot_term_shares(shares: TermShares, *, study_name: str) -> Figure:
    """Each reward term's share of the shaped return, best group beside worst group, or a figure
    that says why there is none."""
    title = f"Reward-term shares of the shaped return ({study_name})"
    if not shares.rows:
        return message_figure(title, shares.note or "No reward terms.")
    rows = shares.rows
    fig = Figure(figsize=(9, 2.4 + 0.6 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    ys = np.arange(len(rows))
    height = 0.38
    cmap = _cmap()  # the score colours of the other plots: bright for the best, dark for the worst
    groups = [(f"best {shares.group} ({len(shares.top)} trials)", [r.share_top for r in rows],
               -height / 2, cmap(0.8)),
              (f"worst {shares.group} ({len(shares.bottom)} trials)",
               [r.share_bottom for r in rows], height / 2, cmap(0.15))]
    for label, values, offset, color in groups:
        drawn = [v if math.isfinite(v) else 0.0 for v in values]
        ax.barh(ys + offset, drawn, height=height, color=color, label=label)
        for y, v in zip(ys + offset, values, strict=True):
            ax.text(v if math.isfinite(v) else 0.0, y, f" {v:.2f}" if math.isfinite(v) else " -",
                    va="center", fontsize=8)
    ax.set_yticks(ys, [r.term for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    fig.suptitle(title)
    caption = f"Terms by share in the best {shares.group} minus share in the worst. {shares.basis}"
    ax.set_title(textwrap.fill(caption, 120), fontsize=8)
    ax.set_xlabel("share of the shaped return (|weight x term|, sums to 1 in each group)")
    ax.legend(loc="best")
    ax.grid(axis="x", alpha=0.3)
    return fig


def save_term_plot(study_paths: StudyPaths, shares: TermShares, *, study_name: str) -> Path:
    """Write plots/reward_term_shares.png and return its path."""
    return _save(plot_term_shares(shares, study_name=study_name),
                 study_paths.plots_dir / TERM_SHARES)


def make_plots(study_paths: StudyPaths, *, study: optuna.Study | None = None,
               importance: dict[str, Any] | None = None,
               terms: TermShares | None = None) -> list[Path]:
    """Write the four plots into plots/ and return their paths; with `terms` (terms.term_shares),
    the reward-term shares plot as well."""
    view = open_view(study_paths, study)
    out = study_paths.plots_dir
    figures = [
        (plot_multi_trial(view), MULTI_TRIAL),
        (plot_experiment_variables(view), EXPERIMENT_VARIABLES),
        (plot_importance(_importance_for(view, importance)), IMPORTANCE),
        (plot_optimization_history(view), OPTIMIZATION_HISTORY),
    ]
    written = [_save(fig, out / name) for fig, name in figures]
    if terms is not None:
        written.append(save_term_plot(study_paths, terms, study_name=view.study.study_name))
    return written
