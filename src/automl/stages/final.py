"""The final run: the chosen configuration (`trial_NNNN` or `baseline`) trained once more, for
train.frames x --final-frames-multiplier, when the time left allows it."""

from __future__ import annotations

import shlex
import time

from automl.config import load_run_config
from automl.errors import Interrupted
from automl.paths import RunPaths
from automl.search.study.budget import seconds_for
from automl.search.trials.runner import INTERRUPTED, Job, JobResult, run_jobs
from automl.stages.context import Stages
from automl.summary import load_summary


def _validated_seconds(st: Stages, config_id: str, frames: int) -> float | None:
    """Expected time of `frames` at the rate the configuration's own validation runs trained."""
    estimates = []
    for run_dir in sorted(st.paths.validation_dir.glob(f"{config_id}_seed*")):
        summary = load_summary(RunPaths(run_dir).summary)
        if summary is not None and summary.frames > 0:
            estimates.append(seconds_for(frames, trained_frames=summary.frames, wall_s=summary.wall_s))
    known = [e for e in estimates if e is not None]
    return max(known) if known else None


def run_final(st: Stages, config_id: str, *, multiplier: float, deadline: float) -> JobResult | None:
    """Train the chosen configuration once more, frames x `multiplier`; None when it does not fit
    in the time left. Ctrl-C / SIGTERM: Interrupted, with the command that runs it again."""
    st.log.phase = "final"
    config = st.config_record(config_id)
    frames = load_run_config(config["base_overrides"]).train.frames
    final_frames = int(frames * multiplier)
    duration = _validated_seconds(st, config_id, final_frames)
    trial = config.get("trial", config.get("source_trial"))
    if duration is None and isinstance(trial, int):
        chosen = next((t for t in st.study.get_trials(deepcopy=False) if t.number == trial), None)
        duration = None if chosen is None else st.rerun_seconds(chosen, multiplier=multiplier)
    left = deadline - time.monotonic()
    if duration is not None and duration > left:
        st.note(f"final run skipped: budget too small (needs ~{duration:.0f} s at the rate "
                f"{config_id} trained, {max(left, 0):.0f} s left)")
        return None
    run_dir = st.paths.root / "final"
    job = Job(name="final", overrides=[*config["base_overrides"], f"train.frames={final_frames}"],
              run_dir=run_dir)
    print(f"automl: final run of {config_id}'s configuration, {final_frames:,} frames")
    results, cut = run_jobs([job], worker=st.worker(), slots=st.slots_of(config["base_overrides"])[:1],
                            deadline=deadline, forkserver=st.forkserver)
    result = results[0]
    if cut == INTERRUPTED:
        st.note(f"final run interrupted at {result.frames:,} of {final_frames:,} frames")
        st.log.phase = "interrupted"
        st.log.write(st.paths)
        again = shlex.join(["uv", "run", "train_one.py", *job.overrides, f"run_dir={run_dir}"])
        raise Interrupted("final run", again)
    st.note(f"final run: {result.reason}, score {result.score:.4g}, checkpoint {run_dir / 'model.pt'}")
    return result
