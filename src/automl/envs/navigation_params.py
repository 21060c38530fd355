"""The navigation task's parameters and stage presets: plain data, importable without torch (the
search sizes its pruner's first rung from the time limit)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class NavigationParams:
    """Physical and task parameters; `stage` picks a preset, any field can be overridden."""

    goal_distance: tuple[float, float] = (1.0, 4.0)
    """Range of the goal's distance from the start, metres."""
    max_steps: int = 400
    """Time limit in control steps."""
    dt: float = 0.05
    """Control period, seconds."""
    tip_limit: float = 0.3
    """Pitch or roll (rad) past which the body falls."""
    tilt_gain: float = 0.1
    """Tilt (rad) per m/s^2 of acceleration at rest: how easily the body tips."""
    pos_tolerance: float = 0.3
    """Success: distance to the goal below this, metres."""
    heading_tolerance: float = 0.3
    """Success: heading error below this, rad."""
    speed_tolerance: float = 0.15
    """Success: |forward speed| below this, m/s."""
    yaw_rate_tolerance: float = 0.3
    """Success: |yaw rate| below this, rad/s."""
    hold_steps: int = 10
    """Success: the goal pose held this many consecutive steps ends the episode as a success."""
    spread_starts: bool = True
    """At reset, start each environment at a random step of its time limit (first episode shortened,
    reported as WARMUP) so episode ends are spread evenly over time."""
    arrival_radius: float = 0.5
    """The arrival bonus is paid once per episode on first coming this close, metres."""
    max_torque: float = 10.0
    """Wheel motor torque at action 1.0, N m."""
    wheel_radius: float = 0.1
    track_width: float = 0.5
    wheel_inertia: float = 0.25
    wheel_damping: float = 2.0
    suspension_stiffness: float = 60.0
    suspension_damping: float = 6.0
    body_height: float = 0.3


STAGES: dict[int, NavigationParams] = {
    1: NavigationParams(),
    2: NavigationParams(goal_distance=(2.0, 7.0), max_steps=500, tip_limit=0.28, tilt_gain=0.11,
                        pos_tolerance=0.2, heading_tolerance=0.2, speed_tolerance=0.1,
                        yaw_rate_tolerance=0.2),
}


def make_params(stage: int = 1, **overrides: Any) -> NavigationParams:
    """A stage preset with field overrides (lists become tuples)."""
    if stage not in STAGES:
        raise ValueError(f"The value of `stage` is {stage}, but must be one of {sorted(STAGES)}")
    known = {f.name for f in fields(NavigationParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"Unknown navigation parameter(s) {unknown}; known: {sorted(known)}")
    fixed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(STAGES[stage], **fixed)
