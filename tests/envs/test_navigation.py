"""The built-in navigation task: shapes, device, determinism, its 16 reward terms, falls and success."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

from automl.envs.base import (
    FELL,
    FINAL_DISTANCE,
    LENGTH,
    RETURN,
    SUCCESS,
    WARMUP,
    BatchedEnv,
    StepResult,
)
from automl.envs.navigation import OBS_DIM, REFERENCE_SCALES, TERMS, NavigationEnv
from automl.envs.navigation_expert import DISTANCE, Driver
from automl.envs.navigation_params import make_params
from automl.run.train import shaped_reward

CPU = torch.device("cpu")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]
EPISODE_KEYS = {SUCCESS, FELL, LENGTH, FINAL_DISTANCE, RETURN, WARMUP}

# Observation layout (NavigationEnv._features), for reset checks.
TILT, WHEEL_VEL = slice(7, 9), slice(11, 13)


def random_actions(generator: torch.Generator, num_envs: int) -> torch.Tensor:
    return torch.rand(num_envs, 2, generator=generator) * 2.0 - 1.0


@dataclass
class Rollout:
    """What a random policy saw: each term's range, finished episodes and their outcomes."""

    term_min: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TERMS, math.inf))
    term_max: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TERMS, -math.inf))
    episodes: int = 0
    successes: float = 0.0
    falls: float = 0.0


@pytest.fixture(scope="module")
def random_rollout() -> Rollout:
    """256 envs x 600 steps of uniform random actions in [-1, 1]."""
    env = NavigationEnv(num_envs=256, device=CPU, seed=0)
    generator = torch.Generator().manual_seed(1)
    env.reset(seed=0)
    out = Rollout()
    for _ in range(600):
        result = env.step(random_actions(generator, env.num_envs))
        for term, value in result.terms.items():
            out.term_min[term] = min(out.term_min[term], float(value.min()))
            out.term_max[term] = max(out.term_max[term], float(value.max()))
        done = (result.terminated | result.truncated).float()
        out.episodes += int(done.sum())
        out.successes += float((result.episode[SUCCESS] * done).sum())
        out.falls += float((result.episode[FELL] * done).sum())
    return out


def test_spaces_and_terms() -> None:
    env = NavigationEnv(num_envs=4, device=CPU, seed=0)
    assert isinstance(env, BatchedEnv)
    assert env.observation_space.shape == (OBS_DIM,) == (15,)
    assert env.action_space.shape == (2,)
    assert float(env.action_space.low.min()) == -1.0 and float(env.action_space.high.max()) == 1.0
    assert env.reward_terms == TERMS and len(set(TERMS)) == 16
    assert tuple(REFERENCE_SCALES) == TERMS


@pytest.mark.parametrize("device", DEVICES)
def test_reset_and_step_shapes_dtypes_device(device: str) -> None:
    n = 8
    env = NavigationEnv(num_envs=n, device=device, seed=0)
    dev = torch.device(device)
    obs = env.reset(seed=0)
    assert obs.shape == (n, OBS_DIM) and obs.dtype == torch.float32 and obs.device.type == dev.type
    for _ in range(3):
        result = env.step(torch.zeros(n, 2, device=dev))
        assert isinstance(result, StepResult)
        assert result.observations.shape == (n, OBS_DIM)
        assert result.observations.dtype == torch.float32
        assert bool(torch.isfinite(result.observations).all())
        assert tuple(result.terms) == TERMS
        assert set(result.episode) == EPISODE_KEYS
        for value in (*result.terms.values(), *result.episode.values()):
            assert value.shape == (n,) and value.dtype == torch.float32
            assert value.device.type == dev.type
        for flag in (result.terminated, result.truncated):
            assert flag.shape == (n,) and flag.dtype == torch.bool and flag.device.type == dev.type
    env.close()


def rollout_trace(env: NavigationEnv, seed: int, steps: int) -> list[torch.Tensor]:
    """Everything the env returns over `steps` seeded random steps, flattened to tensors."""
    generator = torch.Generator().manual_seed(seed)
    trace = [env.reset(seed=seed)]
    for _ in range(steps):
        result = env.step(random_actions(generator, env.num_envs))
        trace += [result.observations, result.terminated, result.truncated,
                  *result.terms.values(), *result.episode.values()]
    return trace


