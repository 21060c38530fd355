"""GymVectorEnv: spaces, dtypes, per-episode metrics against our own sums, autoreset and seeds."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.spaces import Box, Discrete

from automl.envs.base import FELL, LENGTH, RETURN, BatchedEnv
from automl.envs.gym_adapter import ENV_REWARD, GymVectorEnv, sub_env_seeds
from automl.errors import ConfigError

CPU = torch.device("cpu")


def make(gym_id: str, num_envs: int = 4, seed: int = 0, **params: Any) -> GymVectorEnv:
    return GymVectorEnv(gym_id=gym_id, num_envs=num_envs, device=CPU, seed=seed, **params)


def random_actions(env: GymVectorEnv, gen: torch.Generator) -> torch.Tensor:
    space = env.action_space
    if isinstance(space, Discrete):
        return torch.randint(0, int(space.n), (env.num_envs, 1), generator=gen)
    # Wider than the bounds on purpose: the adapter must clip.
    return 3.0 * torch.randn(env.num_envs, *space.shape, generator=gen)


def rollout(env: GymVectorEnv, steps: int, seed: int = 0) -> list[dict[str, Any]]:
    """Random-action rollout; one record per finished episode, our own sums next to the env's."""
    gen = torch.Generator().manual_seed(seed)
    obs = env.reset(seed=seed)
    own_return = np.zeros(env.num_envs)
    own_length = np.zeros(env.num_envs, dtype=int)
    episodes = []
    for _ in range(steps):
        result = env.step(random_actions(env, gen))
        own_return += result.terms[ENV_REWARD].numpy()
        own_length += 1
        done = (result.terminated | result.truncated).numpy()
        for i in np.flatnonzero(done):
            episodes.append({
                "env": i, "own_return": own_return[i], "own_length": own_length[i],
                "return": result.episode[RETURN][i].item(),
                "length": result.episode[LENGTH][i].item(),
                "fell": result.episode[FELL][i].item(),
                "terminated": bool(result.terminated[i]), "truncated": bool(result.truncated[i]),
                "next_obs": result.observations[i].numpy().copy(),
                "prev_obs": obs[i].numpy().copy(),
            })
        own_return[done] = 0.0
        own_length[done] = 0
        obs = result.observations
    return episodes


