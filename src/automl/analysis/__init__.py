"""Reports of a study: experiment_df.csv, importance YAML, plots, validation statistics, export."""

from automl.analysis.export import (
    export_best_config,
    export_validated_best,
    preset_name,
    trial_config_values,
)
from automl.analysis.folder import StudyView, open_study, open_view, resolve_study
from automl.analysis.importance import importance_report, save_importance, write_importance
from automl.analysis.table import TrialRow, sort_rows, trial_rows, write_experiment_df
from automl.analysis.validation import (
    ValidationResult,
    ValidationRow,
    choose_best,
    read_validation_csv,
    summarize_validation,
    write_validation_csv,
)
from automl.analysis.verdict import best_by_search, differs_from_search_best, selection_note

__all__ = [
    "StudyView",
    "TrialRow",
    "ValidationResult",
    "ValidationRow",
    "best_by_search",
    "choose_best",
    "differs_from_search_best",
    "export_best_config",
    "export_validated_best",
    "importance_report",
    "open_study",
    "open_view",
    "preset_name",
    "read_validation_csv",
    "resolve_study",
    "save_importance",
    "selection_note",
    "sort_rows",
    "summarize_validation",
    "trial_config_values",
    "trial_rows",
    "write_experiment_df",
    "write_importance",
    "write_validation_csv",
]
