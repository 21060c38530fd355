"""TensorBoard tags that cross the boundary between a trial and the orchestrator."""

from __future__ import annotations

SUCCESS_RATE = "Task / success_rate"
TERMINATION_RATE = "Task / termination_rate"
EPISODE_LENGTH = "Task / episode_length"
RETURN = "Task / return"
FINAL_DISTANCE = "Task / final_distance"
FORWARD_DISTANCE = "Task / forward_distance"
FORWARD_VELOCITY = "Task / forward_velocity"
SCORE = "Task / score"
"""The run's score (conf/scoring) at each evaluation point, over its most recent episodes."""
EPISODES = "Task / episodes"
"""How many finished episodes the point's task metrics and score rest on (0: none ended yet)."""
EPISODE_REWARD_MEAN = "Reward / episode_reward_mean"
"""Shaped episodic reward under the run's own weights: logged, never used as the score."""
REWARD_TERM_PREFIX = "Reward / "
FRAMES_PER_SECOND = "Stats / frames_per_second"

TASK_METRIC_TAGS: dict[str, str] = {
    "success_rate": SUCCESS_RATE,
    "termination_rate": TERMINATION_RATE,
    "episode_length": EPISODE_LENGTH,
    "return": RETURN,
    "final_distance": FINAL_DISTANCE,
    "forward_distance": FORWARD_DISTANCE,
    "forward_velocity": FORWARD_VELOCITY,
}
"""Task metric name (as used in conf/scoring and summary.json) -> TensorBoard tag."""


TERMINATION_CAUSE_PREFIX = "termination_rate/"
"""Task metric of one termination cause, `termination_rate/<term>` (Isaac Lab's termination terms)."""


def is_task_metric(name: str) -> bool:
    """A metric that no reward weight changes: a fixed task metric or a termination cause's rate."""
    return name in TASK_METRIC_TAGS or (name.startswith(TERMINATION_CAUSE_PREFIX)
                                        and len(name) > len(TERMINATION_CAUSE_PREFIX))


def task_metric_tag(name: str) -> str:
    """TensorBoard tag of a task metric: `Task / <name>`."""
    return TASK_METRIC_TAGS.get(name, f"Task / {name}")


def reward_term_tag(term: str) -> str:
    """Tag of one raw reward term's per-step mean, e.g. ``Reward / termination``."""
    return f"{REWARD_TERM_PREFIX}{term}"
