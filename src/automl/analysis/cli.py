"""`analyze.py`: the study's table, a side-by-side comparison of two trials, plots, importance,
the reward terms' shares; for a population-based training study, its members and reports.

Bad input (no such study, an empty study, an unknown metric, a trial that does not exist) prints
one message to stderr and exits 2; a study that is still running is read as it stands. A report
that the study's completed trials cannot support yet (no ranking, no reward terms logged) says why
in one line and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections.abc import Sequence
from typing import Any

import optuna
from rich.console import Console
from rich.table import Table

from automl.analysis.folder import LATEST, StudyView, open_view, resolve_study
from automl.analysis.importance import EVALUATORS, PED_ANOVA, importance_report, save_importance
from automl.analysis.table import (
    METRICS,
    SORT_METRICS,
    TrialRow,
    sort_rows,
    trial_rows,
    write_tables,
)
from automl.analysis.terms import REPORT_KEY, TermShares, shares_entry, term_shares
from automl.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError
from automl.paths import StudyPaths
from automl.search.study.loading import fetch_space_file
from automl.search.study.storage import open_storage

PROG = "analyze.py"
SORTS = ("descending", "ascending")
_TRIAL_ID = re.compile(r"(?:trial_?)?(\d+)")


def build_parser() -> argparse.ArgumentParser:
    """analyze.py's flags: which study (folder or shared storage), sorting, and which reports to make."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Reports of an automl study: table, comparison, plots, importance, "
        "reward terms.")
    parser.add_argument("--study", default=LATEST, metavar="NAME|PATH|latest",
                        help="study name under starter_kit_log/automl/, a study folder, or "
                        "`latest` (the most recently modified one; default)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="read the study from this Optuna storage (e.g. the PostgreSQL URL "
                        "several machines share) instead of the study folder's own; needs "
                        "--study-name")
    parser.add_argument("--study-name", default=None, metavar="NAME",
                        help="with --storage: the study's name (its folder here is "
                        "starter_kit_log/automl/NAME, made if missing)")
    parser.add_argument("--metric", default="score", help=f"sort by: {', '.join(SORT_METRICS)}")
    parser.add_argument("--sort", default="descending", help="descending (default) or ascending")
    parser.add_argument("--top", type=int, default=None, metavar="N", help="show the first N rows")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two trials side by side (numbers or trial_NNNN)")
    parser.add_argument("--plots", action="store_true", help="regenerate plots/*.png")
    parser.add_argument("--importance", action="store_true",
                        help="recompute hyperparameter_importance.yaml")
    parser.add_argument("--evaluator", default=PED_ANOVA,
                        help=f"importance evaluator: {', '.join(EVALUATORS)} (default {PED_ANOVA})")
    parser.add_argument("--terms", action="store_true",
                        help="each reward term's share of the shaped return in the best and the "
                        "worst quarter of trials (also writes plots/reward_term_shares.png)")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.storage and not args.study_name:
        raise ConfigError(file="command line", key="--study-name", value=None,
                          rule="--storage needs the name of the study to read",
                          fix="add --study-name NAME")
    if args.metric not in SORT_METRICS:
        raise ConfigError(file="command line", key="--metric", value=args.metric,
                          rule=f"it must be one of {', '.join(SORT_METRICS)}",
                          fix="e.g. --metric success_rate")
    if args.sort not in SORTS:
        raise ConfigError(file="command line", key="--sort", value=args.sort,
                          rule=f"it must be one of {', '.join(SORTS)}", fix="e.g. --sort ascending")
    if args.top is not None and args.top < 1:
        raise ConfigError(file="command line", key="--top", value=args.top,
                          rule="it must be a positive number of rows", fix="e.g. --top 10")
    if args.evaluator not in EVALUATORS:
        raise ConfigError(file="command line", key="--evaluator", value=args.evaluator,
                          rule=f"it must be one of {', '.join(EVALUATORS)}",
                          fix=f"e.g. --evaluator {PED_ANOVA}")


def _require_trials(view: StudyView, *, completed: bool, what: str) -> None:
    name = view.study.study_name
    if not view.trials:
        raise ConfigError(file=str(view.paths.root), key="trials", value=0,
                          rule=f"study {name} has no search trials yet, so there is no {what}",
                          fix="wait until automl.py has started trials, or pick another study "
                          "with --study")
    if completed and not view.scored():
        raise ConfigError(file=str(view.paths.root), key="completed trials", value=0,
                          rule=f"{what} needs completed trials, and study {name} has none yet "
                          f"({len(view.trials)} search trials, none complete with a score)",
                          fix="wait until a trial completes (analyze.py shows the running ones)")


# ---------------------------------------------------------------------------------------------
# Formatting


def fmt(value: Any) -> str:
    """A cell: 4 significant digits, `-` for missing, lists as written."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _row_cells(row: TrialRow, names: list[str]) -> list[str]:
    wall = f"{row.wall_s:.0f}" if row.wall_s is not None else "-"
    return [str(row.number), row.stop_reason, fmt(row.score), fmt(row.frames), wall,
            *(fmt(row.params.get(n)) for n in names),
            *(fmt(row.metrics.get(m)) for m in METRICS), fmt(row.validated_score)]


def _table(view: StudyView, rows: list[TrialRow], *, metric: str, descending: bool) -> Table:
    arrow = " ▼" if descending else " ▲"
    names = view.param_names
    headers = ["trial", "stop", "score", "frames", "wall s", *names, *METRICS, "validated"]
    table = Table(title=f"study {view.study.study_name}: {len(view.trials)} search trials",
                  header_style="bold")
    for header in headers:
        label = header + arrow if header == metric else header
        table.add_column(label, justify="left" if header == "stop" else "right",
                         overflow="fold")
    for row in rows:
        style = "dim" if row.state in ("failed", "waiting") else (
            "italic cyan" if row.state == "running" else None)
        table.add_row(*_row_cells(row, names), style=style)
    return table


def _console() -> Console:
    # Piped or captured output gets a wide page: a table of 20 parameters folds badly at 80.
    return Console(width=None if sys.stdout.isatty() else 220)


# ---------------------------------------------------------------------------------------------
# Actions


def show_table(view: StudyView, *, metric: str, descending: bool, top: int | None) -> None:
    """Print the table and refresh experiment_df.csv and configurations.csv (the study's
    configurations in order, the chosen one first)."""
    _require_trials(view, completed=False, what="table")
    rows = trial_rows(view)
    write_tables(view, rows)
    shown = sort_rows(rows, metric=metric, descending=descending)[:top]
    console = _console()
    console.print(_table(view, shown, metric=metric, descending=descending))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    console.print(f"{summary}. Sorted by {metric}, {'descending' if descending else 'ascending'}"
                  f"{f', first {top}' if top else ''}. Wrote {view.paths.experiment_df_csv}")
    console.print(f"chosen: {chosen_line(view)}")


def chosen_line(view: StudyView) -> str:
    """The study's choice as every report names it (configurations.csv's first row)."""
    from automl.analysis.configs import rank_configurations

    ranked = rank_configurations(view)
    if not ranked:
        return "none yet (no completed trial)"
    pick = ranked[0]
    if pick.validated is not None and pick.validated.n:
        return (f"{pick.config_id}, validated mean {pick.validated_mean:.4g} over "
                f"{pick.validated.n} fresh seeds")
    seeds = len(pick.search_scores)
    return (f"{pick.config_id}, search mean {pick.search_mean:.4g} over {seeds} seed(s)"
            f"{'' if pick.confirmed else ' (not confirmed)'}; not validated")


def _trial_number(view: StudyView, raw: str) -> int:
    match = _TRIAL_ID.fullmatch(raw.strip())
    numbers = [t.number for t in view.trials]
    if match is None or int(match.group(1)) not in numbers:
        have = f"trials {min(numbers)}..{max(numbers)}" if numbers else "no trials"
        raise ConfigError(file=str(view.paths.root), key="--compare", value=raw,
                          rule=f"study {view.study.study_name} has no search trial {raw} "
                          f"(it has {have})",
                          fix="pass two trial numbers from the table, e.g. --compare 3 7")
    return int(match.group(1))


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if not (math.isfinite(a) and math.isfinite(b)):
            return math.isfinite(a) != math.isfinite(b)
        return not math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a != b


def compare_rows(a: TrialRow, b: TrialRow, names: list[str]) -> list[tuple[str, Any, Any, bool]]:
    """(field, value in a, value in b, differs) for the outcome, each parameter and metric."""
    fields: list[tuple[str, Any, Any]] = [
        ("state", a.state, b.state), ("stop reason", a.stop_reason, b.stop_reason),
        ("score", a.score, b.score), ("frames", a.frames, b.frames),
        ("wall s", a.wall_s, b.wall_s),
        *((n, a.params.get(n), b.params.get(n)) for n in names),
        *((m, a.metrics.get(m), b.metrics.get(m)) for m in METRICS),
        ("validated score", a.validated_score, b.validated_score)]
    return [(name, x, y, _differs(x, y)) for name, x, y in fields]


def show_compare(view: StudyView, first: str, second: str) -> None:
    """Print two trials side by side (state, score, parameters, metrics), marking the rows that differ."""
    numbers = [_trial_number(view, first), _trial_number(view, second)]
    rows = {r.number: r for r in trial_rows(view) if r.number in numbers}
    a, b = rows[numbers[0]], rows[numbers[1]]
    table = Table(title=f"study {view.study.study_name}: {a.config_id} vs {b.config_id} "
                  "(* marks a difference)", header_style="bold")
    for header in ("", a.config_id, b.config_id, "differs"):
        table.add_column(header, justify="left" if header == "" else "right")
    for name, x, y, differs in compare_rows(a, b, view.param_names):
        table.add_row(name, fmt(x), fmt(y), "*" if differs else "",
                      style="bold yellow" if differs else None)
    _console().print(table)


def _open(args: argparse.Namespace) -> StudyView:
    """--storage URL --study-name NAME (any machine), else the study folder of --study."""
    if not args.storage:
        return open_view(resolve_study(args.study))
    study_paths = StudyPaths.for_study(args.study_name)
    storage = open_storage(study_paths, args.storage)
    try:
        study = optuna.load_study(study_name=args.study_name, storage=storage)
    except KeyError:
        found = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise ConfigError(file="command line", key="--study-name", value=args.study_name,
                          rule=f"the storage holds no study of that name (it holds: {found})",
                          fix="pick one of those names") from None
    fetch_space_file(study, study_paths)
    return open_view(study_paths, study)


def _terms_table(view: StudyView, shares: TermShares) -> Table:
    group = shares.group
    table = Table(title=f"study {view.study.study_name}: reward-term shares of the shaped return, "
                  f"best {group} ({len(shares.top)} trials) vs worst {group} "
                  f"({len(shares.bottom)} trials)", header_style="bold")
    for header in ("term", "weight (best)", "weight (worst)", "share (best)", "share (worst)",
                   "difference"):
        table.add_column(header, justify="left" if header == "term" else "right")
    for row in shares.rows:
        weights = ["-" if w is None else fmt(w[0]) if w[0] == w[1] else f"{fmt(w[0])}..{fmt(w[1])}"
                   for w in (row.weights_top, row.weights_bottom)]
        # + 0.0 turns a rounded -0.0 into 0.0: no "-0.000" for a term both groups share alike.
        diff = f"{round(row.difference, 3) + 0.0:+.3f}" if math.isfinite(row.difference) else "-"
        table.add_row(row.term, *weights, fmt(row.share_top), fmt(row.share_bottom), diff)
    return table


def show_terms(view: StudyView, shares: TermShares, *, plot: bool = True) -> None:
    """Print the reward terms' shares (or why there are none) and write their plot."""
    console = _console()
    if shares.note is not None:
        console.print(shares.note, soft_wrap=True, markup=False, highlight=False)
    else:
        console.print(_terms_table(view, shares))
        console.print(shares.basis, soft_wrap=True, markup=False, highlight=False)
    if plot:
        from automl.analysis.plots import save_term_plot  # matplotlib only when plots are asked for

        path = save_term_plot(view.paths, shares, study_name=view.study.study_name)
        console.print(f"Wrote {path}")


