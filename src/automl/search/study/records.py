"""What the study stores about each trial (Optuna user attributes) and the trial_final.csv columns.

The orchestrator writes these; reports and analysis read them. Optuna's own trial state follows the
stop reason: completed/plateau/drop -> COMPLETE (value = score); pruned/constraint -> PRUNED;
error/timeout, and budget (a cut, no verdict on the configuration) -> FAIL.
"""

from __future__ import annotations

from typing import Any

STOP_REASON = "stop_reason"
"""One of automl.reasons.ALL."""
FRAMES = "frames"
"""Frames the trial reached."""
WALL_S = "wall_s"
"""Seconds from launch to end."""
RUN_DIR = "run_dir"
"""The trial's run folder (trials/trial_NNNN), relative to the study folder."""
METRICS = "metrics"
"""Task metrics of the trial's last evaluation point (success_rate, episode_reward_mean, ...)."""
CONFIG_VALUES = "config_values"
"""Every config key the search set: sampled and fixed values, by config key."""
ERROR_TAIL = "error_tail"
"""Last lines of the trial's stderr when it failed."""
PHASE = "phase"
"""search / validation / final; `unused` for a trial given up because the study was full."""
PHASE_UNUSED = "unused"
PHASE_SEARCH = "search"
INTERRUPTED = "interrupted"
"""True when the orchestrator stopped (budget, Ctrl-C) before the trial could finish."""
RETRY_OF = "retry_of"
"""Number of the trial this one re-runs after an interruption or a dead orchestrator."""
RETRY_REASON = "retry_reason"
"""Why the trial this one re-runs ended without a result: its stop reason and the last line of
its error tail, e.g. "budget" or "error: its orchestrator (on HOST) stopped sending heartbeats"."""
CONFIRMS = "confirms"
"""Number of the trial whose configuration this one trains again on another seed (confirm.py)."""
CONFIRM_SEED = "confirm_seed"
"""The train.seed of a confirmation (confirm.py)."""

PHASE_PBT = "pbt"
"""The phase of a population-based training segment (automl.search.pbt)."""
MEMBER = "pbt_member"
"""The population member a segment trains (0 .. population - 1)."""
GENERATION = "pbt_generation"
"""The segment's place in its member's training: 0 trains from scratch, g continues generation g - 1."""
PARENT = "pbt_parent"
"""Number of the trial whose state.pt the segment continues (-1: from scratch): its member's
previous segment, or after an exploit step the donor's."""
DONOR = "pbt_donor"
"""The member whose state and values the segment took in an exploit step (absent: its own)."""
EXPLOIT = "pbt_exploit"
"""The exploit step that replaced the member: {donor_score, replaced_score, margin}."""
FRAMES_START = "pbt_frames_start"
"""Frames the segment starts at (its parent's end)."""
FRAMES_END = "pbt_frames_end"
"""Frames the segment trains up to (train.frames of the run)."""
SEGMENT_SEED = "pbt_seed"
"""The segment's train.seed."""
COMPARED = "pbt_compared"
"""The results its decision ranked: {member: generation} (absent in generation 0)."""
PBT_ATTRS = (MEMBER, GENERATION, PARENT, DONOR, EXPLOIT, FRAMES_START, FRAMES_END, SEGMENT_SEED,
             COMPARED)

QUEUED_ATTRS = (RETRY_OF, RETRY_REASON, "prior", CONFIRMS, CONFIRM_SEED, *PBT_ATTRS)
"""What a queued configuration says of itself; a trial that runs it again keeps them."""
OWNER = "orchestrator"
"""Who runs the trial, one attribute (one write): {host, boot_id, pid_namespace, pid, start}
(the keys below); automl.search.study.recovery tells from it whether that orchestrator still runs."""
HOST = "host"
PID = "pid"
"""Studies of earlier versions keep `host` and `orchestrator_pid` as attributes of their own."""
LEGACY_PID = "orchestrator_pid"
PROCESS_START = "orchestrator_start"
"""The orchestrator process's start time (clock ticks since boot): with the pid, it tells the
orchestrator from a later process that reused its pid."""
BOOT_ID = "boot_id"
"""The kernel's boot id when the trial started: after a reboot no earlier orchestrator runs."""
PID_NAMESPACE = "pid_namespace"
"""The orchestrator's pid namespace: a pid of another container is not looked up here.
Host, boot id, pid namespace, pid and start time name the orchestrator running a trial
(automl.search.study.recovery)."""

SEARCH_SPACE_TEXT = "search_space_yaml"
"""Study attribute: the search-space file's text, for machines that join the study (--resume)."""
STUDY_OVERRIDES = "overrides"
"""Study attribute: the Hydra overrides the study started with; --resume on any machine trains
with them (automl.search.study.resume)."""
STUDY_CONFIRM_SEEDS = "confirm_seeds"
"""Study attribute: --confirm-seeds of the study (automl.search.study.confirm), kept on --resume."""
STUDY_HP_TRIALS = "hp_trials"
"""Study attribute: the --hp-trials its latest session ran with; a resume without the flag keeps
it (meta.yaml says the same where the study's folder is; a machine joining from a folder of its
own reads it here)."""
SEARCH_METHOD = "search_method"
"""Study attribute: `pbt` for a population, `optuna` for the Optuna loop's methods (a study of an
earlier version has none: it is `pbt` if it stores a PBT plan); --resume must keep it."""
PBT_PLAN = "pbt_plan"
"""Study attribute: the population-based training plan (automl.search.pbt.plan), which every
machine and every --resume of the study follows."""
PLAN_INPUTS = "pruning_plan_inputs"
"""Study attribute: {trials, grace_frames, settled}, what the study's pruning plan was sized to
(--hp-trials or the budget, and grace) and whether it was settled on the budget yet; --resume on
any machine keeps a settled plan (automl.search.optuna_loop.sizing)."""

TRIAL_FINAL_COLUMNS = ("trial", "frames", "score", "stop_reason", "wall_s")
"""Leading columns of trial_final.csv; the searched parameters and `error_tail` follow."""


def in_search(trial: Any) -> bool:
    """Whether `trial` (an Optuna trial, frozen or not) belongs to the search phase (the phase
    of a trial that says none)."""
    return bool(trial.user_attrs.get(PHASE, PHASE_SEARCH) == PHASE_SEARCH)


def in_pbt(trial: Any) -> bool:
    """Whether `trial` is a segment of population-based training."""
    return bool(trial.user_attrs.get(PHASE) == PHASE_PBT)


def retried(trial: Any) -> bool:
    """Whether `trial` runs again when it ends without a result of its own (a dead orchestrator,
    an interruption): a search trial or a population-based training segment."""
    return in_search(trial) or in_pbt(trial)
