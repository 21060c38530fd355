"""--resume keeps the study's settings: the Hydra overrides, the search space and the pruning plan
it started with.

A resumed study trains with the overrides stored in meta.yaml at its start. A command line that
gives another value for a key that changes what a trial trains (frames, environments, env, scoring,
reward, PPO, network), or another search space, is refused: it would mix incomparable trials in
one study. Keys that only say how a run happens may differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from automl.errors import ConfigError
from automl.paths import StudyPaths
from automl.search.space import override_key

FREE_KEYS = frozenset({"train.threads", "train.quiet", "train.progress_seconds", "env.device",
                       "train.save_state"})
"""Overrides that do not change what a trial trains: a resumed study may take new values."""


def first_session(study_paths: StudyPaths) -> dict[str, Any]:
    """What meta.yaml recorded of the study's first session ({} when nothing was)."""
    try:
        meta = yaml.safe_load(study_paths.meta.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    sessions = meta.get("sessions") or [] if isinstance(meta, dict) else []
    return sessions[0] if sessions and isinstance(sessions[0], dict) else {}


def stored_overrides(study_paths: StudyPaths) -> list[str] | None:
    """The overrides the study started with (meta.yaml's first session), None when not recorded."""
    overrides = first_session(study_paths).get("overrides")
    return [str(o) for o in overrides] if isinstance(overrides, list) else None


def stored_plan_inputs(study_paths: StudyPaths) -> tuple[int | None, int | None]:
    """The trial count the study's pruning plan was sized to and its grace frames (None where not
    recorded): a resumed study keeps its rungs whatever --hp-trials or --grace-frames now say, or
    trials of both sessions would be compared at different frame counts."""
    first = first_session(study_paths)
    plan = first.get("pruning")
    trials = plan.get("trials") if isinstance(plan, dict) else None
    grace = first.get("grace_frames")
    return (trials if isinstance(trials, int) else None, grace if isinstance(grace, int) else None)


def resumed_overrides(study_paths: StudyPaths, given: Sequence[str],
                      stored: Sequence[str] | None = None) -> list[str]:
    """The overrides a resumed study trains with: the stored ones (`stored`: from the study
    itself, on a shared storage; else meta.yaml's), plus the given ones that change nothing a trial
    trains; a conflicting one exits 2 naming both values."""
    stored = list(stored) if stored is not None else stored_overrides(study_paths)
    if stored is None:
        return list(given)  # a study from before overrides were recorded: nothing to check against
    before = {override_key(o): o for o in stored}
    for override in given:
        key = override_key(override)
        if key in FREE_KEYS or before.get(key) == override:
            continue
        was = before[key].partition("=")[2] if key in before else "(not set: the config's default)"
        raise ConfigError(
            file=str(study_paths.meta), key=key, value=override.partition("=")[2],
            rule=f"study {study_paths.name} started with {key}={was}; another value would mix "
                 "incomparable trials in one study",
            fix=f"resume without `{override}` (the study's own value is used), or start a new study")
    free = {override_key(o): o for o in given if override_key(o) in FREE_KEYS}
    kept = [free.pop(override_key(o), o) for o in stored]
    return kept + list(free.values())


def check_resumed_space(study_paths: StudyPaths, space_file: Path, text: str) -> None:
    """A --space given on resume (its checked `text`) must be the study's own search space."""
    stored = study_paths.search_space
    if not stored.exists() or space_file.resolve() == stored.resolve():
        return
    if yaml.safe_load(text) != yaml.safe_load(stored.read_text()):
        raise ConfigError(
            file=str(space_file), key="--space", value=str(space_file),
            rule=f"study {study_paths.name} searches the space in {stored}; another space would mix "
                 "incomparable trials in one study",
            fix="resume without --space (the study's own is used), or start a new study")
