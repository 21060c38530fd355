"""Plateau and drop stoppers: tables of score sequences and the report at which each must fire."""

from __future__ import annotations

import math
import re

import pytest

from automl import reasons
from automl.search.trials.stoppers import DropStopper, PlateauStopper, StopperSet

nan, inf = math.nan, math.inf


def first_fire(stopper: PlateauStopper | DropStopper, scores: list[float]) -> int | None:
    """1-based index of the first report on which `update` returned True, or None."""
    for index, score in enumerate(scores, start=1):
        if stopper.update(score):
            return index
    return None


@pytest.mark.parametrize(
    ("patience", "min_delta", "grace", "scores", "expected"),
    [
        pytest.param(3, 0.0, 0, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], None, id="steady-rise"),
        pytest.param(3, 0.0, 0, [0.5] * 6, 4, id="flat-fires-after-patience"),
        pytest.param(1, 0.0, 0, [1.0, 1.0], 2, id="patience-1"),
        pytest.param(3, 0.0, 0, [1.0, 0.9, 0.8, 0.7], 4, id="decline-is-no-improvement"),
        pytest.param(3, 0.0, 0, [0.5, 0.5, 0.5, 0.75, 0.75, 0.75], None, id="late-gain-resets"),
        pytest.param(3, 0.0, 0, [0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75], 7, id="then-flat-again"),
        pytest.param(3, 0.5, 0, [0.0, 0.5, 0.5, 0.5], 4, id="gain-equal-to-min-delta-is-none"),
        pytest.param(3, 0.5, 0, [0.0, 0.75, 0.75, 0.75], None, id="gain-above-min-delta"),
        pytest.param(3, 0.5, 0, [0.0, 0.125, 0.25, 0.375], 4, id="slow-creep-is-a-plateau"),
        pytest.param(3, 0.0, 5, [0.5] * 8, 6, id="grace-holds-it-back"),
        pytest.param(3, 0.0, 10, [0.5] * 8, None, id="grace-longer-than-run"),
        pytest.param(3, 0.0, 0, [0.5, nan, 0.5, nan, 0.5, 0.5], 6, id="nan-ignored"),
        pytest.param(2, 0.0, 0, [0.5, inf, 0.5, -inf, 0.5], 5, id="inf-ignored"),
    ],
)
def test_plateau(
    patience: int, min_delta: float, grace: int, scores: list[float], expected: int | None
) -> None:
    stopper = PlateauStopper(patience=patience, min_delta=min_delta, grace=grace)
    assert first_fire(stopper, scores) == expected


@pytest.mark.parametrize(
    ("window", "drop", "grace", "scores", "expected"),
    [
        pytest.param(3, 0.2, 0, [0.5, 0.9, 0.8, 0.65], 4, id="docstring-example"),
        pytest.param(3, 0.2, 0, [0.1, 0.3, 0.25, 0.5, 0.45, 0.7], None, id="noisy-rise"),
        pytest.param(1, 0.5, 0, [1.0, 0.5], None, id="fall-equal-to-drop-is-none"),
        pytest.param(1, 0.5, 0, [1.0, 0.25], 2, id="fall-above-drop"),
        pytest.param(1, 0.0, 0, [1.0, 0.875], 2, id="drop-0-any-fall"),
        pytest.param(2, 0.3, 0, [1.0, 0.8, 0.8, 0.6], None, id="best-left-the-window"),
        pytest.param(3, 0.3, 0, [1.0, 0.8, 0.8, 0.6], 4, id="best-still-in-window"),
        pytest.param(3, 0.5, 0, [-100.0], None, id="first-report-never"),
        pytest.param(3, 0.5, 2, [1.0, 0.0, 0.0], 3, id="grace-masks-report-2"),
        pytest.param(3, 0.5, 3, [1.0, 0.0, 0.0], None, id="grace-masks-all"),
        pytest.param(1, 0.5, 0, [1.0, nan, 0.25], 3, id="nan-not-in-window"),
        pytest.param(1, 0.5, 0, [1.0, inf, 0.75], None, id="inf-not-in-window"),
        pytest.param(5, 1.0, 0, [-1.0, -0.5, -3.0], 3, id="negative-scores"),
    ],
)
def test_drop(
    window: int, drop: float, grace: int, scores: list[float], expected: int | None
) -> None:
    stopper = DropStopper(window=window, drop=drop, grace=grace)
    assert first_fire(stopper, scores) == expected


def test_nan_leaves_state_untouched() -> None:
    plateau, drop = PlateauStopper(patience=1), DropStopper(window=1, drop=0.0)
    for stopper in (plateau, drop):
        stopper.update(0.5)
        assert stopper.update(nan) is False
        assert stopper.reports == 1
    assert plateau.best == 0.5 and list(drop.history) == [0.5]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        pytest.param([0.5, 0.75, 1.0], [None, None, None], id="rising"),
        pytest.param([0.5, 0.5, 0.5], [None, None, reasons.PLATEAU], id="plateau"),
        pytest.param([1.0, 1.5, 0.25], [None, None, reasons.DROP], id="drop-alone"),
        pytest.param([1.0, 1.0, 0.25], [None, None, reasons.DROP], id="both-fire-drop-wins"),
        pytest.param([1.0, nan, 1.0, 1.0], [None, None, None, reasons.PLATEAU], id="nan"),
    ],
)
def test_stopper_set(scores: list[float], expected: list[str | None]) -> None:
    stoppers = StopperSet(plateau=PlateauStopper(patience=2), drop=DropStopper(window=2, drop=0.5))
    assert [stoppers.update(score) for score in scores] == expected


def test_stopper_set_without_stoppers_never_stops() -> None:
    stoppers = StopperSet()
    assert [stoppers.update(score) for score in [1.0, 0.0, 0.0, nan]] == [None] * 4


VALID = {PlateauStopper: {"patience": 3}, DropStopper: {"window": 3, "drop": 0.1}}


@pytest.mark.parametrize(
    ("cls", "name", "value", "rule"),
    [
        (PlateauStopper, "patience", 0, "`patience >= 1`"),
        (PlateauStopper, "patience", 2.5, "`patience >= 1`"),
        (PlateauStopper, "patience", True, "`patience >= 1`"),
        (PlateauStopper, "min_delta", -0.1, "`min_delta >= 0`"),
        (PlateauStopper, "min_delta", nan, "`min_delta >= 0`"),
        (PlateauStopper, "grace", -1, "`grace >= 0`"),
        (DropStopper, "window", 0, "`window >= 1`"),
        (DropStopper, "drop", -1, "`drop >= 0`"),
        (DropStopper, "drop", inf, "finite"),
        (DropStopper, "grace", -2, "`grace >= 0`"),
    ],
)
def test_bad_arguments(cls: type, name: str, value: object, rule: str) -> None:
    message = f"The value of `{name}` is {value!r}, but must be {rule}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        cls(**{**VALID[cls], name: value})
