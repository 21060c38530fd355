"""A study folder opened for analysis: which folder, its Optuna study, its space and search trials.

Everything here only reads. A study that is still running is fine: its RUNNING trials are
returned like any other, and the reports show them as running.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from automl import paths
from automl.errors import ConfigError
from automl.paths import StudyPaths
from automl.search.space import MODEL_KEYS, REWARD_PREFIX, RUN_KEYS, Param, SearchSpace, load_space
from automl.search.study import records
from automl.search.study.storage import open_storage

log = logging.getLogger(__name__)

LATEST = "latest"
"""`--study latest`: the study folder under automl/ modified most recently."""
SEARCH_PHASE = "search"
STORAGE_KEY = "storage"
"""meta.yaml key holding the storage URL of a study not kept in its study.journal."""
STUDY_NAME_KEY = "study_name"
"""meta.yaml key holding the Optuna study name, when it differs from the folder's name."""


# ---------------------------------------------------------------------------------------------
# Which folder


def study_folders() -> list[Path]:
    """Study folders under automl/ (a folder with a journal, a meta.yaml or a search space)."""
    root = paths.automl_root()
    if not root.is_dir():
        return []
    marks = ("study.journal", "meta.yaml", "search_space.yaml")
    return sorted(p for p in root.iterdir() if p.is_dir() and any((p / m).exists() for m in marks))


def _last_change(folder: Path) -> float:
    """Newest mtime of the folder and the files a running study keeps rewriting."""
    study = StudyPaths(folder)
    candidates = (folder, study.journal, study.state, study.meta, study.trial_final_csv)
    return max(p.stat().st_mtime for p in candidates if p.exists())


def resolve_study(spec: str | None) -> StudyPaths:
    """`--study NAME|PATH|latest` (None means latest) -> the study folder, which must exist."""
    if spec is None or spec == LATEST:
        folders = study_folders()
        if not folders:
            raise ConfigError(file=str(paths.automl_root()), key="--study", value=spec or LATEST,
                              rule="there is no study folder there yet",
                              fix="run automl.py first, or point $AUTOML_LOG_ROOT at the log "
                              "folder that holds automl/<study_name>/")
        return StudyPaths(max(folders, key=_last_change))
    # A bare name is a study under automl/ first; a path (or an existing folder) otherwise.
    as_path = Path(spec).expanduser()
    by_name = None if os.sep in spec or spec.startswith(".") else StudyPaths.for_study(spec)
    if by_name is not None and (by_name.root.is_dir() or not as_path.is_dir()):
        study = by_name
    else:
        study = StudyPaths(as_path.resolve())
    if not study.root.is_dir():
        names = ", ".join(p.name for p in study_folders()) or "none yet"
        raise ConfigError(file=str(study.root), key="--study", value=spec,
                          rule="no study folder exists there",
                          fix=f"pass a study name from {paths.automl_root()} ({names}), a study "
                          "folder's path, or `latest`")
    return study


# ---------------------------------------------------------------------------------------------
# The Optuna study