def test_same_seed_same_rollout() -> None:
    steps = 300  # past the first time limits and falls: resets draw from the generator too
    first = rollout_trace(NavigationEnv(num_envs=64, device=CPU, seed=7), seed=7, steps=steps)
    again = rollout_trace(NavigationEnv(num_envs=64, device=CPU, seed=7), seed=7, steps=steps)
    assert len(first) == len(again)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    # The rollout did cover resets (terminated / truncated flags set somewhere).
    dones = [t for t in first[1:] if t.dtype == torch.bool]
    assert any(bool(d.any()) for d in dones)

    # reset(seed=...) restarts the same env's streams: a used env repeats the rollout.
    env = NavigationEnv(num_envs=64, device=CPU, seed=0)
    rollout_trace(env, seed=3, steps=20)
    for a, b in zip(first, rollout_trace(env, seed=7, steps=steps), strict=True):
        assert torch.equal(a, b)


def test_another_seed_another_rollout() -> None:
    a = NavigationEnv(num_envs=64, device=CPU, seed=7).reset(seed=7)
    b = NavigationEnv(num_envs=64, device=CPU, seed=8).reset(seed=8)
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("term", TERMS)
def test_every_term_varies_under_a_random_policy(term: str, random_rollout: Rollout) -> None:
    low, high = random_rollout.term_min[term], random_rollout.term_max[term]
    assert math.isfinite(low) and math.isfinite(high)
    assert high > low, f"reward term {term} is constant ({low}) over 256 envs x 600 random steps"


def test_reward_is_the_weighted_sum_of_terms() -> None:
    env = NavigationEnv(num_envs=32, device=CPU, seed=0)
    generator = torch.Generator().manual_seed(0)
    weights = {t: float(torch.randn((), generator=generator)) for t in TERMS}
    env.reset(seed=0)
    for _ in range(50):
        terms = env.step(random_actions(generator, env.num_envs)).terms
        reward = shaped_reward(terms, weights, num_envs=env.num_envs, device=env.device)
        expected = sum(weights[t] * terms[t].double() for t in TERMS)
        assert reward.shape == (env.num_envs,) and reward.dtype == torch.float32
        assert torch.allclose(reward.double(), expected, rtol=1e-5, atol=1e-5)
        # One weighted term: exactly that term, scaled; the others do not leak in.
        assert torch.equal(shaped_reward(terms, {"termination": -200.0}, num_envs=env.num_envs,
                                         device=env.device), -200.0 * terms["termination"])
    nothing = shaped_reward(terms, {}, num_envs=env.num_envs, device=env.device)
    assert torch.equal(nothing, torch.zeros(env.num_envs))


def test_episode_return_is_the_reward_under_reference_weights() -> None:
    # The `return` task metric is computed inside the env; summing the trainer's shaped reward
    # under the reference weights over each episode must give the same number.
    env = NavigationEnv(num_envs=64, device=CPU, seed=2)
    generator = torch.Generator().manual_seed(2)
    env.reset(seed=2)
    running = torch.zeros(env.num_envs)
    checked = 0
    for _ in range(450):
        result = env.step(random_actions(generator, env.num_envs))
        running += shaped_reward(result.terms, REFERENCE_SCALES, num_envs=env.num_envs,
                                 device=env.device)
        done = result.terminated | result.truncated
        if bool(done.any()):
            assert torch.allclose(result.episode[RETURN][done], running[done], rtol=1e-4, atol=1e-3)
            checked += int(done.sum())
            running[done] = 0.0
    assert checked >= 64  # every env finished at least one episode


