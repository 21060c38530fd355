"""What a population hands back: first the winner's trained policy (pbt/model.pt, evaluated on fresh
episodes, exported as ONNX and TorchScript beside it), then its hyperparameter schedule, which
belongs to the lineage's weights and is only a hypothesis until a stage replays it from scratch next
to the starting configuration (stages/pbt.py: run_pbt_validation). A search-mode run says which of
the two it hands back, and why; it never calls the schedule the best configuration.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import yaml

from automl import paths
from automl.analysis.pbt import PbtView, pbt_dir
from automl.analysis.yaml_style import dump_yaml
from automl.paths import atomic_write_text, trial_name
from automl.search.pbt.loop import SEGMENT_KEYS
from automl.search.pbt.population import Segment
from automl.search.space import override_key
from automl.search.trials.launcher import trial_env
from automl.stages.context import Stages

POLICY_FILES = ("model.pt", "policy.onnx", "policy.ts.pt")
"""The winner's policy in pbt/: the checkpoint, and its exports."""


def _run_on_policy(st: Stages, view: PbtView, what: str, args: list[str], *,
                   deadline: float) -> tuple[Segment, dict[str, Any]] | None:
    """Run the trial command on the winner's final policy (its last segment's model.pt) with
    `args` before the deadline; the winner and the JSON it printed, or None (and a stage note on
    why, naming `what` it was to do)."""
    winner = view.winner()
    model = st.paths.trial_run(winner.number).model if winner is not None else None
    if winner is None or model is None or not model.exists():
        return None
    left = deadline - time.monotonic()
    if left < 10:
        st.note(f"the final policy was not {what}: the budget is spent")
        return None
    slot = st.slots_of(ran_with(st, view, winner))[0]
    command = [*st.worker(), *args, f"checkpoint={model}", f"train.threads={slot.threads}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=trial_env(slot),
                              cwd=paths.work_dir(), timeout=left, check=False)
    except subprocess.TimeoutExpired:
        st.note(f"the final policy was not {what}: it timed out")
        return None
    start = done.stdout.find("{")
    try:
        out = json.loads(done.stdout[start:]) if done.returncode == 0 and start >= 0 else None
    except ValueError:
        out = None
    if not isinstance(out, dict):
        st.note(f"the final policy was not {what} (exit {done.returncode}): "
                f"{done.stderr.strip()[-300:]}")
        return None
    return winner, out


def ran_with(st: Stages, view: PbtView, segment: Segment) -> list[str]:
    """The overrides a segment was launched with: its config file, else (it ran on another
    machine, whose study folder this is not) rebuilt as that machine's loop built them."""
    try:
        return list(st.trial_file(segment.number)["base_overrides"])
    except (OSError, ValueError, KeyError):
        return [*view.space.fixed_overrides(), *view.space.overrides(segment.values),
                *st.user_overrides(trial_name(segment.number))]


def evaluate_final_policy(st: Stages, view: PbtView, *, seed: int, deadline: float) -> dict[str, Any] | None:
    """The winner's final policy on fresh episodes (train_one's eval mode, the member's own env
    settings), before the deadline: pbt/final_policy.yaml and a stage note; None where there is
    no policy, no time left, or it cannot run."""
    winner = view.winner()
    if winner is None:
        return None
    base = [o for o in ran_with(st, view, winner) if override_key(o) not in SEGMENT_KEYS]
    ran = _run_on_policy(st, view, "evaluated", [*base, "mode=eval", f"train.seed={seed}"],
                         deadline=deadline)
    if ran is None:
        return None
    metrics = ran[1]
    record = {"member": winner.member, "trial": winner.number, "frames": winner.reached,
              "seed": seed, **metrics}
    atomic_write_text(pbt_dir(st.paths) / "final_policy.yaml", dump_yaml(record))
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                      if isinstance(v, float) and k in ("score", "success_rate", "return",
                                                        "termination_rate"))
    st.note(f"the winner's final policy (member {winner.member}, {winner.reached:,} frames) on "
            f"fresh episodes (seed {seed}): {shown}")
    return record


def export_final_policy(st: Stages, view: PbtView, *, deadline: float) -> dict[str, Any] | None:
    """The winner's final policy, its normaliser inside, as pbt/policy.onnx and pbt/policy.ts.pt
    (train_one's export mode, each checked against torch); None where it cannot be done."""
    ran = _run_on_policy(st, view, "exported", ["mode=export", f"run_dir={pbt_dir(st.paths)}"],
                         deadline=deadline)
    return None if ran is None else ran[1]


def hand_back_policy(st: Stages, view: PbtView, *, seed: int, deadline: float) -> dict[str, Any] | None:
    """The population's first answer, the winner's trained policy: evaluated on fresh episodes
    (seed `seed`) and exported; the evaluation's record (None where there is no policy to hand
    back or it could not be evaluated)."""
    winner = view.winner()
    folder = pbt_dir(st.paths)
    try:  # an earlier session's (or mode's) answer for this very winner stands
        earlier = yaml.safe_load((folder / "final_policy.yaml").read_text())
    except (OSError, yaml.YAMLError):
        earlier = None
    same = isinstance(earlier, dict) and winner is not None and earlier.get("trial") == winner.number
    record = earlier if same else evaluate_final_policy(st, view, seed=seed, deadline=deadline)
    exported = all((folder / name).exists() for name in POLICY_FILES[1:])
    if record is not None and not (same and exported):  # never another winner's files
        for name in POLICY_FILES[1:]:
            (folder / name).unlink(missing_ok=True)
        export_final_policy(st, view, deadline=deadline)
    return record


def search_verdict(winner: Segment | None, policy: dict[str, Any] | None) -> str:
    """A search-mode population's result line: which of its two answers it hands back, and why."""
    if winner is None:
        return "no complete generation has a member with a score"
    found = f"member {winner.member}, score {winner.score:.4g} at {winner.reached:,} frames"
    schedule = ("its schedule (pbt/schedule.yaml) belongs to the lineage's weights and is not "
                "validated: `--mode validate` replays it from scratch next to the start")
    if policy is None:
        return f"the population's winner, {found}; its policy could not be evaluated, and {schedule}"
    score = policy.get("score")
    shown = f"{score:.4g}" if isinstance(score, float) else "no score"
    return (f"the winner's trained policy, pbt/model.pt ({found}; on fresh episodes {shown}; also "
            f"pbt/policy.onnx and pbt/policy.ts.pt), handed back first: it is what the population "
            f"trained, while {schedule}")
