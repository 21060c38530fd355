"""What the search shows on the terminal: a live rich table, or one line per finished trial."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from automl.search.optuna_loop.search_state import best_basis


def _fmt_score(score: float) -> str:
    return f"{score:.4g}" if math.isfinite(score) else "-"


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


class QuietConsole:
    """--quiet: one line per finished trial, nothing else."""

    def __init__(self) -> None:
        self.out = Console(highlight=False)

    def __enter__(self) -> QuietConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, scheduler: Any) -> None:
        """Nothing to redraw: --quiet shows no live table."""
        return None

    def trial_finished(self, number: int, reason: str, score: float, frames: int) -> None:
        """One line for a trial that ended: its number, stop reason, score and frames."""
        self.out.print(f"trial {number:4d}  {reason:10s}  score {_fmt_score(score):>10s}  "
                       f"frames {frames:,}", soft_wrap=True)

    def message(self, text: str) -> None:
        """Print a line of text as it is, never wrapped."""
        # soft_wrap: no line breaks inserted at the console width, which would cut paths in two
        # (in a log file or a pipe the width is 80).
        self.out.print(text, soft_wrap=True)


class LiveConsole(QuietConsole):
    """A live table of running trials, counts by stop reason, best so far and time left.

    Refreshed by the search loop itself (no refresh thread: trials are forked from this process).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = Live(console=self.out, auto_refresh=False, transient=False)
        self.last = 0.0
        self.scheduler: Any = None

    def __enter__(self) -> LiveConsole:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.scheduler is not None and exc[0] is None:  # the last state, not the last
                self.live.update(self.render(self.scheduler))  # throttled redraw
        finally:
            self.live.__exit__(None, None, None)
            if not self.out.is_terminal:  # rich ends its last frame with a newline on a terminal only
                self.out.line()

    def update(self, scheduler: Any) -> None:
        """Redraw the live table from the scheduler's state, at most twice a second."""
        self.scheduler = scheduler
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        self.live.update(self.render(scheduler), refresh=True)

    def trial_finished(self, number: int, reason: str, score: float, frames: int) -> None:
        """Print the finished trial's line above the live table, which stays at the bottom."""
        self.live.console.print(f"trial {number:4d} ended: {reason:10s} score "
                                f"{_fmt_score(score)}  frames {frames:,}")

    def render(self, scheduler: Any) -> Group:
        """The live view: a table of running trials, then counts by stop reason, best trial and time left."""
        table = Table(title=f"study {scheduler.paths.name}: running trials", expand=False)
        for column in ("trial", "frames", "score", "elapsed", "slot"):
            table.add_column(column, justify="right")
        for number, r in sorted(scheduler.running.items()):
            done = f"{r.frames:,}/{scheduler.s.frames:,}"
            table.add_row(str(number), done, _fmt_score(r.score),
                          _fmt_time(time.monotonic() - r.proc.started),
                          f"{r.proc.slot.index}" + (f" gpu{r.proc.slot.gpu}"
                                                    if r.proc.slot.gpu is not None else ""))
        counts = "  ".join(f"{k} {v}" for k, v in scheduler.finished.items() if v) or "none yet"
        best = scheduler.best
        best_text = "-"
        if best:
            best_text = (f"trial {best[1]} score {_fmt_score(best[0])} "
                         f"({best_basis(scheduler.tally.best_seeds)})")
        footer = Text(f"started {scheduler.trained_count()}/{scheduler.s.hp_trials} "
                      f"({len(scheduler.running)} running)   "
                      f"finished: {counts}\nbest: {best_text}   "
                      f"time left: {_fmt_time(scheduler.time_left())}")
        return Group(table, footer)
