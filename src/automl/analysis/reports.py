"""All of a study's reports in one call, for the orchestrator at the end of a study."""

from __future__ import annotations

from pathlib import Path

import optuna

from automl.analysis.folder import open_view
from automl.analysis.importance import PED_ANOVA, importance_report, save_importance
from automl.analysis.plots import make_plots
from automl.analysis.table import write_experiment_df
from automl.paths import StudyPaths


def write_reports(study_paths: StudyPaths, *, study: optuna.Study | None = None,
                  evaluator: str = PED_ANOVA) -> list[Path]:
    """experiment_df.csv, hyperparameter_importance.yaml (and its analysis/ copy), the plots."""
    view = open_view(study_paths, study)
    written = [write_experiment_df(study_paths, view.study)]
    report = importance_report(view, evaluator=evaluator)
    written.append(save_importance(study_paths, report))
    written += make_plots(study_paths, study=view.study, importance=report)
    return written
