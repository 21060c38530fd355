"""The search stage, one skeleton for both methods: open (or resume, or join) the study, recover
the trials of dead orchestrators, wait for the warm fork server, write meta.yaml, run the method's
loop under the console, and say how it ended. A method (the Optuna loop here, population-based
training in automl.stages.pbt) brings what differs: its checks, its settings, its loop.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Protocol

import optuna

from automl.errors import ConfigError
from automl.requests import Request
from automl.search.optuna_loop import scheduler as search_loop
from automl.search.optuna_loop.console import LiveConsole, QuietConsole
from automl.search.optuna_loop.scheduler import Scheduler
from automl.search.optuna_loop.settings import SearchSettings
from automl.search.plan import Plan, open_study, plan_sizing, recover_trials, slots_for, worker_command
from automl.search.study import reports
from automl.search.study.confirm import study_seeds
from automl.search.study.recovery import Recovery
from automl.search.study.shared import Outcome
from automl.search.trials.forkserver import ForkServer
from automl.search.trials.launcher import Slot
from automl.stages.commands import continue_search


@dataclass(frozen=True)
class Opened:
    """A study opened for the search, with what the skeleton decided for it."""

    study: optuna.Study
    recovery: Recovery
    slots: list[Slot]
    budget_s: float
    forkserver: ForkServer | None


class SearchMethod(Protocol):
    """What a search method brings to the skeleton."""

    what: str
    """Its name in the end line (`search`, `population-based training`)."""
    unit: str
    """What its loop runs (`trial`, `segment`)."""
    live: bool
    """It shows a live table of its running trials (unless --quiet); else one line per end."""

    def check(self, slots: list[Slot]) -> None:
        """Refuse bad flags (exit 2) before the study exists."""

    def opened(self, run: Opened) -> dict[str, Any]:
        """Settle what the stored study decides (a resumed study's own settings); returns
        meta.yaml's method-specific keys."""

    def lines(self) -> list[str]:
        """Console lines that describe the plan, after the study line."""

    def loop(self, run: Opened, console: Any) -> Outcome:
        """Run the method's loop to its end."""

    def ended(self, outcome: Outcome) -> None:
        """After the end line: refuse an outcome that means bad input (exit 2)."""


def run_search(request: Request, plan: Plan, method: SearchMethod, *, budget_s: float,
               forkserver: ForkServer | None) -> Outcome:
    """The search stage (module docstring): until the method's loop ends or a limit is hit."""
    slots = slots_for(request.resources, plan.base.env.device)
    method.check(slots)
    recovery = Recovery(plan.study_paths, plan.space)
    study = open_study(request, plan, on_stale=recovery)
    run = Opened(study, recovery, slots, budget_s, forkserver)
    extra = method.opened(run)
    again = recover_trials(study, recovery) if request.study.resume else []
    if forkserver is not None:
        try:
            forkserver.wait_ready()  # its imports, once, before the search clock and slots start
        except RuntimeError as err:
            print(f"automl: {err}; starting {method.unit}s without it", file=sys.stderr)
    reports.write_meta(plan.study_paths, argv=request.argv, extra={
        "mode": request.mode, "storage": plan.storage_url, "slots": len(slots),
        "budget_hours": request.budget.hours, "overrides": list(plan.overrides), **extra,
        "retried_trials": again})
    console = LiveConsole() if method.live and not request.quiet else QuietConsole()
    if not any(a.split("=")[0] == "--budget-hours" for a in request.argv):
        console.message(f"automl: no --budget-hours given: this {request.mode} runs for up to "
                        f"{request.budget.hours:g} hours (Ctrl-C stops it cleanly and prints the "
                        "command that continues it)")
    console.message(f"automl: study {plan.study_paths.name} in {plan.study_paths.root}; "
                    f"{len(slots)} slot(s), search budget {budget_s / 3600:.2f} h")
    for line in method.lines():
        console.message(line)
    with console:
        outcome = method.loop(run, console)
    counts = ", ".join(f"{k} {v}" for k, v in outcome.finished.items() if v) or f"no {method.unit} ended"
    console.message(f"automl: {method.what} ended ({outcome.stopped_by}): {counts}")
    method.ended(outcome)
    if outcome.message:
        print(f"automl: {outcome.message}", file=sys.stderr)
    if _continues(request.mode, outcome.stopped_by):
        print(f"automl: {method.what} stopped ({outcome.stopped_by}); continue with: "
              f"{continue_search(request, plan.study_paths.name)}", file=sys.stderr)
    return outcome


def _continues(mode: str, stopped_by: str) -> bool:
    """Whether the search's end leaves work a user continues by hand: Ctrl-C or too many failures
    always; the budget in search mode (a stage goes on to validation with the time it has)."""
    return stopped_by in ("interrupted", "failures") or (mode == "search" and stopped_by == "budget")


class OptunaSearch:
    """The Optuna loop: trials sampled by the study's sampler, pruned, a new best confirmed."""

    what, unit, live = "search", "trial", True

    def __init__(self, request: Request, plan: Plan) -> None:
        self.request, self.plan = request, plan
        self.seeds = 1

    def check(self, slots: list[Slot]) -> None:
        """Nothing to check beyond what the plan checked."""

    def opened(self, run: Opened) -> dict[str, Any]:
        """The study's confirmation seeds (a resumed study's own); meta.yaml's search keys."""
        plan, search = self.plan, self.request.search
        self.seeds = study_seeds(run.study, search, source=str(plan.study_paths.root))
        return {"search_method": search.method, "pruner": search.pruner,
                "hp_trials": search.hp_trials, "frames_per_trial": plan.frames,
                "grace_frames": plan.grace_frames, "pruning": plan.pruning.as_dict(),
                "pruning_sized_by": "an earlier session" if plan.settled else "--hp-trials",
                "confirm_seeds": self.seeds}

    def lines(self) -> list[str]:
        """The trials, the pruning plan and the confirmation rule."""
        out = [f"automl: {self.request.search.hp_trials} trials of {self.plan.frames:,} frames "
               "(each ends on the first whole step of every env at or past it, so its end line "
               "may count a few more)",
               f"automl: {self.plan.pruning.describe()}"]
        if self.seeds > 1:
            out.append(f"automl: a new best is confirmed on {self.seeds - 1} more seed(s) (never "
                       "pruned); the best is the confirmed configuration of highest mean")
        return out

    def loop(self, run: Opened, console: Any) -> Outcome:
        """The ask/tell scheduler over the slots."""
        request, plan, search = self.request, self.plan, self.request.search
        scoring = plan.base.scoring
        settings = SearchSettings(
            space=plan.space, worker=worker_command(request.resources),
            user_overrides=list(plan.overrides), hp_trials=search.hp_trials, budget_s=run.budget_s,
            frames=plan.frames, eval_frequency=plan.base.train.eval_frequency, slots=run.slots,
            plateau_patience=scoring.plateau_patience, plateau_min_delta=scoring.plateau_min_delta,
            drop=scoring.drop, grace_frames=plan.grace_frames, trial_timeout=request.budget.trial_timeout,
            max_failure_rate=request.budget.max_failure_rate, target_score=search.target_score,
            confirm_seeds=self.seeds, forkserver=run.forkserver, recovery=run.recovery,
            sizing=plan_sizing(request, plan, slots=len(run.slots), budget_s=run.budget_s))
        return Scheduler(run.study, plan.study_paths, settings, console).run()

    def ended(self, outcome: Outcome) -> None:
        """A space whose samples never ran is bad input: one error line, exit 2."""
        if outcome.stopped_by != "infeasible":
            return
        space = self.plan.space
        raise ConfigError(file=space.source, key="constraints", value=[c.text for c in space.constraints],
                          rule=f"{search_loop.MAX_CONSTRAINT_REJECTIONS} sampled configurations in a row "
                          "violated them or could not run (see the error_tail column of "
                          "trial_final.csv), so the space looks infeasible",
                          fix="loosen the constraints or change the parameter ranges")
