"""Stand-in for the trial worker: scripted TensorBoard curves, crashes, hangs and NaNs, no torch.

Launched like the real worker, `python tests/standin_worker.py [--behaviour FILE.json] k=v ...`;
overrides it does not use are ignored. Behaviour file (every key optional; top-level keys are the
defaults, then each rule whose `when` equals the overrides replaces the keys it sets, in order):

    {"seconds_per_point": 0.02, "noise": 0.0, "curve": "rise",
     "score": {"param": "ppo.learning_rate", "target": 3e-4, "log": true, "scale": 1.0},
     "crash_at": null, "die_at": null, "hang_at": null, "nan_at": null, "exit_code": null,
     "hold_until": null, "time_jitter": 0.0,
     "rules": [{"when": {"ppo.learning_epochs": 7}, "crash_at": 30000}]}

quality = scale * exp(-distance / width) (`width` defaults to 1), distance = |log10(value/target)|
on magnitudes (log) or |value - target|; no `param`: quality = scale. Score at a fraction f of the
frames: rise: quality * f; plateau: quality * min(1, 4f); drop: quality * 2f up to f = 0.5, then 0;
plus Gaussian noise (std `noise`, seeded by train.seed). At the first point at or past `*_at`
frames: crash_at writes "error" to stderr and summary.json, exit 1; die_at SIGKILLs itself (no
summary); hang_at stops writing and ignores SIGTERM/SIGINT; nan_at writes NaN, status "diverged",
exit 1. exit_code exits at once with that code, writing nothing. hold_until (a path): the run
does not write its last point until that file exists (or it is asked to stop), so a test can
order trials by events instead of by seconds. time_jitter j: each run's seconds_per_point is
multiplied by a factor from U(1 - j, 1 + j), drawn from its train.seed (uneven trials).

Training state, as population-based training's segments use it: with train.save_state=true a
completed run writes state.pt (JSON here: its frames and `skill`, the score it reached without
noise); with train.resume_from=PATH it continues that state: points from the state's frames on,
the score `skill + quality * (frames - start) / horizon` ("rise" only; `horizon`, default
train.frames, is the frames a run from scratch needs to reach `quality`). train.schedule is checked
as train_one checks it (exit 2) and scored the same way, each step with its own values: a replayed
lineage reaches the very skill the lineage did. A missing state exits 2,
as train_one does. A completed run writes model.pt (the same JSON); mode=eval checkpoint=PATH prints its skill as
the metrics' score (JSON on stdout, as train_one's eval mode); mode=export checkpoint=PATH writes
policy.onnx and policy.ts.pt (copies of it) in run_dir.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from automl import reasons, tags
from automl.paths import RunPaths, atomic_write_text
from automl.search.trials.tfrecord import frame
from automl.summary import RunSummary, write_summary

DEFAULTS: dict[str, Any] = {
    "seconds_per_point": 0.02, "noise": 0.0, "curve": "rise", "score": {},
    "crash_at": None, "die_at": None, "hang_at": None, "nan_at": None, "exit_code": None,
    "hold_until": None, "horizon": None, "time_jitter": 0.0,
}
CURVES = {
    "rise": lambda f: f,
    "plateau": lambda f: min(1.0, 4.0 * f),
    "drop": lambda f: 2.0 * f if f <= 0.5 else 0.0,
}
stop_requested = threading.Event()


def parse_value(text: str) -> Any:
    """An override's value: int, float, bool, null, a [list] (as YAML), else the string itself."""
    lowered = {"true": True, "false": False, "null": None}
    if text.lower() in lowered:
        return lowered[text.lower()]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    # YAML only for lists: it would read `1e-05` as a string and `no` as False, unlike Hydra.
    return yaml.safe_load(text) if text.startswith("[") else text


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`key=value` (Hydra's `+`/`++`/`~` prefixes allowed) -> {dotted key: value}."""
    overrides = {}
    for arg in args:
        if arg.startswith("~"):  # Hydra's delete-a-key: nothing to delete here
            continue
        key, sep, value = arg.partition("=")
        if not sep:
            sys.exit(f"standin_worker: override {arg!r} is not key=value")
        overrides[key.lstrip("+")] = parse_value(value)
    return overrides


def load_behaviour(path: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Defaults, then the file's top-level keys, then every matching rule's keys."""
    raw = json.loads(Path(path).read_text()) if path else {}
    behaviour = {**DEFAULTS, **{k: v for k, v in raw.items() if k != "rules"}}
    for rule in raw.get("rules", []):
        when = rule.get("when", {})
        if all(overrides.get(key) == value for key, value in when.items()):
            behaviour.update({k: v for k, v in rule.items() if k != "when"})
    # A typo in a test's script must fail loudly, not run the default behaviour.
    if unknown := sorted(set(behaviour) - set(DEFAULTS)):
        sys.exit(f"standin_worker: unknown behaviour keys {unknown}; known: {sorted(DEFAULTS)}")
    if behaviour["curve"] not in CURVES:
        sys.exit(f"standin_worker: curve {behaviour['curve']!r} is not one of {sorted(CURVES)}")
    return behaviour


def quality(spec: dict[str, Any], overrides: dict[str, Any]) -> float:
    """Final score: `scale`, shrunk as the chosen parameter moves away from its target."""
    scale = float(spec.get("scale", 1.0))
    if not spec.get("param"):
        return scale
    if spec["param"] not in overrides:
        sys.exit(f"standin_worker: score.param {spec['param']} is not among the overrides")
    value, target = float(overrides[spec["param"]]), float(spec["target"])
    if spec.get("log", False):
        distance = abs(math.log10(abs(value) / abs(target)))
    else:
        distance = abs(value - target)
    return scale * math.exp(-distance / float(spec.get("width", 1.0)))


def metrics_for(score: float) -> dict[str, float]:
    """Task metrics consistent with a score (names as in conf/scoring and summary.json)."""
    success = min(max(score, 0.0), 1.0) if math.isfinite(score) else math.nan
    return {"success_rate": success, "termination_rate": 1.0 - success,
            "episode_length": 200.0 - 100.0 * success, "episode_reward_mean": 10.0 * score}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    """One protobuf field: its key, then (length-delimited, wire type 2) its length, then it."""
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def event_bytes(*, wall_time: float, step: int = 0, file_version: str | None = None,
                tag: str | None = None, value: float = 0.0) -> bytes:
    """A tensorboard `Event` serialised as protobuf does it (wall_time 1: double, step 2: int64,
    file_version 3: string, summary 5: Summary{value 1: Value{tag 1: string, simple_value 2:
    float}}), written by hand: protobuf's own classes cost 0.1 s of imports in every stand-in run.
    The orchestrator reads these with protobuf in every search test."""
    out = _field(1, 1, struct.pack("<d", wall_time))
    if step:  # proto3 leaves a zero out
        out += _field(2, 0, _varint(step))
    if file_version is not None:
        out += _field(3, 2, file_version.encode())
    if tag is not None:
        scalar = _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value))
        out += _field(5, 2, _field(1, 2, scalar))
    return out


class EventWriter:
    """One TensorBoard event file, laid out as TensorBoard's EventFileWriter lays it out (its file
    name, a version record first, each record framed as a TFRecord with masked CRC-32C), written
    and flushed synchronously. TensorBoard's own writer costs 0.4 s of imports per run (numpy and
    its TensorFlow stub), most of a stand-in run's start; the slow tests read real trainers'
    files, and tests/search/trials/test_tb_reader.py reads TensorBoard's own."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.0"
        self.file = (folder / name).open("ab")
        self.add_event(event_bytes(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def add_event(self, event: bytes) -> None:
        self.file.write(frame(event))

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def write_point(writer: EventWriter, frames: int, score: float,
                metrics: dict[str, float] | None = None) -> None:
    """One evaluation point, one event per tag (as torch's SummaryWriter.add_scalar), flushed."""
    metrics = metrics_for(score) if metrics is None else metrics
    values = {tags.SCORE: score, tags.SUCCESS_RATE: metrics["success_rate"],
              tags.TERMINATION_RATE: metrics["termination_rate"],
              tags.EPISODE_LENGTH: metrics["episode_length"],
              tags.EPISODE_REWARD_MEAN: metrics["episode_reward_mean"]}
    for tag, value in values.items():
        writer.add_event(event_bytes(wall_time=time.time(), step=frames, tag=tag, value=value))
    writer.flush()


def hang(frames: int) -> None:
    """A stuck trial: deaf to SIGTERM and SIGINT, so only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(f"standin_worker: hanging at {frames} frames", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


class Outcome(NamedTuple):
    """How the scripted run ended, for summary.json."""

    status: str
    score: float
    frames: int
    message: str = ""


def train(run: RunPaths, overrides: dict[str, Any], behaviour: dict[str, Any]) -> Outcome:
    """Write the scripted curve, point by point, until it ends, crashes, diverges or is stopped."""
    frames_total = int(overrides.get("train.frames", 100_000))
    every = int(overrides.get("train.eval_frequency", 10_000))
    rng = random.Random(int(overrides.get("train.seed", 42)))
    jitter = float(behaviour["time_jitter"])
    pause = behaviour["seconds_per_point"] * random.Random(
        f"jitter:{overrides.get('train.seed', 42)}").uniform(1.0 - jitter, 1.0 + jitter)
    final = quality(behaviour["score"], overrides)
    start, skill = resumed_state(overrides)
    horizon = float(behaviour["horizon"] or frames_total)
    scheduled = schedule_steps(overrides)
    steps = list(range((start // every + 1) * every, frames_total + 1, every))
    if not steps or steps[-1] != frames_total:
        steps.append(frames_total)
    writer = EventWriter(run.tb)
    score, reached = math.nan, start
    clean = skill
    try:
        for frames in steps:
            # Training time passes before each point; a stop request cuts it short.
            if stop_requested.wait(pause):
                return Outcome(reasons.STATUS_STOPPED, score, reached, "stop requested")
            if frames == steps[-1] and behaviour["hold_until"]:
                while not Path(behaviour["hold_until"]).exists():
                    if stop_requested.wait(0.05):
                        return Outcome(reasons.STATUS_STOPPED, score, reached, "stop requested")
            if (at := behaviour["hang_at"]) is not None and frames >= at:
                hang(frames)
            if (at := behaviour["die_at"]) is not None and frames >= at:
                os.kill(os.getpid(), signal.SIGKILL)  # like an OOM kill: no summary, no cleanup
            if (at := behaviour["crash_at"]) is not None and frames >= at:
                message = f"standin_worker: scripted crash at {frames} frames"
                print(f"Traceback (most recent call last):\nRuntimeError: {message}",
                      file=sys.stderr)
                return Outcome(reasons.STATUS_ERROR, math.nan, reached, message)
            if scheduled:  # train.schedule: each step's own values, from scratch
                score = sum(quality(behaviour["score"], {**overrides, **values})
                            * max(0, min(frames, until) - begin) / horizon
                            for begin, until, values in scheduled)
            elif start or behaviour["horizon"]:
                score = skill + final * (frames - start) / horizon
            else:
                score = final * CURVES[behaviour["curve"]](frames / frames_total)
            clean = score
            score += rng.gauss(0.0, behaviour["noise"]) if behaviour["noise"] else 0.0
            if (at := behaviour["nan_at"]) is not None and frames >= at:
                score = math.nan
            write_point(writer, frames, score)
            reached = frames
            if math.isnan(score):
                return Outcome(reasons.STATUS_DIVERGED, score, reached, "NaN score")
        # model.pt (the policy, for eval mode) always, as train_one; state.pt when asked.
        saved = (run.model, *([run.state] if overrides.get("train.save_state") is True else []))
        for path in saved:
            atomic_write_text(path, json.dumps({"frames": reached, "skill": clean}))
        return Outcome(reasons.STATUS_COMPLETED, score, reached)
    finally:
        writer.close()


def schedule_steps(overrides: dict[str, Any]) -> list[tuple[int, int, dict[str, Any]]]:
    """train.schedule as train_one reads it (its own check, exit 2 on a bad one): (from, until,
    values) per step; [] without one."""
    if not overrides.get("train.schedule"):
        return []
    from automl.config import load_run_config
    from automl.errors import ConfigError
    from automl.run.schedule import steps

    try:
        checked = steps(load_run_config([a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]))
    except ConfigError as err:
        print(f"standin_worker: error: {err.message}", file=sys.stderr)
        sys.exit(2)
    begins = [0, *(until for until, _ in checked[:-1])]
    return [(begin, until, values) for begin, (until, values) in zip(begins, checked, strict=True)]


def resumed_state(overrides: dict[str, Any]) -> tuple[int, float]:
    """(frames, skill) of the state train.resume_from names; (0, 0) from scratch; exit 2 when the
    file is missing."""
    path = overrides.get("train.resume_from")
    if not path:
        return 0, 0.0
    try:
        state = json.loads(Path(str(path)).read_text())
    except OSError as err:
        print(f"standin_worker: error: train.resume_from: {err}", file=sys.stderr)
        sys.exit(2)
    return int(state["frames"]), float(state["skill"])


def nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}, the shape of a resolved config.yaml."""
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def main() -> int:
    """Run the scripted trial; exit 0 (completed or stopped) or 1 (error, diverged)."""
    start = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--behaviour", help="JSON file scripting the run (see the module doc)")
    parser.add_argument("overrides", nargs="*", help="Hydra-style key=value overrides")
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    if overrides.get("mode") == "eval":  # the policy's skill, as train_one's eval prints metrics
        policy = json.loads(Path(str(overrides["checkpoint"])).read_text())
        print(json.dumps({**metrics_for(policy["skill"]), "score": policy["skill"],
                          "episodes": float(overrides.get("episodes", 100))}, indent=2))
        return 0
    if overrides.get("mode") == "export":  # as train_one's export: the files, then JSON on stdout
        checkpoint = Path(str(overrides["checkpoint"]))
        out = Path(str(overrides.get("run_dir") or checkpoint.parent))
        out.mkdir(parents=True, exist_ok=True)
        for name in ("policy.onnx", "policy.ts.pt"):  # the policy's JSON stands in for both
            atomic_write_text(out / name, checkpoint.read_text())
        print(json.dumps({"onnx": str(out / "policy.onnx"), "torchscript": str(out / "policy.ts.pt")}))
        return 0
    if "run_dir" not in overrides:
        sys.exit("standin_worker: run_dir=PATH is required")
    behaviour = load_behaviour(args.behaviour, overrides)
    if behaviour["exit_code"] is not None:  # a worker that fails before writing anything
        print(f"standin_worker: scripted exit {behaviour['exit_code']}", file=sys.stderr)
        return int(behaviour["exit_code"])
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    run = RunPaths(Path(str(overrides["run_dir"])))
    atomic_write_text(run.config, yaml.safe_dump(nest(overrides), sort_keys=True))
    end = train(run, overrides, behaviour)
    summary = RunSummary(
        status=end.status, score=end.score if math.isfinite(end.score) else None,
        frames=end.frames, wall_s=time.monotonic() - start,
        seed=int(overrides.get("train.seed", 42)), git_sha=None, message=end.message,
        metrics={k: v for k, v in metrics_for(end.score).items() if math.isfinite(v)})
    write_summary(summary, run.summary)  # atomic: the orchestrator may read it at any moment
    return 1 if end.status in (reasons.STATUS_ERROR, reasons.STATUS_DIVERGED) else 0


if __name__ == "__main__":
    sys.exit(main())
