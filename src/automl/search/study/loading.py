"""The Optuna study: its names of samplers and pruners, and loading an existing one."""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage

from automl import paths
from automl.paths import StudyPaths
from automl.search.study import records
from automl.search.study.storage import open_storage

SEARCH_METHODS = ("bayesian", "random", "grid", "cmaes", "pbt")
PRUNERS = ("hyperband", "median", "successive_halving", "none")


def study_exists(storage: BaseStorage, name: str) -> bool:
    """Whether the storage holds a study of that name."""
    try:
        optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return False
    return True


def load_study(study_paths: StudyPaths, url: str | None = None) -> optuna.Study:
    """An existing study (analysis and reports), read-only use."""
    return optuna.load_study(study_name=study_paths.name, storage=open_storage(study_paths, url))


def fetch_space_file(study: optuna.Study, study_paths: StudyPaths) -> None:
    """A study another machine started: its search space, stored in the study, becomes this
    machine's search_space.yaml in the study folder (unless the folder has one)."""
    text = study.user_attrs.get(records.SEARCH_SPACE_TEXT)
    if isinstance(text, str) and not study_paths.search_space.exists():
        paths.atomic_write_text(study_paths.search_space, text)
