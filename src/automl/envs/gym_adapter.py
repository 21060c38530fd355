"""A gymnasium vector env behind the BatchedEnv interface: numpy in the env, torch tensors outside.

The env's own reward is the one raw term (`env_reward`), except for the MuJoCo tasks listed in
mujoco_tasks.py, whose reward is split into raw terms (RETURN then sums them under gymnasium's
default weights). The adapter keeps each sub-env's return and length itself so the run gets
per-episode task metrics without gymnasium's RecordEpisodeStatistics.
A finished sub-env's last observation comes from gymnasium's `info["final_obs"]` (same-step
autoreset), so a time-limit end bootstraps from the episode's own final state.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.spaces import Box, Discrete
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import iterate

from automl.envs.base import FELL, FORWARD_DISTANCE, FORWARD_VELOCITY, LENGTH, RETURN, StepResult
from automl.envs.mujoco_tasks import VELOCITY_KEY, split_for, step_values
from automl.errors import ConfigError

ENV_REWARD = "env_reward"
"""Name of the one raw reward term: the gymnasium env's own reward."""

# The adapter does not know which conf/env option was chosen; a caller that does may set err.file.
_SOURCE = "conf/env/*.yaml or the command line"


class GymVectorEnv:
    """`num_envs` copies of a gymnasium env, stepped in this process, reset in the same step."""

    reward_terms: tuple[str, ...] = (ENV_REWARD,)
    episode_metrics: tuple[str, ...] = (RETURN, LENGTH, FELL)

    def __init__(
        self, *, gym_id: str, num_envs: int, device: torch.device, seed: int, **params: Any
    ) -> None:
        self.num_envs = num_envs
        self.device = torch.device(device)
        self._seed = seed
        self._seeded = False
        # MuJoCo locomotion tasks: reward split into raw terms (weights at 1 in the constructor).
        self._split = split_for(gym_id, params)
        if self._split is not None:
            params = self._split.constructor_params
            self.reward_terms = self._split.names
            self.episode_metrics = (*GymVectorEnv.episode_metrics, FORWARD_DISTANCE, FORWARD_VELOCITY)
        self._vec = _make_vec(gym_id, num_envs, params)
        # SAME_STEP returns a finished sub-env's reset observation in the very step that ended it,
        # which is what StepResult promises. NEXT_STEP would spend one extra step per episode on a
        # reset whose reward (0) and action are meaningless, so we refuse to run under it.
        mode = self._vec.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            self._vec.close()
            raise RuntimeError(f"{gym_id}: expected autoreset mode SAME_STEP, got {mode}")

        single_obs = self._vec.single_observation_space
        flat = gymnasium.spaces.flatten_space(single_obs)
        if not isinstance(flat, Box):
            self._vec.close()
            raise ConfigError(file=_SOURCE, key="env.gym_id", value=gym_id,
                              rule=f"its observation space {single_obs} does not flatten to a Box",
                              fix="wrap the env so that it observes a Box, or use env=custom")
        self._single_obs_space = single_obs
        self.observation_space = Box(low=flat.low.astype(np.float32),
                                     high=flat.high.astype(np.float32), dtype=np.float32)
        self.action_space = self._vec.single_action_space
        if not isinstance(self.action_space, Box | Discrete):
            self._vec.close()
            raise ConfigError(file=_SOURCE, key="env.gym_id", value=gym_id,
                              rule=f"its action space {self.action_space} is neither Box nor "
                                   "Discrete, which is all the PPO models here can emit",
                              fix="pick an env with a Box or Discrete action space")

        # Accumulated in float64 so long episodes do not drift from the sum of the float32 terms.
        self._return = np.zeros(num_envs, dtype=np.float64)
        self._length = np.zeros(num_envs, dtype=np.int64)
        self._forward = np.zeros(num_envs, dtype=np.float64)
        """Per sub-env sum of forward velocities this episode (split tasks only)."""
        self._dt = float(self._vec.get_attr("dt")[0]) if self._split is not None else 0.0

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset all sub-envs, seeded from `seed` (None: the constructor's seed, once)."""
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        # None continues the sub-envs' streams; a seed gives each sub-env its own.
        obs, _ = self._vec.reset(seed=None if seed is None else sub_env_seeds(seed, self.num_envs))
        self._return[:] = 0.0
        self._length[:] = 0
        self._forward[:] = 0.0
        return self._to_tensor(obs)

    def step(self, actions: torch.Tensor) -> StepResult:
        """Apply one batch of actions; finished sub-envs come back already reset."""
        obs, reward, terminated, truncated, info = self._vec.step(self._to_env_actions(actions))
        terms, reward = self._terms_and_reference(reward, info)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        self._return += reward
        self._length += 1

        done = terminated | truncated
        episode = {
            RETURN: np.where(done, self._return, 0.0),
            LENGTH: np.where(done, self._length, 0),
            # A time limit hit on the same step as a failure still counts as the failure.
            FELL: terminated.astype(np.float64),
        }
        if self._split is not None:
            episode[FORWARD_DISTANCE] = np.where(done, self._forward * self._dt, 0.0)
            episode[FORWARD_VELOCITY] = np.where(done, self._forward / np.maximum(self._length, 1), 0.0)
        self._return[done] = 0.0
        self._length[done] = 0
        self._forward[done] = 0.0

        observations = self._to_tensor(obs)
        return StepResult(
            observations=observations,
            final_observations=self._final_observations(observations, info),
            terms={name: self._float_tensor(value) for name, value in terms.items()},
            terminated=torch.as_tensor(terminated, device=self.device),
            truncated=torch.as_tensor(truncated, device=self.device),
            episode={name: self._float_tensor(value) for name, value in episode.items()},
        )

    def close(self) -> None:
        """Close the gymnasium vector env."""
        self._vec.close()

    def _terms_and_reference(self, reward: Any, info: dict[str, Any]
                             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The raw terms, and the reward RETURN sums: the env's own, or the split terms under
        gymnasium's default weights (the env itself runs with every weight at 1)."""
        if self._split is None:
            reward = np.asarray(reward, dtype=np.float64)
            return {ENV_REWARD: reward}, reward
        raw = self._split.raw_terms(info, self.num_envs)
        self._forward += step_values(info, VELOCITY_KEY, self.num_envs)
        return raw, self._split.reference_reward(raw)

    def _final_observations(self, observations: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
        """Under SAME_STEP autoreset, a finished sub-env's last observation is in info["final_obs"]."""
        ended = info.get("_final_obs")
        if ended is None or not np.any(ended):
            return observations
        final = observations.clone()
        for i in np.flatnonzero(ended):
            one = info["final_obs"][i]
            if not isinstance(self._single_obs_space, Box):
                one = gymnasium.spaces.flatten(self._single_obs_space, one)
            final[i] = torch.as_tensor(np.asarray(one, dtype=np.float32).reshape(-1), device=self.device)
        return final

    def _to_env_actions(self, actions: torch.Tensor) -> np.ndarray:
        array = actions.detach().cpu().numpy()
        space = self.action_space
        if isinstance(space, Discrete):
            # The policy emits indices 0..n-1; a Discrete space may start elsewhere.
            return array.reshape(self.num_envs).astype(np.int64) + int(space.start)
        assert isinstance(space, Box)
        array = array.reshape(self.num_envs, *space.shape).astype(space.dtype)
        # A Gaussian policy samples outside the bounds; gymnasium envs assume they are respected.
        return np.clip(array, space.low, space.high)

    def _to_tensor(self, obs: Any) -> torch.Tensor:
        if isinstance(self._single_obs_space, Box):
            flat = np.asarray(obs, dtype=np.float32).reshape(self.num_envs, -1)
        else:
            # Dict, Tuple, Discrete, ... observations: flatten each sub-env's the gymnasium way.
            rows: list[Any] = [gymnasium.spaces.flatten(self._single_obs_space, one)
                               for one in iterate(self._vec.observation_space, obs)]
            flat = np.stack(rows).astype(np.float32)
        return torch.as_tensor(flat, device=self.device)

    def _float_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)


def sub_env_seeds(seed: int, num_envs: int) -> list[int]:
    """One independent seed per sub-env, spawned from the run's seed: gymnasium's own `seed + i`
    would make runs seeded 1000 and 1001 share all but one sub-env stream."""
    children = np.random.SeedSequence(seed).spawn(num_envs)
    return [int(child.generate_state(1, dtype=np.uint32)[0]) for child in children]


def _make_vec(gym_id: str, num_envs: int, params: dict[str, Any]) -> gymnasium.vector.VectorEnv:
    """gymnasium.make_vec with same-step autoreset; a bad id or parameter becomes a ConfigError."""
    try:
        return gymnasium.make_vec(
            gym_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            **params,
        )
    except gymnasium.error.Error as err:
        # NameNotFound, VersionNotFound, NamespaceNotFound, DeprecatedEnv, ...
        raise ConfigError(
            file=_SOURCE, key="env.gym_id", value=gym_id, rule=f"gymnasium cannot make it ({err})",
            fix="use a registered id such as CartPole-v1 (list them with "
                "`python -c 'import gymnasium; gymnasium.pprint_registry()'`)",
        ) from None
    except TypeError as err:
        if not params or "unexpected keyword argument" not in str(err):
            raise
        raise ConfigError(
            file=_SOURCE, key="env.params", value=params,
            rule=f"{gym_id} does not accept one of them ({err})",
            fix=f"remove it, or check the keyword arguments of {gym_id}'s constructor",
        ) from None
