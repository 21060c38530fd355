"""A user's env factory: the example loads and steps; each bad `env.factory` is one ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from automl.envs.base import FELL, FINAL_DISTANCE, LENGTH, RETURN, SUCCESS, BatchedEnv
from automl.envs.custom import load_factory, make_custom_env
from automl.errors import ConfigError

CPU = torch.device("cpu")
TESTS = Path(__file__).resolve().parents[1]
EXAMPLE = "tests.custom_env_factory:make"  # the spec the example's docstring tells users to write


@pytest.fixture(autouse=True)
def _repo_root_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # As under `python train_one.py` from the repository root, whichever way pytest was started.
    monkeypatch.syspath_prepend(str(TESTS.parent))


def make_example(num_envs: int = 8, seed: int = 0, **params: Any) -> BatchedEnv:
    return make_custom_env(factory=EXAMPLE, num_envs=num_envs, device=CPU, seed=seed,
                           params=params)


def test_example_factory_loads_and_steps() -> None:
    env = make_example(num_envs=8, max_steps=10)
    assert isinstance(env, BatchedEnv)
    assert env.reward_terms == ("progress", "effort")
    obs = env.reset()
    assert obs.shape == (8, *env.observation_space.shape) and obs.dtype == torch.float32

    ended = torch.zeros(8, dtype=torch.bool)
    for _ in range(10):
        result = env.step(torch.zeros(8, 1))  # standing still: only the time limit ends it
        assert set(result.terms) == set(env.reward_terms)
        assert all(t.shape == (8,) and t.dtype == torch.float32 for t in result.terms.values())
        ended |= result.truncated
    # env.params reached the factory: max_steps=10 truncated every episode at step 10.
    assert ended.all()
    assert torch.all(result.episode[LENGTH] == 10.0)
    assert torch.all(result.episode[SUCCESS] == 0.0)
    env.close()


def first_episodes(env: BatchedEnv, direction: float, seed: int) -> dict[str, torch.Tensor]:
    """Push every point `direction` times towards 0 until each ends an episode; their metrics."""
    obs = env.reset(seed=seed)
    own_return = torch.zeros(env.num_envs)
    ended = torch.zeros(env.num_envs, dtype=torch.bool)
    metrics = {name: torch.zeros(env.num_envs) for name in (SUCCESS, FELL, FINAL_DISTANCE, RETURN)}
    metrics["own_return"] = torch.zeros(env.num_envs)
    for _ in range(40):
        result = env.step(-direction * torch.sign(obs[:, :1]))
        own_return += result.terms["progress"] - 0.01 * result.terms["effort"]
        new = (result.terminated | result.truncated) & ~ended
        for name in (SUCCESS, FELL, FINAL_DISTANCE, RETURN):
            metrics[name][new] = result.episode[name][new]
        metrics["own_return"][new] = own_return[new]
        ended |= new
        obs = result.observations
    assert ended.all(), "some point never ended an episode"
    return metrics


def test_example_task_metrics_follow_the_policy() -> None:
    env = make_example(num_envs=16, max_steps=100)
    # Starts at most 1.0 from 0 and moves 0.1 a step: straight at it, each arrives within 11 steps.
    towards = first_episodes(env, direction=1.0, seed=3)
    assert torch.all(towards[SUCCESS] == 1.0) and torch.all(towards[FELL] == 0.0)
    assert torch.all(towards[FINAL_DISTANCE] < 0.05)
    # RETURN is under the reference weights (progress 1.0, effort -0.01), whatever the run's are.
    assert torch.allclose(towards[RETURN], towards["own_return"], atol=1e-5)

    # Straight away from it, each leaves the 2.0 track within 16 steps.
    away = first_episodes(env, direction=-1.0, seed=3)
    assert torch.all(away[FELL] == 1.0) and torch.all(away[SUCCESS] == 0.0)
    assert torch.all(away[FINAL_DISTANCE] > 2.0)


def test_example_same_seed_same_starts() -> None:
    first = make_example(seed=5).reset()
    assert torch.equal(make_example(seed=5).reset(), first)
    assert not torch.allclose(make_example(seed=6).reset(), first)


# Bad factories, the kinds a user writes by mistake, found through this module's own name.
NOT_CALLABLE = {"num_envs": 4}


def make_without_step(num_envs: int, device: torch.device, seed: int) -> object:
    class HalfDone:
        observation_space = action_space = None
        reward_terms = ("r",)
        episode_metrics = ("return",)

        def reset(self, seed: int | None = None) -> None: ...
        def close(self) -> None: ...

    env = HalfDone()
    env.num_envs, env.device = num_envs, device  # type: ignore[attr-defined]
    return env


def make_without_seed(num_envs: int, device: torch.device) -> object:
    raise AssertionError("must not be called: it cannot take seed")


def make_wrong_count(num_envs: int, device: torch.device, seed: int, **params: Any) -> object:
    from tests.custom_env_factory import make

    return make(num_envs + 1, device, seed)


@pytest.mark.parametrize("spec, says", [
    ("tests.custom_env_factory.make", "exactly one colon"),
    ("tests.custom_env_factory:", "exactly one colon"),
    ("no_such_package.envs:make", "`no_such_package.envs` cannot be imported (No module named"),
    ("tests.custom_env_factory:no_such_function", "has no attribute `no_such_function`"),
    (f"{__name__}:NOT_CALLABLE", "is a dict, not a function"),
    (f"{__name__}:make_without_step", "without step()"),
    (f"{__name__}:make_without_seed", "cannot be called as make_without_seed(num_envs=..."),
    (f"{__name__}:make_wrong_count", "returned has num_envs=5 where num_envs=4 was asked for"),
])
def test_bad_factory_is_a_config_error(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_custom_env(factory=spec, num_envs=4, device=CPU, seed=0, params={})
    err = info.value
    assert err.key == "env.factory" and err.value == spec
    message = str(err)
    assert "`env.factory`" in message and repr(spec) in message
    assert says in message
    assert "Fix:" in message


def test_missing_function_lists_what_the_module_defines() -> None:
    with pytest.raises(ConfigError) as info:
        load_factory(f"{__name__}:make_without_stpe")
    assert "make_without_step" in info.value.fix
    assert "load_factory" not in info.value.fix  # its imports are not offered as candidates


def test_incomplete_env_points_at_the_interface() -> None:
    with pytest.raises(ConfigError) as info:
        make_custom_env(factory=f"{__name__}:make_without_step", num_envs=2, device=CPU, seed=0,
                        params={})
    assert "src/automl/envs/base.py" in str(info.value)
    assert "reset()" not in info.value.rule  # only what is missing is named


def test_params_cannot_override_what_the_run_sets() -> None:
    with pytest.raises(ConfigError) as info:
        make_custom_env(factory=EXAMPLE, num_envs=2, device=CPU, seed=0,
                        params={"seed": 3, "max_steps": 5})
    assert info.value.key == "env.params" and "seed" in info.value.rule