def read_meta(study_paths: StudyPaths) -> dict[str, Any]:
    """meta.yaml as a dict; {} when it is missing or unreadable."""
    try:
        data = yaml.safe_load(study_paths.meta.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def open_study(study_paths: StudyPaths) -> optuna.Study:
    """The folder's Optuna study: meta.yaml's `storage` URL if it names one, else study.journal."""
    meta = read_meta(study_paths)
    url = meta.get(STORAGE_KEY) or None
    name = str(meta.get(STUDY_NAME_KEY) or study_paths.name)
    if not study_paths.root.is_dir():
        raise ConfigError(file=str(study_paths.root), key="--study", value=study_paths.name,
                          rule="no study folder exists there", fix="check the study name or path")
    if url is None and not study_paths.journal.exists():
        raise ConfigError(file=str(study_paths.journal), key="study.journal", value=None,
                          rule="the study folder has no journal and meta.yaml names no `storage`",
                          fix="pick a folder made by automl.py (see --study), or add "
                          "`storage: <url>` to its meta.yaml")
    storage = open_storage(study_paths, str(url) if url else None)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        found = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise ConfigError(file=str(url or study_paths.journal), key="study_name", value=name,
                          rule=f"the storage holds no study of that name (it holds: {found})",
                          fix="set `study_name:` in meta.yaml, or pick the right folder") from None


# ---------------------------------------------------------------------------------------------
# The search space, to turn Optuna's stored values back into native ones


def _reward_terms(study_paths: StudyPaths, trials: list[FrozenTrial]) -> set[str]:
    """Reward terms the space may name: from the trials' config values and the file itself."""
    terms: set[str] = set()
    for trial in trials:
        values = trial.user_attrs.get(records.CONFIG_VALUES)
        if isinstance(values, Mapping):
            terms |= {k.removeprefix(REWARD_PREFIX) for k in values if k.startswith(REWARD_PREFIX)}
            break
    try:
        data = yaml.safe_load(study_paths.search_space.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return terms
    reward = data.get("reward_weights") or {}
    fixed = data.get("fixed") or {}
    terms |= {str(n).removeprefix(REWARD_PREFIX) for n in reward if isinstance(n, str)}
    bare = set(MODEL_KEYS) | set(RUN_KEYS)
    terms |= {n for n in fixed if isinstance(n, str) and "." not in n and n not in bare}
    return terms


def load_study_space(study_paths: StudyPaths, trials: list[FrozenTrial]) -> SearchSpace | None:
    """The study's search_space.yaml, or None (with a warning) when it is missing or unreadable."""
    if not study_paths.search_space.exists():
        log.warning("%s is missing: parameters are shown as Optuna stores them",
                    study_paths.search_space)
        return None
    try:
        return load_space(study_paths.search_space,
                          reward_terms=_reward_terms(study_paths, trials))
    except ConfigError as err:
        log.warning("cannot read the study's search space (%s): parameters are shown as Optuna "
                    "stores them", err.message)
        return None


# ---------------------------------------------------------------------------------------------
# The view the reports read


def is_search_trial(trial: FrozenTrial) -> bool:
    """A trial of the search itself (no `phase` attribute counts as search)."""
    return trial.user_attrs.get(records.PHASE, SEARCH_PHASE) == SEARCH_PHASE


def is_scored(trial: FrozenTrial) -> bool:
    """COMPLETE with a finite score: the trials that importance, plots and top-5 rest on."""
    return (trial.state == TrialState.COMPLETE and trial.value is not None
            and math.isfinite(trial.value))


@dataclass
class StudyView:
    """What the reports read: the folder, the Optuna study, its search trials and its space."""

    paths: StudyPaths
    study: optuna.Study
    trials: list[FrozenTrial]
    """Search trials, by number (validation runs are not Optuna trials)."""
    space: SearchSpace | None
    """The study's space; None when search_space.yaml cannot be read."""

    @property
    def maximize(self) -> bool:
        """True when a higher score is better (the study's Optuna direction)."""
        return self.study.direction == optuna.study.StudyDirection.MAXIMIZE

    @property
    def param_names(self) -> list[str]:
        """Searched parameters: the space's order, else every name the trials carry."""
        if self.space is not None:
            return self.space.names
        names: dict[str, None] = {}
        for trial in self.trials:
            names.update(dict.fromkeys(trial.params))
        return list(names)

    def spec(self, name: str) -> Param | None:
        """The parameter's spec, or None without a space."""
        if self.space is None:
            return None
        try:
            return self.space.param(name)
        except KeyError:
            return None

    def params(self, trial: FrozenTrial) -> dict[str, Any]:
        """Signed native values of the trial's parameters (lists restored); absent ones as None."""
        values: dict[str, Any] = {}
        for name in self.param_names:
            raw = trial.params.get(name)
            spec = self.spec(name)
            try:
                values[name] = raw if raw is None or spec is None else spec.to_native(raw)
            except ValueError:
                values[name] = raw  # a value the current space no longer lists
        return values

    def scored(self) -> list[FrozenTrial]:
        """Completed trials with a finite score, best first."""
        done = [t for t in self.trials if is_scored(t)]
        return sorted(done, key=lambda t: float(t.value or 0.0), reverse=self.maximize)

    def run_dir(self, trial: FrozenTrial) -> Path:
        """The trial's run folder (the `run_dir` attribute, else trials/trial_NNNN)."""
        rel = trial.user_attrs.get(records.RUN_DIR)
        return self.paths.root / str(rel) if rel else self.paths.trial_dir(trial.number)


def open_view(study_paths: StudyPaths, study: optuna.Study | None = None) -> StudyView:
    """Open the study (unless given) and read its search trials and space."""
    study = study if study is not None else open_study(study_paths)
    trials = [t for t in study.get_trials(deepcopy=False) if is_search_trial(t)]
    return StudyView(paths=study_paths, study=study, trials=trials,
                     space=load_study_space(study_paths, trials))
