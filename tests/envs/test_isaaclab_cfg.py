"""An Isaac Lab task's own settings, presets and physics go through Isaac Lab's own override parser
(`env.cfg.<path>`, `env.params.presets`, `env.params.physics`), a wrong one is one clear error, and
the reward weights automl reads are those of the physics and presets chosen. Configurations only."""

from __future__ import annotations

import pytest
import torch

from automl.config import load_run_config
from automl.envs.isaaclab_cfg import load_task_cfg, task_reward_weights
from automl.errors import ConfigError

CPU = torch.device("cpu")


def test_task_settings_by_path_reach_the_tasks_config() -> None:
    cfg = load_task_cfg("Isaac-Cartpole", num_envs=4, device=CPU, seed=0,
                        overrides={"episode_length_s": 3, "scene": {"env_spacing": 2.5},
                                   "terminations.cart_out_of_bounds.params.bounds": [-2.0, 2.0]})
    assert cfg.episode_length_s == 3 and cfg.scene.env_spacing == 2.5
    assert list(cfg.terminations.cart_out_of_bounds.params["bounds"]) == [-2.0, 2.0]
    assert cfg.scene.num_envs == 4  # automl's size, after the user's settings


@pytest.mark.parametrize(("overrides", "key", "words"), [
    ({"episode_lenght_s": 3}, "env.cfg.episode_lenght_s", "episode_length_s"),
    ({"scene.env_spacin": 1.0}, "env.cfg.scene.env_spacin", "env_spacing"),
    ({"rewards.pole_pos.weight": -2.0}, "env.cfg.rewards.pole_pos.weight", "reward.scales"),
    ({"scene.num_envs": 8}, "env.cfg.scene.num_envs", "env.num_envs"),
])
def test_a_wrong_task_setting_is_one_clear_error(overrides: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_task_cfg("Isaac-Cartpole", num_envs=4, device=CPU, seed=0, overrides=overrides)
    assert err.value.key == key and words in err.value.fix


def test_the_weights_read_are_those_of_the_physics_and_presets_chosen() -> None:
    """Isaac-Reach-Franka's action_rate weight is a preset: -1e-4 by default, -0.01 under `hold` on
    PhysX; the orchestrator checks a space's terms against these."""
    default = task_reward_weights("Isaac-Reach-Franka")
    held = task_reward_weights("Isaac-Reach-Franka", params={"physics": "physx", "presets": ["hold"]})
    assert default["action_rate"] == -1.0e-4 and held["action_rate"] == -0.01
    with pytest.raises(ConfigError) as err:
        task_reward_weights("Isaac-Reach-Franka", params={"presets": ["hodl"]})
    assert err.value.key == "env.params.presets" and "hodl" in err.value.rule


def test_env_params_take_only_physics_and_presets() -> None:
    with pytest.raises(ConfigError) as err:
        load_task_cfg("Isaac-Cartpole", num_envs=4, device=CPU, seed=0, params={"episode_length_s": 3})
    assert err.value.key == "env.params.episode_length_s" and "env.cfg.episode_length_s" in err.value.fix


def test_env_cfg_belongs_to_isaac_lab_tasks_only() -> None:
    with pytest.raises(ConfigError) as err:
        load_run_config(["env=cartpole", "+env.cfg.episode_length_s=3"])
    assert err.value.key == "env.cfg"
