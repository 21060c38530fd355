"""When the search may start another trial and when it has failed: the --hp-trials count, the grid,
the time budget (a new trial's expected duration at the running median rate), the failure rate, and
the other orchestrators of a shared study (recovered when dead, waited for while alive)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import optuna
from optuna.trial import TrialState

from automl import reasons
from automl.search.space import SearchSpace
from automl.search.study import records
from automl.search.study.budget import median_rate
from automl.search.study.shared import TRAINED_REFRESH_S
from automl.search.trials.watch import Running


def counts_toward_limit(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial counts toward --hp-trials: every search trial asked, running or ended, but
    not one queued and not started yet, one rejected by a constraint, one interrupted, or one that
    failed with its orchestrator (those two run again, and their re-runs count)."""
    attrs = trial.user_attrs
    if trial.state == TrialState.WAITING or not records.in_search(trial):
        return False
    if attrs.get(records.STOP_REASON) == reasons.CONSTRAINT or attrs.get(records.INTERRUPTED):
        return False
    # Failed by Optuna's stale-heartbeat check, which leaves no stop reason: no result of its own.
    return not (trial.state.is_finished() and records.STOP_REASON not in attrs)


def count_trained(study: optuna.Study, below: int | None = None) -> int:
    """Trials of the whole study that count toward --hp-trials (those numbered below `below`)."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if counts_toward_limit(t) and (below is None or t.number < below))


class TrialCount:
    """count_trained of the study, read from the storage at most every TRAINED_REFRESH_S (other
    orchestrators may share the study); launches of this process are added in between, so the
    loop does not re-read every trial on each poll."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self._count: int | None = None
        self._at = 0.0

    def get(self) -> int:
        """The count, re-read when it is older than TRAINED_REFRESH_S or was forgotten."""
        now = time.monotonic()
        if self._count is None or now - self._at > TRAINED_REFRESH_S:
            self._count, self._at = count_trained(self.study), now
        return self._count

    def launched(self) -> None:
        """This process launched a trial: it counts from now on."""
        if self._count is not None:
            self._count += 1

    def forget(self) -> None:
        """The count changed in a way not followed here: the next get re-reads it."""
        self._count = None


def grid_taken(study: optuna.Study, space: SearchSpace) -> bool:
    """Grid search: every point has a trial, ended or running, and no trial is queued.

    GridSampler.is_exhausted counts only ended trials: a slot freed while the last points
    run would start a copy of a running point.
    """
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    taken = {t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs}
    return len(taken) >= space.grid_size()


class Budget:
    """The search's clock: its deadline, and whether a new trial can still end before it."""

    def __init__(self, budget_s: float, *, frames: int) -> None:
        self.total_s, self.frames = budget_s, frames
        self.start = time.monotonic()
        self.deadline = self.start + budget_s
        self.rates: list[float] = []
        """Frames per second of every trial that ended having trained (start-up included)."""

    def time_left(self) -> float:
        """Seconds to the deadline (0 once past it)."""
        return max(0.0, self.deadline - time.monotonic())

    def seen_before(self, study: optuna.Study) -> None:
        """The rates of the trials earlier sessions ended: a resumed study plans its first new
        trial at them, so a session with too little time left starts none.

        A trial the budget or a signal cut is left out: cut soon after its start, its start-up
        weighs on a few frames, and its rate says a trial takes many times what it takes."""
        for t in study.get_trials(deepcopy=False):
            if (t.state.is_finished() and records.in_search(t)
                    and not t.user_attrs.get(records.INTERRUPTED)):
                self.trial_ended(int(t.user_attrs.get(records.FRAMES) or 0),
                                 float(t.user_attrs.get(records.WALL_S) or 0.0))

    def trial_ended(self, frames: int, wall_s: float) -> None:
        """A trial ended after training `frames` in `wall_s`: one more rate sample."""
        if frames > 0 and wall_s > 0:
            self.rates.append(frames / wall_s)

    def rate_samples(self, running: Iterable[Running]) -> int:
        """How many trials the rate of `expected_duration` rests on (ended and running ones)."""
        return len(self.rates) + sum(1 for r in running if r.frames > 0)

    def expected_duration(self, running: Iterable[Running]) -> float | None:
        """A new trial's time: its frames at the running median of the trials' frames/s (ended
        ones, and the running ones so far); never the slowest trial seen. None before any."""
        now = time.monotonic()
        rates = [r.frames / (now - r.proc.started) for r in running
                 if r.frames > 0 and now > r.proc.started]
        rate = median_rate([*self.rates, *rates])
        return None if rate is None else self.frames / rate

    def allows_start(self, running: Iterable[Running]) -> bool:
        """No trial starts that cannot finish before the deadline, given durations seen so far."""
        estimate = self.expected_duration(running)
        return estimate is None or time.monotonic() + estimate <= self.deadline


def failure_message(finished: Mapping[str, int], *, max_failure_rate: float, csv: Path,
                    minimum: int = 4) -> str:
    """Why the study has failed, once `minimum` trials have ended; "" while it has not."""
    failed = finished[reasons.ERROR] + finished[reasons.TIMEOUT]
    ended = sum(v for k, v in finished.items() if k != reasons.CONSTRAINT)
    if ended >= minimum and failed / ended > max_failure_rate:
        return (f"{failed} of {ended} trials failed (error or timeout), more than "
                f"--max-failure-rate {max_failure_rate}; see the error_tail column of {csv}")
    return ""
