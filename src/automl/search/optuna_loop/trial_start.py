"""Starting one trial: ask the study (given up when the study filled meanwhile), suggest its values,
check the space's constraints and train_one's own checks of its config, write its config file and
launch it in a slot with its stoppers."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import optuna

from automl import reasons
from automl.paths import StudyPaths, atomic_write_text
from automl.search.optuna_loop.search_policy import count_trained
from automl.search.space import Feasibility, override_key
from automl.search.study import records
from automl.search.study.trial_record import TrialRecorder
from automl.search.trials.launcher import Slot, launch, run_overrides
from automl.search.trials.tb_reader import EventTail
from automl.search.trials.watch import Running, make_stoppers

if TYPE_CHECKING:
    from automl.search.optuna_loop.settings import SearchSettings

REJECTED = "rejected"
"""start: the values violate the space's constraints, or train_one would refuse their config
(recorded with stop reason `constraint`, never trained)."""
FULL = "full"
"""start: the study reached --hp-trials while this process asked (the trial was given up)."""


class TrialStarter:
    """Turns a free slot into a running trial of the study, or says why none started there."""

    def __init__(self, study: optuna.Study, study_paths: StudyPaths, settings: SearchSettings,
                 recorder: TrialRecorder) -> None:
        self.study, self.paths, self.s, self.recorder = study, study_paths, settings, recorder
        self._feasibility: Feasibility | None = None

    @property
    def feasibility(self) -> Feasibility:
        """train_one's checks of a trial's config, composed for the first trial that needs them."""
        if self._feasibility is None:
            self._feasibility = Feasibility.compose(self.s.space, self.s.user_overrides)
        return self._feasibility

    def start(self, slot: Slot) -> Running | str:
        """A trial launched in `slot`; else REJECTED or FULL, and the slot stays free."""
        trial = self._ask()
        if trial is None:
            return FULL
        space = self.s.space
        values = space.suggest(trial)
        config_values = space.config_values(values)
        base = [*space.fixed_overrides(), *space.overrides(values), *self.s.user_overrides]
        seed = trial.user_attrs.get(records.CONFIRM_SEED)
        if isinstance(seed, int):  # a confirmation: the configuration again, on its own seed
            base = [*(o for o in base if override_key(o) != "train.seed"), f"train.seed={seed}"]
        violated = space.check(values, self.s.user_overrides)
        refusal = "violates: " + "; ".join(violated) if violated else self._cannot_run(values)
        # The sampler learns of both as of a constraint: the trial is infeasible (and PRUNED).
        self.recorder.tag_search(trial, config_values, violated or ([refusal] if refusal else []))
        if refusal:  # recorded like any trial (its config too), never trained
            self._write_config(trial.number, values, config_values, base, [])
            self.recorder.record(trial, values, reasons.CONSTRAINT, frames=0, wall=0.0,
                                 score=math.nan, error_tail=refusal)
            return REJECTED
        run = self.paths.trial_run(trial.number)
        self.recorder.tag_run_dir(trial, str(run.root.relative_to(self.paths.root)))
        overrides = [*base, *run_overrides(run.root, slot)]
        self._write_config(trial.number, values, config_values, base, overrides)
        proc = launch(number=trial.number, command=[*self.s.worker, *overrides], run=run,
                      slot=slot, forkserver=self.s.forkserver)
        grace = max(1, self.s.grace_frames // self.s.eval_frequency)
        stoppers = make_stoppers(plateau_patience=self.s.plateau_patience,
                                 plateau_min_delta=self.s.plateau_min_delta, drop=self.s.drop,
                                 grace_reports=grace)
        return Running(trial=trial, proc=proc, values=values, tail=EventTail(run.tb),
                       stoppers=stoppers, confirmation=isinstance(seed, int))

    def _cannot_run(self, values: dict[str, Any]) -> str:
        """Why train_one would refuse the config of `values` (exit 2), "" when it would run."""
        error = self.feasibility.problem(values)
        if error is None:
            return ""
        return f"cannot run (train_one refuses it): `{error.key}` is {error.value!r}, but {error.rule}"

    def _ask(self) -> optuna.Trial | None:
        """A new trial of the study, owned by this process; None when the study reached
        --hp-trials meanwhile (another orchestrator asked first)."""
        trial = self.study.ask()
        self.recorder.own(trial)
        if count_trained(self.study, below=trial.number) < self.s.hp_trials:
            return trial
        self.recorder.give_up(trial)
        return None

    def _write_config(self, number: int, values: dict[str, Any], config_values: dict[str, Any],
                      base: list[str], overrides: list[str]) -> None:
        """configs/trial_NNNN.json: the trial's values and the command that trains them."""
        payload = {"trial": number, "search_space_id": self.s.space.space_id, "params": values,
                   "config_values": config_values, "base_overrides": base,
                   "user_overrides": self.s.user_overrides, "overrides": overrides,
                   "command": [*self.s.worker, *overrides]}
        atomic_write_text(self.paths.trial_config(number), json.dumps(payload, indent=2) + "\n")

