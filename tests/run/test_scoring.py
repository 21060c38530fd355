"""The score against numbers worked out by hand: the weighted sum, the recent-episodes window, warm-up
episodes, eval's first-episode count; a policy-independent task scored at 2048 environments; eval
mode on that task; bad scoring input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scripted_env import Coin

from automl import paths
from automl.envs.base import FELL, LENGTH, SUCCESS, WARMUP
from automl.errors import EXIT_OK, ConfigError
from automl.run.episodes import EPISODES, SHAPED_RETURN, RecentEpisodes, episodes_per_env
from automl.run.scoring import check_reported, point_score

CPU = torch.device("cpu")
NAV = {"success_rate": 1.0, "termination_rate": -0.5, "final_distance": -0.1}


@pytest.mark.parametrize("metrics, weights, expected", [
    ({"success_rate": 0.8, "termination_rate": 0.1, "final_distance": 0.5}, NAV, 0.7),
    ({"success_rate": 0.0, "termination_rate": 1.0, "final_distance": 4.0}, NAV, -0.9),
    ({"return": -130.5, "episode_length": 200.0}, {"return": 1.0}, -130.5),
    ({"return": 10.0, "episode_length": 50.0}, {"return": 2.0, "episode_length": -0.1}, 15.0),
    ({"success_rate": 0.5}, NAV, math.nan),  # a weighted metric is missing
    ({"success_rate": math.nan, "termination_rate": 0.0, "final_distance": 0.0}, NAV, math.nan),
])
def test_point_score_by_hand(metrics: dict, weights: dict, expected: float) -> None:
    got = point_score(metrics, weights)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


def step(window: RecentEpisodes, done: list[int], success: list[float], warmup: list[float],
         reward: list[float]) -> None:
    n = len(done)
    episode = {SUCCESS: torch.tensor(success), FELL: 1.0 - torch.tensor(success),
               LENGTH: torch.full((n,), 7.0), WARMUP: torch.tensor(warmup)}
    window.add(torch.tensor(reward), torch.tensor(done, dtype=torch.bool), episode)


def test_recent_episodes_by_hand() -> None:
    window = RecentEpisodes(num_envs=3, device=CPU, episode_metrics=(SUCCESS, FELL, LENGTH, WARMUP),
                            per_env=2, count_warmup=False)
    assert window.metrics() == {EPISODES: 0.0}
    step(window, [0, 0, 0], [0, 0, 0], [0, 0, 0], [1.0, 2.0, 3.0])
    step(window, [1, 0, 1], [1, 0, 0], [0, 0, 1], [1.0, 2.0, 3.0])  # env 2's is a warm-up: not counted
    # env 0: one success with shaped return 2.
    assert window.metrics() == pytest.approx({"success_rate": 1.0, "termination_rate": 0.0,
                                              "episode_length": 7.0, SHAPED_RETURN: 2.0, EPISODES: 1})
    step(window, [1, 1, 1], [0, 1, 0], [0, 0, 0], [5.0, 1.0, 1.0])
    # env 0: success (2), fall (5); env 1: success (2+2+1=5); env 2: fall (1; its warm-up return is gone).
    assert window.metrics() == pytest.approx({"success_rate": 2 / 4, "termination_rate": 2 / 4,
                                              "episode_length": 7.0, SHAPED_RETURN: 13 / 4,
                                              EPISODES: 4})
    step(window, [1, 0, 0], [1, 0, 0], [0, 0, 0], [0.5, 0.0, 0.0])
    # env 0 keeps its last two: fall (5), success (0.5); its first success left the window.
    assert window.metrics() == pytest.approx({"success_rate": 2 / 4, "termination_rate": 2 / 4,
                                              "episode_length": 7.0, SHAPED_RETURN: 11.5 / 4,
                                              EPISODES: 4})


def test_first_only_keeps_each_environments_first_episode() -> None:
    window = RecentEpisodes(num_envs=2, device=CPU, episode_metrics=(SUCCESS, FELL, LENGTH, WARMUP),
                            first_only=True, count_warmup=False)
    step(window, [1, 1], [0, 1], [1, 0], [0.0, 0.0])  # env 0: warm-up, env 1: success
    assert not window.complete()
    step(window, [1, 1], [0, 0], [0, 0], [0.0, 0.0])  # env 0: fall; env 1's second is ignored
    assert window.complete()
    assert window.metrics()["success_rate"] == 0.5 and window.metrics()[EPISODES] == 2


def test_training_counts_warm_up_episodes() -> None:
    window = RecentEpisodes(num_envs=2, device=CPU, episode_metrics=(SUCCESS, FELL, LENGTH, WARMUP))
    step(window, [1, 0], [1, 0], [1, 0], [3.0, 1.0])
    assert window.metrics() == pytest.approx({"success_rate": 1.0, "termination_rate": 0.0,
                                              "episode_length": 7.0, SHAPED_RETURN: 3.0, EPISODES: 1})


@pytest.mark.parametrize("min_episodes, num_envs, expected", [
    (500, 256, 2), (500, 2048, 1), (500, 8192, 1), (64, 16, 4), (1, 1, 1), (10, 3, 4)])
def test_episodes_per_env(min_episodes: int, num_envs: int, expected: int) -> None:
    assert episodes_per_env(min_episodes, num_envs) == expected


def test_a_policy_independent_task_scores_the_same_at_every_point_at_2048_envs() -> None:
    # 30% of episodes fall after 5 steps, 70% succeed after 40; starts spread over 40 steps. The
    # success rate is 0.7 at every point after one episode length, however the ends are phased;
    # an average over the episodes that ended since the last point would see mostly falls early on.
    n, every = 2048, 24  # points every 24 steps: 49,152 frames at 2048 envs
    env = Coin(num_envs=n, device=CPU, seed=3)
    window = RecentEpisodes(num_envs=n, device=CPU, episode_metrics=env.episode_metrics,
                            per_env=episodes_per_env(500, n))
    env.reset(seed=3)
    rates = []
    for t in range(1, 24 * 20 + 1):
        result = env.step(torch.zeros(n, 1))
        window.add(torch.zeros(n), result.terminated | result.truncated, result.episode)
        if t % every == 0 and t >= 2 * env.success_steps:
            rates.append(window.metrics()["success_rate"])
    assert len(rates) >= 15
    assert all(abs(rate - 0.7) < 0.05 for rate in rates), rates


def test_scoring_must_weight_what_the_env_reports() -> None:
    check_reported({"return": 1.0}, ("return", "length", "terminated"), env_name="cartpole")
    with pytest.raises(ConfigError) as info:
        check_reported({"success_rate": 1.0}, ("return", "length", "terminated"), env_name="cartpole")
    message = str(info.value)
    assert "`scoring.weights.success_rate`" in message
    assert "it reports: termination_rate, episode_length, return" in message


@pytest.mark.slow
def test_eval_mode_on_a_scripted_task_returns_its_true_rates(tmp_path: Path) -> None:
    # Falls end after 5 steps, successes after 40: counting the first N episodes to finish would
    # count falls three to eight times over. One episode per environment gives the true 30%.
    custom = ["env=custom", "env.factory=tests.scripted_env:make", "+reward.scales.alive=1.0",
              "env.device=cpu", "train.threads=1", "ppo.mini_batches=2"]
    env = {**os.environ, paths.LOG_ROOT_ENV: str(tmp_path / "log")}
    run = subprocess.run([sys.executable, "train_one.py", *custom, "env.num_envs=8", "train.frames=512",
                          "train.eval_frequency=256", f"run_dir={tmp_path / 'run'}"],
                         cwd=paths.repo_root(), env=env, capture_output=True, text=True, check=False)
    assert run.returncode == EXIT_OK, run.stderr
    process = subprocess.run([sys.executable, "train_one.py", *custom, "mode=eval", "episodes=4000",
                              f"checkpoint={tmp_path / 'run' / 'model.pt'}"],
                             cwd=paths.repo_root(), env=env, capture_output=True, text=True, check=False)
    assert process.returncode == EXIT_OK, process.stderr
    metrics = json.loads(process.stdout)
    assert metrics["episodes"] == 4000
    assert metrics["termination_rate"] == pytest.approx(0.3, abs=0.03)
    assert metrics["success_rate"] == pytest.approx(0.7, abs=0.03)
