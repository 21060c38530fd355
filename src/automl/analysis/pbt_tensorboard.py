"""pbt/tb/member_<m>/: one TensorBoard run per member of a population, across its segments.

Each segment trains in its own run folder, so TensorBoard would show a member as one short run per
segment. This writes, per member, every scalar its segments wrote (steps are frames, which a
continued segment counts on from its parent's), and beside them:

- `PBT / <key>` for each mutable hyperparameter and reward weight with a numeric value, at the
  start of each segment (and the member's end);
- `PBT / exploit`: 1 at the start of a segment in which the member copied another, else 0;
- `PBT / donor`: the member it copied, at that start (only where it copied one).

Written by the orchestrator, which never imports torch: TensorBoard's own event writer. A member's
folder is written afresh each time the reports are (the segments' events are the record).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from automl.search.pbt.explore import mutable
from automl.search.pbt.population import Segment
from automl.search.trials.tb_reader import read_scalars

PREFIX = "PBT / "
EXPLOIT = PREFIX + "exploit"
DONOR = PREFIX + "donor"


def _latest(segments: list[Segment]) -> dict[int, list[Segment]]:
    """Each member's segments, one per generation (the last retry of a step), oldest first."""
    by_step: dict[tuple[int, int], Segment] = {}
    for s in sorted(segments, key=lambda s: s.number):
        by_step[(s.member, s.generation)] = s
    members: dict[int, list[Segment]] = {}
    for (member, _), s in sorted(by_step.items()):
        members.setdefault(member, []).append(s)
    return members


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def member_points(view: Any, segments: list[Segment]) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of one member's segments, with its hyperparameters and exploit steps, by tag."""
    points: dict[str, list[tuple[int, float]]] = {}
    keys = {p.name: p.key for p in view.space.params if mutable(p)}
    for s in segments:
        tb = view.study_paths.trial_run(s.number).tb
        for tag, series in (read_scalars(tb, verify_data=False) if tb.is_dir() else {}).items():
            points.setdefault(tag, []).extend(series)
        for name, key in keys.items():
            value = _numeric(s.values.get(name))
            if value is not None:
                points.setdefault(PREFIX + key, []).append((s.frames_start, value))
                if s is segments[-1]:  # the last value holds to the member's end
                    points[PREFIX + key].append((s.frames_end, value))
        points.setdefault(EXPLOIT, []).append((s.frames_start, 0.0 if s.donor is None else 1.0))
        if s.donor is not None:
            points.setdefault(DONOR, []).append((s.frames_start, float(s.donor)))
    return points


def write_member_runs(view: Any, folder: Path) -> list[Path]:
    """folder/member_<m>/ for every member (`view`: analysis.pbt.PbtView); the folders written."""
    written = []
    for member, segments in _latest(view.population.segments).items():
        out = folder / f"member_{member}"
        tmp = folder / f".member_{member}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        writer = EventFileWriter(str(tmp))
        now = time.time()
        for tag, series in member_points(view, segments).items():
            for step, value in sorted(series, key=lambda point: point[0]):
                summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
                writer.add_event(Event(summary=summary, step=int(step), wall_time=now))
        writer.close()
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        written.append(out)
    return written
