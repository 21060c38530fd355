"""A hand-written controller for the navigation task, from observations alone: face the goal,
drive there with limited acceleration (the body tips), stop, turn to the goal heading.

It is the task's fixed reference policy: tests use it to show the task is solvable, and
bench/score_stability.py uses it (with action noise) as a policy whose success and fall rates do
not change, to check that the score measures the policy and not the clock.
"""

from __future__ import annotations

import torch

from automl.envs.navigation_params import NavigationParams, make_params

# Observation layout (NavigationEnv._features).
GOAL_X, GOAL_Y, DISTANCE, SIN_HEADING_ERR, COS_HEADING_ERR = 0, 1, 2, 3, 4
WHEEL_VEL = slice(11, 13)


class Driver:
    """Stateful over a batch of environments: it ramps its speed command, reset where an episode
    ends (`reset_where`)."""

    def __init__(self, num_envs: int, params: NavigationParams | None = None) -> None:
        self.p = params or make_params()
        self.speed_cmd = torch.zeros(num_envs)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """(num_envs, 2) wheel torques in [-1, 1] for (num_envs, 15) observations."""
        p = self.p
        goal_x, goal_y, distance = obs[:, GOAL_X] * 4.0, obs[:, GOAL_Y] * 4.0, obs[:, DISTANCE] * 4.0
        heading_err = torch.atan2(obs[:, SIN_HEADING_ERR], obs[:, COS_HEADING_ERR])
        wheel_vel = obs[:, WHEEL_VEL] * 20.0
        bearing = torch.atan2(goal_y, goal_x)
        far = distance > 0.1
        speed_goal = torch.where(
            far, (0.8 * distance).clamp(max=0.6) * bearing.cos().clamp(min=0.0) ** 4, 0.0)
        yaw_rate = torch.where(far, (2.0 * bearing).clamp(-1.5, 1.5),
                               (2.0 * heading_err).clamp(-1.0, 1.0))
        self.speed_cmd = self.speed_cmd + (speed_goal - self.speed_cmd).clamp(-0.05, 0.05)
        half_track = yaw_rate * p.track_width / 2.0
        target = torch.stack((self.speed_cmd - half_track, self.speed_cmd + half_track), 1)
        target = target / p.wheel_radius
        # Feed-forward against wheel damping plus a proportional term on the wheel speed error.
        feed_forward = p.wheel_damping * p.wheel_inertia / p.max_torque
        return (feed_forward * target + 0.1 * (target - wheel_vel)).clamp(-1.0, 1.0)

    def reset_where(self, done: torch.Tensor) -> None:
        """Zero the ramped speed command of the environments whose episode just ended (`done`)."""
        self.speed_cmd = torch.where(done.cpu(), 0.0, self.speed_cmd)
