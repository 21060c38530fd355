"""The Optuna study: storage (journal file by default, or any URL), sampler and pruner."""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend

from automl.paths import StudyPaths

SEARCH_METHODS = ("bayesian", "random", "grid", "cmaes")
PRUNERS = ("hyperband", "median", "successive_halving", "none")


def open_storage(study_paths: StudyPaths, url: str | None) -> BaseStorage | str:
    """`--storage URL` when given (sqlite:///..., postgresql://...), else study.journal in the folder."""
    if url:
        return url
    study_paths.root.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(study_paths.journal)))


def study_exists(storage: BaseStorage | str, name: str) -> bool:
    try:
        optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return False
    return True


def load_study(study_paths: StudyPaths, url: str | None = None) -> optuna.Study:
    """An existing study (analysis and reports), read-only use."""
    return optuna.load_study(study_name=study_paths.name, storage=open_storage(study_paths, url))
