"""All of a study's reports in one call, for the orchestrator at the end of a study."""

from __future__ import annotations

from pathlib import Path

import optuna

from automl.analysis.folder import open_view
from automl.analysis.importance import PED_ANOVA, importance_report, save_importance
from automl.analysis.plots import make_plots
from automl.analysis.table import write_tables
from automl.analysis.terms import REPORT_KEY, shares_entry, term_shares
from automl.paths import StudyPaths


def write_reports(study_paths: StudyPaths, *, study: optuna.Study | None = None,
                  evaluator: str = PED_ANOVA) -> list[Path]:
    """experiment_df.csv, hyperparameter_importance.yaml (and its analysis/ copy, with the reward
    terms' shares), the plots (reward_term_shares.png among them); a population-based training
    study's own reports too (analysis/pbt.py), whose importance entry replaces the ranking."""
    from automl.analysis.pbt import write_pbt_reports

    view = open_view(study_paths, study)
    written = [write_tables(view)]
    report = importance_report(view, evaluator=evaluator)
    shares = term_shares(view)
    report[REPORT_KEY] = shares_entry(shares)
    pbt = write_pbt_reports(study_paths, view.study)
    if pbt is not None:  # a population: no ranking of search trials, whose keys would mislead
        report = {"study_name": report["study_name"], **pbt, "chosen": report.get("chosen"),
                  "generated_at": report.get("generated_at")}
    written.append(save_importance(study_paths, report))
    written += make_plots(study_paths, study=view.study, importance=report, terms=shares)
    return written
