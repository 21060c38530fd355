"""What a training run shows as it goes: its output to the terminal and stdout.log (Tee), its
frames, rate and latest score (Progress), and the progress line."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TextIO


class Tee:
    """Writes to the terminal (unless quiet) and to stdout.log."""

    def __init__(self, log: TextIO, terminal: TextIO | None) -> None:
        self.log, self.terminal = log, terminal

    def write(self, text: str) -> int:
        """Write to stdout.log and, unless quiet, the terminal, flushing both; returns the length."""
        self.log.write(text)
        self.log.flush()
        if self.terminal is not None:
            self.terminal.write(text)
            self.terminal.flush()
        return len(text)

    def flush(self) -> None:
        """Flush stdout.log (the terminal is flushed at each write)."""
        self.log.flush()


@dataclass
class Progress:
    """What a run knows of itself while it trains."""

    start: float
    """time.monotonic() at the start."""
    offset: int = 0
    """Frames trained before this run: those of the state it resumed from, else 0."""
    frames: int = 0
    """Frames trained in all, `offset` included: TensorBoard steps and summary.json count these."""
    score: float = math.nan
    """Score of the last evaluation point that had finished episodes."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Task metrics of the last evaluation point that had finished episodes."""
    started_at: float = field(default_factory=time.time)
    """Unix time at the start."""
    first_step_at: float | None = None
    """Unix time of the first environment step."""

    next_print: float = 0.0
    """time.monotonic() at which the next progress line is due."""

    def rate(self, elapsed: float) -> float:
        """Frames per second of this run (a resumed run's earlier frames not counted)."""
        return (self.frames - self.offset) / max(elapsed, 1e-9)

    def report(self, total: int, every: float, out: TextIO | Tee) -> None:
        """A progress line when one is due (every `every` seconds, the first at once)."""
        now = time.monotonic()
        if now >= self.next_print:
            self.next_print = now + every
            print(progress_line(self.frames, total, self.rate(now - self.start), self.metrics,
                                self.score), file=out)


def progress_line(frames: int, total: int, rate: float, metrics: dict[str, float],
                  score: float) -> str:
    """One progress line: frames, frames per second, and success, return and score when known."""
    parts = [f"frames {frames:,}/{total:,} ({100 * frames / total:.0f}%)",
             f"{rate:,.0f} frames/s"]
    if "success_rate" in metrics:
        parts.append(f"success {metrics['success_rate']:.2f}")
    if "return" in metrics:
        parts.append(f"return {metrics['return']:.1f}")
    if math.isfinite(score):
        parts.append(f"score {score:.3f}")
    return "  ".join(parts)