def _write_importance(view: StudyView, *, evaluator: str, shares: TermShares) -> None:
    """hyperparameter_importance.yaml as write_reports makes it: ranking, top 5, reward terms."""
    report = importance_report(view, evaluator=evaluator)
    report[REPORT_KEY] = shares_entry(shares)
    path = save_importance(view.paths, report)
    _console().print(f"Wrote {path} (and its copy in the analysis folder)")


def show_population(view: StudyView, *, importance: bool) -> None:
    """A population-based training study: its reports written (pbt/, plots/pbt_members.png, and
    with `importance` hyperparameter_importance.yaml too) and each member's latest segment shown."""
    from automl.analysis.pbt import PbtView, pbt_dir, write_pbt_reports

    pbt = PbtView.read(view.paths, view.study)
    if pbt is None:
        raise ConfigError(file=str(view.paths.search_space), key="search_space.yaml", value=None,
                          rule="the population's search space cannot be read",
                          fix="restore search_space.yaml in the study folder")
    if importance:
        from automl.analysis.reports import write_reports

        write_reports(view.paths, study=view.study)
    else:
        write_pbt_reports(view.paths, view.study)
    table = Table(title=f"study {view.study.study_name}: population-based training, "
                        f"{pbt.plan.population} members x {pbt.plan.generations} segments")
    for column in ("member", "generation", "frames", "score", "copied another", "running/queued"):
        table.add_column(column, justify="right")
    latest = pbt.population.latest()
    for member in range(pbt.plan.population):
        mine = [s for s in pbt.population.segments if s.member == member]
        last = latest.get(member)
        table.add_row(str(member), "-" if last is None else str(last.generation),
                      "-" if last is None else f"{last.reached:,}",
                      "-" if last is None else fmt(last.score),
                      str(len({s.generation for s in mine if s.donor is not None})),
                      str(sum(1 for s in mine if s.live)))
    console = _console()
    console.print(table)
    winner = pbt.winner()
    if winner is not None:
        console.print(f"winner: member {winner.member} (trial {winner.number}), score "
                      f"{fmt(winner.score)} at {winner.reached:,} frames")
    console.print(f"Wrote {pbt_dir(view.paths)} (segments.csv, lineage.yaml, schedule.yaml, "
                  f"model.pt) and {view.paths.plots_dir / 'pbt_members.png'}")
    from automl.analysis.validation import read_validation_csv

    if any(r.n for r in read_validation_csv(view.paths)):
        console.print(f"chosen: {chosen_line(view)}")  # the replayed schedule, or the start
    elif winner is not None:
        console.print("chosen: pbt_winner, the winner's schedule; not validated")


