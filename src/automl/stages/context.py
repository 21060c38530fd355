"""What every stage after the search works on: the study, its folder, the stage log, and how its
configurations are trained again (the trial command, the resources, the warm fork server).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import yaml

from automl.config import load_run_config
from automl.paths import StudyPaths, trial_name
from automl.requests import Resources
from automl.search.plan import slots_for, worker_command
from automl.search.study import records, reports
from automl.search.study.budget import seconds_for
from automl.search.trials.forkserver import ForkServer
from automl.search.trials.launcher import Slot


@dataclass
class StageLog:
    """What each stage did, including budgets too small for it: shown in the summary and the state."""

    notes: list[str] = field(default_factory=list)
    phase: str = ""

    def note(self, paths: StudyPaths, text: str) -> None:
        """Print a stage note, keep it for the summary and write it to the state file."""
        print(f"automl: {text}")
        self.notes.append(text)
        self.write(paths)

    def write(self, paths: StudyPaths, **extra: Any) -> None:
        """Write the phase, the notes and `extra` into automl_state.yaml (other keys kept)."""
        state: dict[str, Any] = {}
        if paths.state.exists():
            state = yaml.safe_load(paths.state.read_text()) or {}
        state.update({"phase": self.phase, "stage_notes": self.notes, **extra,
                      "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        reports.write_state(paths, state)


@dataclass
class Stages:
    """A study's stages after the search: where it lives, what they noted, how they train."""

    paths: StudyPaths
    study: optuna.Study
    log: StageLog
    resources: Resources
    """Slots, threads and the trial command of every run a stage starts."""
    forkserver: ForkServer | None = None
    """The warm fork server the search used (None: plain subprocesses)."""

    def note(self, text: str) -> None:
        """A stage note (printed, kept for the summary, written to automl_state.yaml)."""
        self.log.note(self.paths, text)

    def worker(self) -> list[str]:
        """The trial command."""
        return worker_command(self.resources)

    def config_record(self, config_id: str) -> dict[str, Any]:
        """configs/<config_id>.json: a search trial's config file, or the baseline's (raises
        OSError or ValueError when it is missing or unreadable)."""
        return json.loads(self.paths.config_file(config_id).read_text())

    def trial_file(self, number: int) -> dict[str, Any]:
        """The config file a search trial was launched with (overrides, user overrides, values)."""
        return self.config_record(trial_name(number))

    def user_overrides(self, config_id: str) -> list[str]:
        """The command-line overrides a configuration ran with: its config file's, else (a trial
        that ran on another machine of a shared study) those the study started with."""
        try:
            return list(self.config_record(config_id).get("user_overrides", []))
        except (OSError, ValueError):
            return list(self.study.user_attrs.get(records.STUDY_OVERRIDES) or [])

    def slots_of(self, overrides: list[str]) -> list[Slot]:
        """Slots for runs of a configuration with these overrides (its own env.device)."""
        return slots_for(self.resources, load_run_config(overrides).env.device)

    def trial_slots(self, number: int) -> list[Slot]:
        """Slots for re-running a search trial's configuration."""
        return self.slots_of(self.trial_file(number)["base_overrides"])

    def rerun_seconds(self, trial: optuna.trial.FrozenTrial, *, multiplier: float = 1.0) -> float | None:
        """Expected time of one more run of this trial's configuration (train.frames x
        `multiplier`) at the rate its own search run trained; None where unknown."""
        try:
            frames = load_run_config(self.trial_file(trial.number)["base_overrides"]).train.frames
        except (OSError, ValueError):  # its config file is on another machine of a shared study
            return None
        trained, wall = trial.user_attrs.get(records.FRAMES), trial.user_attrs.get(records.WALL_S)
        if not isinstance(trained, int) or not isinstance(wall, (int, float)):
            return None
        return seconds_for(int(frames * multiplier), trained_frames=trained, wall_s=float(wall))
