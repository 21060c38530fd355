"""The commands a stopped run prints so that a user can go on: every stop (Ctrl-C, the budget, an
error) names the exact command, budget included, that continues it."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence

from automl.requests import DEFAULT_SEARCH_METHOD, Request, ValidationOptions


def hours_flag(seconds: float) -> list[str]:
    """`--budget-hours H` for a window of `seconds`, rounded up to a hundredth of an hour."""
    return ["--budget-hours", f"{max(0.01, math.ceil(seconds / 36) / 100):g}"]


def _storage_flag(storage: str | None) -> list[str]:
    from automl.search.study.storage import without_password

    return ["--storage", without_password(storage) or ""] if storage else []


SWITCHES = ("--resume", "--quiet", "--no-fork-server", "--pbt-barrier")
"""automl.py's flags that take no value."""
SET_HERE = ("--mode", "--resume", "--study-name", "--budget-hours", "--hp-trials", "--storage",
            "--search-method")
"""The flags continue_search writes itself."""


def other_flags(argv: Sequence[str]) -> list[str]:
    """The command line's flags that continue_search does not set itself, as they were given;
    Hydra overrides are left out (a resumed study trains with the ones it stored)."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if not word.startswith("--"):
            continue  # an override
        flag, inline, _ = word.partition("=")
        value = [] if inline or flag in SWITCHES else [next(words, "")]
        if flag not in SET_HERE:
            out += [word, *value]
    return out


def continue_search(request: Request, study_name: str) -> str:
    """`--resume` of the study in the request's mode, with its budget and trial count, and every
    other flag as the stopped command gave it: what continues a search (or a stage) stopped by
    Ctrl-C, the budget or an error."""
    search = request.search
    words = ["uv", "run", "automl.py", "--mode", request.mode, "--resume", "--study-name",
             study_name, "--budget-hours", f"{request.budget.hours:g}",
             "--hp-trials", str(search.hp_trials)]
    if search.method != DEFAULT_SEARCH_METHOD:
        words += ["--search-method", search.method]
    words += other_flags(request.argv)
    return shlex.join(words + _storage_flag(request.study.storage))


def continue_validation(study_name: str, options: ValidationOptions, storage: str | None, *,
                        seconds: float) -> str:
    """The command that continues an interrupted validation (runs that completed are kept),
    with the time the stopped one had."""
    words = ["uv", "run", "automl.py", "--mode", "validate", "--study-name", study_name,
             "--validate-top", str(options.top), "--validate-seeds", str(options.seeds),
             "--screen-seeds", str(options.first), *hours_flag(seconds)]
    return shlex.join(words + _storage_flag(storage))