def _run(args: argparse.Namespace) -> None:
    _check_args(args)
    view = _open(args)
    from automl.analysis.pbt import is_pbt

    if is_pbt(view.study):
        if args.compare or args.terms:
            raise ConfigError(file=str(view.paths.root), key="--compare" if args.compare else "--terms",
                              value=args.compare or True,
                              rule="a population-based training study's segments are not "
                                   "configurations to compare: a member's values change as it trains",
                              fix="read pbt/lineage.yaml and pbt/schedule.yaml, or drop the flag")
        show_population(view, importance=args.importance)
        return
    if args.compare:
        _require_trials(view, completed=False, what="comparison")
        show_compare(view, *args.compare)
        return
    shares: TermShares | None = None
    if args.importance:
        _require_trials(view, completed=True, what="an importance ranking")
        shares = term_shares(view)
        _write_importance(view, evaluator=args.evaluator, shares=shares)
    if args.plots:
        _require_trials(view, completed=False, what="plot")
        from automl.analysis.plots import make_plots  # matplotlib only when plots are asked for

        shares = term_shares(view) if shares is None else shares
        for path in make_plots(view.paths, study=view.study, terms=shares):
            _console().print(f"Wrote {path}")
    if args.terms:
        _require_trials(view, completed=True, what="a reward-term comparison")
        show_terms(view, term_shares(view) if shares is None else shares, plot=not args.plots)
    if not (args.importance or args.plots or args.terms):
        show_table(view, metric=args.metric, descending=args.sort == "descending", top=args.top)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of analyze.py; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        _run(args)
    except ConfigError as err:
        print(f"{PROG}: {err.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