@pytest.mark.parametrize("gym_id, obs_dim, action_space", [
    ("CartPole-v1", 4, Discrete(2)),
    ("Pendulum-v1", 3, Box(-2.0, 2.0, (1,), np.float32)),
])
def test_spaces_shapes_and_dtypes(gym_id: str, obs_dim: int, action_space: gymnasium.Space) -> None:
    env = make(gym_id, num_envs=3)
    assert isinstance(env, BatchedEnv)
    assert env.reward_terms == (ENV_REWARD,)
    assert env.observation_space.shape == (obs_dim,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space == action_space

    obs = env.reset(seed=1)
    assert obs.shape == (3, obs_dim) and obs.dtype == torch.float32 and obs.device == CPU
    result = env.step(random_actions(env, torch.Generator().manual_seed(0)))
    assert result.observations.shape == (3, obs_dim)
    assert result.observations.dtype == torch.float32
    assert set(result.terms) == {ENV_REWARD}
    assert result.terms[ENV_REWARD].shape == (3,)
    assert result.terms[ENV_REWARD].dtype == torch.float32
    assert result.terminated.dtype == torch.bool and result.truncated.dtype == torch.bool
    for name in (RETURN, LENGTH, FELL):
        assert result.episode[name].shape == (3,)
        assert result.episode[name].dtype == torch.float32
    env.close()


def test_cartpole_episode_metrics_match_own_sums_and_fell() -> None:
    env = make("CartPole-v1", num_envs=4)
    episodes = rollout(env, steps=300)
    env.close()

    # Random actions drop the pole in ~20 steps: every sub-env finishes several episodes.
    assert {e["env"] for e in episodes} == {0, 1, 2, 3}
    assert len(episodes) >= 20
    for e in episodes:
        assert e["return"] == pytest.approx(e["own_return"], abs=1e-4)
        assert e["length"] == e["own_length"]
        # CartPole pays +1 per step, so the two bookkeepings must also agree with each other.
        assert e["return"] == pytest.approx(e["length"])
        assert e["terminated"] and not e["truncated"]
        assert e["fell"] == 1.0


def test_cartpole_first_observation_after_done_is_a_reset_state() -> None:
    env = make("CartPole-v1", num_envs=4)
    episodes = rollout(env, steps=300, seed=3)
    env.close()

    assert episodes
    for e in episodes:
        # CartPole's reset draws every component from U(-0.05, 0.05); a terminal state has the
        # pole past 12 degrees or the cart past 2.4, so it cannot pass this by accident.
        assert np.all(np.abs(e["next_obs"]) <= 0.05), e["next_obs"]


def test_pendulum_truncates_at_its_time_limit_without_a_lost_reset_step() -> None:
    env = make("Pendulum-v1", num_envs=2)
    episodes = rollout(env, steps=400)
    env.close()

    # Exactly two 200-step episodes per sub-env: a NEXT_STEP-style reset step would shift the
    # second one by a step and leave it unfinished at step 400.
    assert sorted(e["env"] for e in episodes) == [0, 0, 1, 1]
    for e in episodes:
        assert e["truncated"] and not e["terminated"]
        assert e["fell"] == 0.0
        assert e["length"] == e["own_length"] == 200
        assert e["return"] == pytest.approx(e["own_return"], rel=1e-5)
        assert e["return"] < 0.0  # Pendulum's reward is a cost, never positive
        # Reset draws the angular velocity from U(-1, 1); the third component is that velocity.
        assert abs(e["next_obs"][2]) <= 1.0


def test_same_seed_same_observations_different_seed_different() -> None:
    def trace(seed: int) -> np.ndarray:
        env = make("CartPole-v1", num_envs=3, seed=seed)
        gen = torch.Generator().manual_seed(0)
        observations = [env.reset().numpy()]
        for _ in range(60):  # long enough to cross autoresets, which must be seeded too
            observations.append(env.step(random_actions(env, gen)).observations.numpy())
        env.close()
        return np.stack(observations)

    np.testing.assert_array_equal(trace(7), trace(7))
    assert not np.allclose(trace(7)[0], trace(8)[0])


def test_sub_env_seeds_come_from_one_seed_sequence() -> None:
    wide = make("CartPole-v1", num_envs=3).reset(seed=10).numpy()
    single = gymnasium.make("CartPole-v1")
    for i, sub_seed in enumerate(sub_env_seeds(10, 3)):
        np.testing.assert_array_equal(wide[i], single.reset(seed=sub_seed)[0].astype(np.float32))


def test_two_run_seeds_share_no_sub_env_stream() -> None:
    # gymnasium's own `seed + i` gave validation seeds 1000 and 1001 fifteen of 16 streams in common.
    one, two = sub_env_seeds(1000, 16), sub_env_seeds(1001, 16)
    assert len(set(one)) == 16 and not set(one) & set(two)


def test_final_observations_are_the_finished_episodes_own() -> None:
    # EchoBox observes its last action; with a 3-step limit the final observation of each episode is
    # its third action, while the returned one is the reset observation (0).
    env = make("automl-test/EchoBox-v0", num_envs=2, max_episode_steps=3)
    env.reset(seed=0)
    for value in (0.1, 0.2):
        result = env.step(torch.tensor([[value], [value]]))
        assert not bool(result.truncated.any())
        assert torch.equal(result.final_observations, result.observations)
    result = env.step(torch.tensor([[0.3], [0.7]]))
    assert bool(result.truncated.all())
    np.testing.assert_allclose(result.final_observations[:, 0].numpy(), [0.3, 0.7], rtol=1e-6)
    np.testing.assert_array_equal(result.observations[:, 0].numpy(), [0.0, 0.0])


class _EchoEnv(gymnasium.Env):
    """Observes the action it was given and pays it as reward: shows what the adapter passed on."""

    def __init__(self, action_space: gymnasium.Space) -> None:
        self.action_space = action_space
        self.observation_space = Box(-np.inf, np.inf, (1,), np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        super().reset(seed=seed)
        return np.zeros(1), {}

    def step(self, action: Any) -> tuple:
        value = float(np.asarray(action).reshape(-1)[0])
        return np.array([value]), value, False, False, {}


gymnasium.register("automl-test/EchoBox-v0", entry_point=lambda: _EchoEnv(Box(-1.0, 2.0, (1,))))
gymnasium.register("automl-test/EchoDiscrete-v0",
                   entry_point=lambda: _EchoEnv(Discrete(3, start=-1)))


def test_box_actions_are_clipped_to_the_bounds() -> None:
    env = make("automl-test/EchoBox-v0", num_envs=3)
    env.reset()
    result = env.step(torch.tensor([[-5.0], [0.5], [9.0]]))
    np.testing.assert_allclose(result.observations[:, 0].numpy(), [-1.0, 0.5, 2.0])
    assert result.observations.dtype == torch.float32  # the env observes float64


@pytest.mark.parametrize("shape", [(3, 1), (3,)])
def test_discrete_indices_map_onto_the_space(shape: tuple[int, ...]) -> None:
    env = make("automl-test/EchoDiscrete-v0", num_envs=3)
    env.reset()
    result = env.step(torch.tensor([0, 1, 2]).reshape(shape))
    # Policy index k is the space's k-th action: start + k.
    np.testing.assert_array_equal(result.terms[ENV_REWARD].numpy(), [-1.0, 0.0, 1.0])


def test_params_reach_the_env_constructor() -> None:
    env = make("CartPole-v1", num_envs=2, max_episode_steps=5)
    episodes = rollout(env, steps=5)
    env.close()
    # Unlimited, a random CartPole episode lasts ~20 steps; limited to 5, both have ended by now.
    assert sorted(e["env"] for e in episodes) == [0, 1]
    assert all(e["length"] <= 5 for e in episodes)


def test_unknown_id_and_unknown_param_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        make("NoSuchEnv-v0")
    assert "env.gym_id" in str(info.value) and "NoSuchEnv-v0" in str(info.value)

    with pytest.raises(ConfigError) as info:
        make("CartPole-v1", no_such_param=1)
    assert "env.params" in str(info.value) and "no_such_param" in str(info.value)


def test_final_observations_hold_the_terminal_state_where_an_episode_ended() -> None:
    env = make("CartPole-v1", num_envs=4)
    env.reset(seed=5)
    gen = torch.Generator().manual_seed(5)
    ended = 0
    for _ in range(200):
        result = env.step(random_actions(env, gen))
        done = (result.terminated | result.truncated).numpy()
        final = result.final_observations.numpy()
        # Where nothing ended the two are the same; where the pole fell, the final observation is
        # past CartPole's limits (cart beyond 2.4 or pole beyond 12 degrees), unlike any reset state.
        np.testing.assert_array_equal(final[~done], result.observations.numpy()[~done])
        for i in np.flatnonzero(done):
            assert abs(final[i, 0]) > 2.4 or abs(final[i, 2]) > 0.2094, final[i]
            ended += 1
    env.close()
    assert ended >= 10
