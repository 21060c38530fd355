"""The built-in task: a two-wheeled robot on a tippy suspension drives to a goal, turns to the goal
heading and stops there. Pure torch, every environment stepped at once (CPU or CUDA).

The body pitches under forward acceleration and rolls under centripetal acceleration (v * yaw rate);
past `tip_limit` it falls and the episode ends (termination). An episode succeeds, and ends, once the
robot has held the goal pose (within tolerance of the goal position and heading, standing still) for
`hold_steps` steps in a row, so its length says how fast it got there; otherwise it runs to the time
limit. A success ends the episode as a truncation, not a termination: the robot could go on holding
the pose and earning its reward, so PPO bootstraps from the final state's value and the success end
changes nothing the policy optimises. At reset, episode starts are spread over the whole time limit
(as Isaac Lab's `init_at_random_ep_len` does) so that episode ends are spread evenly from the first
steps on; those first, shortened episodes are reported as WARMUP (eval mode skips them).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
import torch

from automl.envs.base import FELL, FINAL_DISTANCE, LENGTH, RETURN, SUCCESS, WARMUP, StepResult
from automl.envs.navigation_params import make_params

TERMS: tuple[str, ...] = (
    "position_tracking", "fine_position_tracking", "heading_tracking", "forward_velocity",
    "approach_scale", "arrival_bonus", "stop_scale", "zero_ang_bonus", "orientation", "lin_vel_z",
    "ang_vel_xy", "torques", "dof_vel", "dof_acc", "action_rate", "termination",
)
"""The 16 raw reward terms (the unified navigation search space's reward weights)."""

REFERENCE_SCALES: dict[str, float] = {
    "position_tracking": 2.0, "fine_position_tracking": 2.0, "heading_tracking": 1.0,
    "forward_velocity": 0.5, "approach_scale": 4.0, "arrival_bonus": 10.0, "stop_scale": 2.0,
    "zero_ang_bonus": 6.0, "orientation": -0.05, "lin_vel_z": -0.5, "ang_vel_xy": -0.05,
    "torques": -1e-5, "dof_vel": -5e-5, "dof_acc": -2.5e-7, "action_rate": -0.01,
    "termination": -200.0,
}
"""Reference weights (conf/reward/navigation.yaml): the `return` task metric uses these, whatever
weights the run trains with, so returns compare across trials."""

OBS_DIM = 15
ACT_DIM = 2


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    """Angles (radians) wrapped into [-pi, pi)."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


class NavigationEnv:
    """Batched navigation task implementing `automl.envs.base.BatchedEnv`."""

    reward_terms = TERMS
    episode_metrics = (SUCCESS, FELL, LENGTH, FINAL_DISTANCE, RETURN, WARMUP)

    def __init__(self, *, num_envs: int, device: torch.device | str = "cpu", seed: int = 0,
                 stage: int = 1, **overrides: Any) -> None:
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.p = make_params(stage, **overrides)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        n, dev = num_envs, self.device
        zeros = lambda *shape: torch.zeros(*shape, device=dev)  # noqa: E731
        # Pairs are stored channel-first, (2, num_envs): every row is contiguous, so per-pair
        # sums and the observation's concatenation are plain memory copies (CPU speed).
        self.pos, self.goal = zeros(2, n), zeros(2, n)
        self.yaw, self.goal_yaw = zeros(n), zeros(n)
        self.wheel_vel, self.last_action = zeros(2, n), zeros(2, n)
        self.tilt, self.tilt_rate = zeros(2, n), zeros(2, n)  # (pitch, roll)
        self.last_distance, self.arrived = zeros(n), torch.zeros(n, dtype=torch.bool, device=dev)
        self.steps = torch.zeros(n, dtype=torch.long, device=dev)
        self.held = torch.zeros(n, dtype=torch.long, device=dev)
        self.warmup = torch.zeros(n, dtype=torch.bool, device=dev)
        self.ret = zeros(n)
        self.ref_scales = torch.tensor([REFERENCE_SCALES[t] for t in TERMS], device=dev)

    # ----------------------------------------------------------------------------------------------
    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        u = torch.rand(n, generator=self.generator, device=self.device)
        return low + (high - low) * u

    def _reset_ids(self, ids: torch.Tensor) -> None:
        n = ids.numel()
        if n == 0:
            return
        self.yaw[ids] = self._uniform(n, -math.pi, math.pi)
        dist = self._uniform(n, *self.p.goal_distance)
        bearing = self._uniform(n, -math.pi, math.pi)
        self.goal[:, ids] = torch.stack((dist * torch.cos(bearing), dist * torch.sin(bearing)))
        self.goal_yaw[ids] = self._uniform(n, -math.pi, math.pi)
        for pair in (self.pos, self.wheel_vel, self.last_action, self.tilt, self.tilt_rate):
            pair.index_fill_(1, ids, 0.0)
        self.last_distance[ids] = dist
        self.arrived.index_fill_(0, ids, False)
        self.steps.index_fill_(0, ids, 0)
        self.held.index_fill_(0, ids, 0)
        self.warmup.index_fill_(0, ids, False)
        self.ret.index_fill_(0, ids, 0.0)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every environment (reseeded when `seed` is given; with `spread_starts`, starts spread over
        the time limit); returns (num_envs, 15) observations."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self._reset_ids(torch.arange(self.num_envs, device=self.device))
        if self.p.spread_starts:
            # Every step of the time limit equally likely: episode ends spread evenly from the start.
            offset = self._uniform(self.num_envs, 0.0, 1.0) * self.p.max_steps
            self.steps[:] = offset.long().clamp(max=self.p.max_steps - 1)
            self.warmup[:] = self.steps > 0
        return self._observe()

    def close(self) -> None:
        """Nothing to release: the task is plain tensors."""
        pass

    # ----------------------------------------------------------------------------------------------
    def _goal_frame(self, ids: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Goal offset in the body frame (2, n), distance, bearing error, final-heading error."""
        goal, pos, yaw, goal_yaw = self.goal, self.pos, self.yaw, self.goal_yaw
        if ids is not None:
            goal, pos, yaw, goal_yaw = goal[:, ids], pos[:, ids], yaw[ids], goal_yaw[ids]
        dx, dy = goal - pos
        cos, sin = torch.cos(yaw), torch.sin(yaw)
        local = torch.stack((cos * dx + sin * dy, cos * dy - sin * dx))
        distance = torch.sqrt(local.square().sum(0))  # vector_norm over dim 0 is slow on CPU
        bearing_err = torch.atan2(local[1], local[0])
        heading_err = wrap_angle(goal_yaw - yaw)
        return local, distance, bearing_err, heading_err

    def _body_velocity(self, wheel_vel: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        left, right = self.wheel_vel if wheel_vel is None else wheel_vel
        r = self.p.wheel_radius
        return r * 0.5 * (left + right), (r / self.p.track_width) * (right - left)

    def _observe(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        local, distance, _, heading_err = self._goal_frame(ids)
        wheel_vel = self.wheel_vel if ids is None else self.wheel_vel[:, ids]
        speed, yaw_rate = self._body_velocity(wheel_vel)
        return self._features(local, distance, heading_err, speed, yaw_rate, ids)

    def _features(self, local: torch.Tensor, distance: torch.Tensor, heading_err: torch.Tensor,
                  speed: torch.Tensor, yaw_rate: torch.Tensor, ids: torch.Tensor | None = None
                  ) -> torch.Tensor:
        """(n, 15): goal offset, distance, heading error (sin, cos), speed, yaw rate, tilt,
        tilt rate, wheel speeds, last action; scaled to about [-1, 1]."""
        state = (self.tilt, self.tilt_rate, self.wheel_vel, self.last_action)
        tilt, tilt_rate, wheel_vel, last_action = (
            state if ids is None else tuple(t[:, ids] for t in state))
        rows = torch.cat((
            local * 0.25, (distance * 0.25).unsqueeze(0),
            torch.stack((torch.sin(heading_err), torch.cos(heading_err), speed, yaw_rate * 0.25)),
            tilt / self.p.tip_limit, tilt_rate * 0.25, wheel_vel * 0.05, last_action,
        ))
        return rows.T.contiguous()

    def step(self, actions: torch.Tensor) -> StepResult:
        """Advance every environment one `dt`: wheels, pose and suspension; reward terms, episode ends
        and metrics; finished environments restart at once."""
        p = self.p
        action = actions.to(self.device, torch.float32).T.clamp(-1.0, 1.0).contiguous()
        torque = action * p.max_torque
        wheel_acc, speed, yaw_rate, lin_vel_z = self._advance(torque)

        local, distance, bearing_err, heading_err = self._goal_frame()
        fell, success, timeout = self._outcome(distance, heading_err, speed, yaw_rate)
        abs_heading_err = heading_err.abs()
        near = torch.exp(-distance / 0.5)
        first_arrival = (distance < p.arrival_radius) & ~self.arrived
        self.arrived |= first_arrival
        # Far from the goal the robot should face the goal; close to it, the goal heading.
        track_err = torch.where(distance < 0.5, abs_heading_err, bearing_err.abs())
        toward_goal = speed * torch.cos(bearing_err)
        aligned = torch.exp(-abs_heading_err / 0.3)

        dt = p.dt
        terms = {
            "position_tracking": torch.exp(-distance / 2.0) * dt,
            "fine_position_tracking": torch.exp(-distance / 0.25) * dt,
            "heading_tracking": torch.exp(-track_err / 0.5) * dt,
            "forward_velocity": toward_goal.clamp(-1.0, 1.0) * (1.0 - near) * dt,
            "approach_scale": self.last_distance - distance,
            "arrival_bonus": first_arrival.float(),
            "stop_scale": torch.exp(-speed.abs() / 0.1) * near * dt,
            # Still once aligned: turning towards the goal heading must not cost this bonus.
            "zero_ang_bonus": torch.exp(-yaw_rate.abs() / 0.2) * aligned * near * dt,
            "orientation": self.tilt.square().sum(0) * dt,
            "lin_vel_z": lin_vel_z.square() * dt,
            "ang_vel_xy": self.tilt_rate.square().sum(0) * dt,
            "torques": torque.square().sum(0) * dt,
            "dof_vel": self.wheel_vel.square().sum(0) * dt,
            "dof_acc": wheel_acc.square().sum(0) * dt,
            "action_rate": (action - self.last_action).square().sum(0),
            "termination": fell.float(),
        }
        self.last_distance = distance
        self.last_action = action
        self.ret += self.ref_scales @ torch.stack([terms[t] for t in TERMS])

        episode = {
            SUCCESS: success.float(), FELL: terms["termination"], LENGTH: self.steps.float(),
            # A copy: resetting finished envs below writes their new start into last_distance,
            # which is this very tensor.
            FINAL_DISTANCE: distance.clone(), RETURN: self.ret.clone(), WARMUP: self.warmup.float(),
        }
        final = self._features(local, distance, heading_err, speed, yaw_rate)
        truncated = timeout | success
        return StepResult(observations=self._restart(final, fell | truncated),
                          final_observations=final, terms=terms, terminated=fell,
                          truncated=truncated, episode=episode)

    def _advance(self, torque: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Integrate one `dt` of wheels, pose and suspension under `torque`; returns the wheel
        accelerations, the body's speed and yaw rate, and its vertical velocity."""
        p = self.p
        old_speed, _ = self._body_velocity()
        wheel_acc = torque / p.wheel_inertia - p.wheel_damping * self.wheel_vel
        self.wheel_vel = self.wheel_vel + wheel_acc * p.dt
        speed, yaw_rate = self._body_velocity()
        self.yaw = wrap_angle(self.yaw + yaw_rate * p.dt)
        step = speed * p.dt
        self.pos = self.pos + torch.stack((torch.cos(self.yaw) * step, torch.sin(self.yaw) * step))

        # Suspension: forward acceleration pitches the body, centripetal acceleration rolls it.
        forward_acc = (speed - old_speed) / p.dt
        drive = torch.stack((-forward_acc, speed * yaw_rate)) * (p.tilt_gain * p.suspension_stiffness)
        tilt_acc = drive - p.suspension_stiffness * self.tilt - p.suspension_damping * self.tilt_rate
        self.tilt_rate = self.tilt_rate + tilt_acc * p.dt
        self.tilt = self.tilt + self.tilt_rate * p.dt
        lin_vel_z = p.body_height * (torch.sin(self.tilt) * self.tilt_rate).sum(0)
        return wheel_acc, speed, yaw_rate, lin_vel_z

    def _outcome(self, distance: torch.Tensor, heading_err: torch.Tensor, speed: torch.Tensor,
                 yaw_rate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Count the step; (fell, succeeded: held the goal pose `hold_steps` steps, timed out)."""
        p = self.p
        self.steps += 1
        fell = (self.tilt.abs() > p.tip_limit).any(0)
        at_goal = ((distance < p.pos_tolerance) & (heading_err.abs() < p.heading_tolerance)
                   & (speed.abs() < p.speed_tolerance) & (yaw_rate.abs() < p.yaw_rate_tolerance))
        self.held = torch.where(at_goal, self.held + 1, 0)
        success = (self.held >= p.hold_steps) & ~fell
        return fell, success, (self.steps >= p.max_steps) & ~fell & ~success

    def _restart(self, final: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """`final` observations with finished environments reset and observed afresh."""
        if not bool(done.any()):
            return final
        ids = done.nonzero().squeeze(1)
        self._reset_ids(ids)
        observations = final.clone()
        observations[ids] = self._observe(ids)
        return observations
