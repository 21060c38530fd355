"""Per-trial early stoppers, as in Optuna + ASHA studies: end a trial whose score has plateaued
or dropped.

Pure and stateful: the orchestrator feeds each trial's stoppers one reported score at a time, in
the order reported. Scores are "higher is better". A stopper never sees a step or a time: how
often it is fed (every evaluation point) is the orchestrator's choice.

Non-finite scores (NaN, inf) are ignored: they change no state and count toward nothing, grace
included. The orchestrator ends a diverged (NaN) trial itself before asking the stoppers.
"""

from __future__ import annotations

import math
from collections import deque

from automl import reasons


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"The value of `{name}` is {value!r}, but must be `{name} >= {minimum}`")


def _check_float(name: str, value: float) -> None:
    # `not value >= 0` also rejects NaN.
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"The value of `{name}` is {value!r}, but must be `{name} >= 0`")
    if math.isinf(value):
        raise ValueError(f"The value of `{name}` is {value!r}, but must be finite")


class PlateauStopper:
    """Fires when the score has not beaten its reference by more than `min_delta` for `patience`
    reports in a row.

    The reference is the score of the last report that improved on the previous reference by
    more than `min_delta` (the first report sets it). Small gains do not move the reference, so
    a slow creep of less than `min_delta` per `patience` reports still counts as a plateau (as
    Keras' EarlyStopping). With patience 3, the earliest it fires is the 4th report.
    """

    reason = reasons.PLATEAU

    def __init__(self, *, patience: int, min_delta: float = 0.0, grace: int = 0) -> None:
        _check_int("patience", patience, 1)
        _check_float("min_delta", min_delta)
        _check_int("grace", grace, 0)
        self.patience = patience
        """Reports without a significant improvement that make a plateau."""
        self.min_delta = min_delta
        """Smallest gain over the reference that counts as an improvement (strictly more than)."""
        self.grace = grace
        """The first `grace` finite reports never fire (they still move the reference)."""
        self.reports = 0
        self.best = -math.inf
        """The reference score."""
        self.since_improvement = 0

    def update(self, score: float) -> bool:
        """Take one reported score; True when the trial should stop."""
        if not math.isfinite(score):
            return False
        self.reports += 1
        if score > self.best + self.min_delta:
            self.best = score
            self.since_improvement = 0
        else:
            self.since_improvement += 1
        return self.reports > self.grace and self.since_improvement >= self.patience


class DropStopper:
    """Fires when a score falls more than `drop` below the best of the `window` reports before it.

    `drop` is absolute, in score units (the score's scale is set by conf/scoring's weights; a
    success-rate score lies in [0, 1]). The current report is not part of its own window, and
    the first report, having no history, never fires. With window 3 and drop 0.2, the scores
    0.5, 0.9, 0.8, 0.65 fire on the 4th report (0.9 - 0.65 = 0.25 > 0.2).
    """

    reason = reasons.DROP

    def __init__(self, *, window: int, drop: float, grace: int = 0) -> None:
        _check_int("window", window, 1)
        _check_float("drop", drop)
        _check_int("grace", grace, 0)
        self.window = window
        """How many previous reports the current one is compared with."""
        self.drop = drop
        """Fall below the window's best, in score units, that stops the trial (strictly more)."""
        self.grace = grace
        """The first `grace` finite reports never fire (they still fill the window)."""
        self.reports = 0
        self.history: deque[float] = deque(maxlen=window)

    def update(self, score: float) -> bool:
        """Take one reported score; True when the trial should stop."""
        if not math.isfinite(score):
            return False
        self.reports += 1
        fell = bool(self.history) and max(self.history) - score > self.drop
        self.history.append(score)
        return self.reports > self.grace and fell


class StopperSet:
    """The stoppers of one trial, fed together; `update` returns the stop reason or None.

    Both stoppers see every score, so their state does not depend on which fired. When both fire
    on the same report the reason is DROP: a drop is also a report without improvement, and the
    drop is the more specific cause.
    """

    def __init__(
        self, *, plateau: PlateauStopper | None = None, drop: DropStopper | None = None
    ) -> None:
        self.plateau = plateau
        self.drop = drop

    def update(self, score: float) -> str | None:
        """Take one reported score; `reasons.DROP`, `reasons.PLATEAU` or None."""
        dropped = self.drop.update(score) if self.drop is not None else False
        plateaued = self.plateau.update(score) if self.plateau is not None else False
        if dropped:
            return reasons.DROP
        if plateaued:
            return reasons.PLATEAU
        return None
