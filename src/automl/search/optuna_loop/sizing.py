"""The pruning plan settled on the budget.

A new study's plan is first sized to --hp-trials (no trial has run, so nothing says how long one
takes). Once 3 trials (or one per slot, when fewer) have reported a score point, the median of
their frames per second says how many trials the search budget holds (pruned ones being
shorter). Where that is fewer than --hp-trials, the plan is sized to it: fewer brackets and rungs,
and TPE's start-up to match. This happens before the pruner's first decision, so every decision
of the study follows one plan. The settled plan is printed, written to meta.yaml and to the
study, and a resumed study keeps it. A study stopped before its plan settled settles it in the
session that resumes it, unless a trial was pruned under the first plan meanwhile (then the plan
stays, so that no two trials were judged by different rules).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna

from automl import reasons
from automl.paths import StudyPaths
from automl.search.optuna_loop.pruning import PruningPlan, make_pruner, size_to_budget
from automl.search.study import records, reports


@dataclass
class PlanSizing:
    """Settles a study's pruning plan on the measured frames/s, once (in its first session, or in
    the one that resumes it when the first stopped before)."""

    plan: PruningPlan
    """The plan in force: sized to --hp-trials until settled."""
    plan_for: Callable[[int], PruningPlan]
    """The plan for a study of that many trials (same pruner, frames, grace, episode length)."""
    hp_trials: int
    budget_s: float
    slots: int
    grace_frames: int
    study_paths: StudyPaths
    new_sampler: Callable[[int], optuna.samplers.BaseSampler] | None = None
    """TPE with that start-up (a seed of its own, so it does not replay the first draws); None:
    the sampler has no start-up to change."""
    settled: bool = False

    def settle(self, study: optuna.Study, trial_s: float | None) -> str | None:
        """Size the plan to the budget at `trial_s` seconds per full-length trial (None: no rate
        yet, try again later). Returns the line to print, once."""
        if self.settled or trial_s is None:
            return None
        self.settled = True
        stored = StoredPlan.from_attr(study.user_attrs.get(records.PLAN_INPUTS))
        if stored is not None and stored.settled and stored.trials is not None:
            # Another machine on the same storage settled the plan first: its plan holds for all.
            if self.plan_for(stored.trials) == self.plan:
                reports.update_meta(self.study_paths, pruning_sized_by="another machine's session")
                return None
            self._adopt(study, self.plan_for(stored.trials), sized_by="another machine's session")
            return f"automl: the pruning plan was settled by another machine: {self.plan.describe()}"
        pruned = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
                  if t.user_attrs.get(records.STOP_REASON) == reasons.PRUNED]  # not a budget cut
        if pruned:
            self._record(study, self.plan)
            reports.update_meta(self.study_paths, pruning_sized_by="the study's first session "
                                "(not settled on the budget before a trial was pruned under it)")
            return (f"automl: the pruning plan stays sized to {self.plan.trials} trials: trial "
                    f"{pruned[0].number} was pruned under it before it was settled on the budget")
        plan, fit = size_to_budget(self.plan_for, hp_trials=self.hp_trials, budget_s=self.budget_s,
                                   slots=self.slots, trial_s=trial_s)
        holds = (f"the budget holds about {fit} trials (a full trial takes ~{trial_s:.0f} s at the "
                 f"first trials' rate, {self.slots} slot(s), pruned trials shorter)")
        if plan.trials >= self.plan.trials:
            self._record(study, self.plan)
            reports.update_meta(self.study_paths, pruning_sized_by=f"--hp-trials; {holds}")
            return f"automl: {holds}; --hp-trials {self.hp_trials} ends the search first"
        self._adopt(study, plan, sized_by=f"budget; {holds}")
        self._record(study, plan)
        return (f"automl: {holds}, fewer than --hp-trials {self.hp_trials}: pruning resized to "
                f"{plan.brief()}")

    def _adopt(self, study: optuna.Study, plan: PruningPlan, *, sized_by: str) -> None:
        """Put `plan` in force: the pruner, TPE's start-up, meta.yaml."""
        study.pruner = make_pruner(plan)
        if self.new_sampler is not None and plan.startup_trials != self.plan.startup_trials:
            study.sampler = self.new_sampler(plan.startup_trials)
        self.plan = plan
        reports.update_meta(self.study_paths, pruning=plan.as_dict(), pruning_sized_by=sized_by)

    def _record(self, study: optuna.Study, plan: PruningPlan) -> None:
        """The settled plan's inputs, in the study: what --resume on any machine keeps."""
        study.set_user_attr(records.PLAN_INPUTS, plan_inputs(plan.trials, self.grace_frames,
                                                             settled=True))


def plan_inputs(trials: int, grace_frames: int, *, settled: bool) -> dict[str, int | bool]:
    """The study attribute records.PLAN_INPUTS."""
    return {"trials": trials, "grace_frames": grace_frames, "settled": settled}


@dataclass(frozen=True)
class StoredPlan:
    """What a resumed study's plan was sized to (None where the study does not say)."""

    trials: int | None = None
    grace_frames: int | None = None
    settled: bool = True
    """False only where the study says its plan was never settled on the budget (a study from
    before this was recorded counts as settled: it keeps its plan)."""

    @classmethod
    def from_attr(cls, value: object) -> StoredPlan | None:
        """From the study attribute records.PLAN_INPUTS; None when it is absent or not a mapping."""
        if not isinstance(value, dict):
            return None
        trials, grace, settled = value.get("trials"), value.get("grace_frames"), value.get("settled")
        return cls(trials=trials if isinstance(trials, int) else None,
                   grace_frames=grace if isinstance(grace, int) else None,
                   settled=settled is not False)
