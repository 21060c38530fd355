"""What both search methods (the Optuna loop and population-based training) share about a running
study besides its trials' records (trial_record.py): the other orchestrators of the study, whose
dead trials are recovered and whose live ones are waited for, and how a search ended."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import optuna

from automl.search.study.recovery import Recovery

TRAINED_REFRESH_S = 2.0
"""Seconds between two reads of the study's trial count (and of other orchestrators' trials)."""
RECOVER_EVERY_S = 5.0
"""Seconds between two looks for trials of dead orchestrators on the journal file; on a database,
one look per heartbeat interval."""


@dataclass
class Outcome:
    """How the search ended."""

    finished: dict[str, int]
    stopped_by: str
    """hp_trials / grid / budget / interrupted / failures / infeasible"""
    message: str = ""



class SharedStudy:
    """The other orchestrators of the study: the trials of dead ones fail and their configurations
    run again; while live ones run trials, this one does not end (it may re-run theirs)."""

    def __init__(self, study: optuna.Study, recovery: Recovery | None, *, mine: Collection[int],
                 every_s: float | None) -> None:
        self.study, self.recovery, self.mine = study, recovery, mine
        self.every_s = every_s or RECOVER_EVERY_S
        self.next_look = 0.0
        self.waiting_for = 0
        """RUNNING trials of other orchestrators this one waits for once no new trial may start."""
        self._counted_at = -math.inf

    def recover(self, now: float) -> list[int]:
        """Once every `every_s`: fail the trials of dead orchestrators, queue their configurations
        again; returns the numbers of the trials recovered."""
        if now < self.next_look:
            return []
        self.next_look = time.monotonic() + self.every_s
        if self.recovery is None:
            return []
        return self.recovery.run(self.study, mine=self.mine)

    def wait_for_others(self, why_not: str) -> bool:
        """No new trial may start here (`why_not`): wait while other orchestrators run trials of
        the study, so that one whose orchestrator dies is recovered and run again here."""
        if why_not not in ("hp_trials", "grid") or self.recovery is None:
            return False
        now = time.monotonic()
        if now - self._counted_at >= TRAINED_REFRESH_S:
            self.waiting_for = self.recovery.running_elsewhere(self.study, mine=self.mine)
            self._counted_at = now
        return self.waiting_for > 0


def guarded(loop: Callable[[], tuple[str, str]], *, on_signal: Callable[[int, Any], None],
            abort: Callable[[BaseException], None], close: Callable[[], None]) -> tuple[str, str]:
    """Run a search loop with Ctrl-C and SIGTERM sent to `on_signal` (the loop stops its trials
    itself); if it raises (a storage error, a broken pipe, a bug), `abort` first records every
    trial this process asked, so none stays RUNNING. `close` runs last, whatever happened."""
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return loop()
    except BaseException as err:
        abort(err)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        close()