def bang_bang(step: int, num_envs: int, period: int = 10) -> torch.Tensor:
    """Full torque forward, then full reverse, switching every `period` steps."""
    sign = 1.0 if (step // period) % 2 == 0 else -1.0
    return torch.full((num_envs, 2), sign)


def test_an_aggressive_policy_makes_the_body_fall() -> None:
    n = 64
    env = NavigationEnv(num_envs=n, device=CPU, seed=0)
    env.reset(seed=0)
    fell = torch.zeros(n, dtype=torch.bool)
    for step in range(40):
        result = env.step(bang_bang(step, n))
        terminated = result.terminated
        # A fall is a termination, its metric and its penalty term, all on the same step.
        assert torch.equal(result.episode[FELL], terminated.float())
        assert torch.equal(result.terms["termination"], terminated.float())
        assert not bool((terminated & result.truncated).any())
        assert bool((result.episode[SUCCESS][terminated] == 0.0).all())
        # A fallen env starts over at once: upright, wheels still.
        assert bool((result.observations[terminated][:, TILT] == 0.0).all())
        assert bool((result.observations[terminated][:, WHEEL_VEL] == 0.0).all())
        fell |= terminated
    assert bool(fell.all()), f"only {int(fell.sum())} of {n} bodies fell under full-torque bang-bang"


def test_a_random_policy_rarely_succeeds(random_rollout: Rollout) -> None:
    assert random_rollout.episodes >= 256  # every env finished at least one episode
    assert random_rollout.successes / random_rollout.episodes < 0.05


def test_a_careful_controller_succeeds() -> None:
    # The counterpart of the random-policy test: success is reachable, so "< 5%" above means
    # the random policy is bad at the task, not that the task cannot be solved.
    n = 128
    env = NavigationEnv(num_envs=n, device=CPU, seed=3)
    obs = env.reset(seed=3)
    driver = Driver(n)
    episodes = successes = falls = 0.0
    for _ in range(800):
        result = env.step(driver.act(obs))
        done = result.terminated | result.truncated
        driver.reset_where(done)
        counted = done & (result.episode[WARMUP] == 0)
        episodes += float(counted.sum())
        successes += float(result.episode[SUCCESS][counted].sum())
        falls += float(result.episode[FELL][counted].sum())
        # A success ends the episode before the time limit, as a truncation (PPO bootstraps it),
        # at the goal: its final distance is the one it ended at, not the next episode's start.
        won = done & (result.episode[SUCCESS] == 1.0)
        assert bool(result.truncated[won].all()) and not bool(result.terminated[won].any())
        assert bool((result.episode[FINAL_DISTANCE][won] < 0.3).all())
        obs = result.observations
    assert episodes >= n
    assert successes / episodes > 0.8, f"{successes:.0f} of {episodes:.0f} episodes succeeded"
    assert falls / episodes < 0.05


@pytest.mark.parametrize("kwargs, says", [
    ({"stage": 3}, "`stage` is 3"),
    ({"max_step": 10}, "Unknown navigation parameter(s) ['max_step']"),
])
def test_bad_task_parameters_are_refused(kwargs: dict, says: str) -> None:
    with pytest.raises(ValueError) as info:
        NavigationEnv(num_envs=2, device=CPU, seed=0, **kwargs)
    assert says in str(info.value)


def test_stage_two_is_harder_and_overrides_apply() -> None:
    one, two = make_params(1), make_params(2)
    assert two.goal_distance[1] > one.goal_distance[1] and two.pos_tolerance < one.pos_tolerance
    env = NavigationEnv(num_envs=4, device=CPU, seed=0, stage=2, max_steps=10, goal_distance=[2.0, 2.5])
    assert env.p.max_steps == 10 and env.p.goal_distance == (2.0, 2.5)
    obs = env.reset(seed=0)
    assert bool(((obs[:, DISTANCE] * 4.0 >= 2.0 - 1e-5) & (obs[:, DISTANCE] * 4.0 <= 2.5 + 1e-5)).all())


def test_episode_ends_are_spread_evenly_from_the_first_step() -> None:
    # Standing still never falls and never reaches a goal 1-4 m away: every episode ends at its time
    # limit, so the ends of the first episodes show how the starts were spread at reset.
    n, max_steps = 4000, 50
    env = NavigationEnv(num_envs=n, device=CPU, seed=5, max_steps=max_steps)
    env.reset(seed=5)
    ends, warmups = [], 0.0
    for _ in range(max_steps):
        result = env.step(torch.zeros(n, 2))
        done = result.terminated | result.truncated
        ends.append(int(done.sum()))
        warmups += float(result.episode[WARMUP][done].sum())
    assert sum(ends) == n  # each env ended exactly one episode within one time limit
    expected = n / max_steps
    assert all(0.6 * expected < e < 1.4 * expected for e in ends), ends
    # All of them but those that happened to start at step 0 were shortened: not counted.
    assert warmups > n * (1 - 3 / max_steps)
    # Their second episodes are whole ones.
    result = env.step(torch.zeros(n, 2))
    assert float(result.episode[WARMUP].sum()) == 0.0


def test_final_observations_are_the_finished_episodes_own() -> None:
    n, max_steps = 64, 20
    env = NavigationEnv(num_envs=n, device=CPU, seed=1, max_steps=max_steps, spread_starts=False)
    previous = env.reset(seed=1)
    for _ in range(max_steps - 1):
        result = env.step(torch.zeros(n, 2))
        assert torch.equal(result.final_observations, result.observations)
        previous = result.observations
    result = env.step(torch.zeros(n, 2))
    assert bool(result.truncated.all())
    # Standing still, nothing changes within an episode: the final observation is the one before,
    # while the returned observations are new episodes' (a new goal).
    assert torch.allclose(result.final_observations, previous)
    assert not torch.allclose(result.observations[:, :3], previous[:, :3])
