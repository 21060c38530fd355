"""Config groups: every option under conf/ composes and validates; each mistake is one ConfigError."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from automl import paths
from automl.config import GROUPS, group_options, load_run_config, save_resolved
from automl.envs.navigation import REFERENCE_SCALES, TERMS
from automl.errors import ConfigError
from automl.schema import RunConfig, run_config_from_plain
from automl.typed import to_plain

CUSTOM = ["env.factory=tests.custom_env_factory:make", "+reward.scales.progress=1.0",
          "+reward.scales.effort=-0.01"]
"""What env=custom needs besides itself (conf/env/custom.yaml leaves env.factory ???)."""


def option_file(group: str, option: str) -> dict[str, Any]:
    return yaml.safe_load((paths.conf_dir() / group / f"{option}.yaml").read_text()) or {}


def overrides_for(group: str, option: str) -> list[str]:
    if group == "experiment":  # an optional overlay: off unless added
        return [f"+experiment={option}"]
    if option == "isaaclab_task":  # it reads the task's own configuration: an Isaac Lab task's
        return ["env=isaaclab", f"{group}={option}"]
    return [f"{group}={option}", *(CUSTOM if (group, option) == ("env", "custom") else [])]


def project_options(group: str) -> list[str]:
    """The options the project itself ships (tracked by git): a preset a study exported into
    conf/experiment/ is a user's file, not part of the project, and is not composed here."""
    try:
        listed = subprocess.run(["git", "ls-files", "--", f"conf/{group}"], cwd=paths.repo_root(),
                                capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: whatever is there
        return group_options(group)
    return sorted(Path(f).stem for f in listed if f.endswith(".yaml"))


ALL_OPTIONS = [(group, option) for group in GROUPS for option in project_options(group)]


def test_the_option_list_is_read_from_conf() -> None:
    # Guards the parametrization below against a glob that silently finds nothing.
    assert {"navigation", "navigation_stage2", "cartpole", "pendulum", "custom"} <= set(group_options("env"))
    assert {"small", "medium", "large"} <= set(group_options("network"))
    assert "default" in group_options("ppo")
    assert {"navigation", "gymnasium", "custom"} <= set(group_options("reward"))
    assert {"navigation", "return"} <= set(group_options("scoring"))
    assert group_options("no_such_group") == []
    assert project_options("env") == group_options("env")
    assert project_options("experiment") == []  # conf/experiment/ only takes exported presets


@pytest.mark.parametrize("group, option", ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_group_option_composes_validates_and_applies(group: str, option: str) -> None:
    cfg = load_run_config(overrides_for(group, option))
    assert isinstance(cfg, RunConfig)
    data = option_file(group, option)
    data.pop("defaults", None)
    if group == "env":  # `# @package _global_`: the file sets env.* and maybe train.*
        assert cfg.env.name == option
        assert to_plain(cfg.env) == {"cfg": {}, **data["env"],  # cfg: Isaac Lab tasks' settings
                                     **({"factory": CUSTOM[0].partition("=")[2]}
                                        if option == "custom" else {})}
        for key, value in data.get("train", {}).items():
            assert getattr(cfg.train, key) == value
    elif option == "isaaclab_task":  # every key an interpolation, resolved for the task
        assert set(to_plain(getattr(cfg, group))) == set(data)
        assert all(str(v).startswith("${isaaclab_agent:") for v in data.values())
    elif group != "experiment":
        assert to_plain(getattr(cfg, group)) == data


def test_custom_env_needs_a_factory() -> None:
    with pytest.raises(ConfigError) as info:
        load_run_config(["env=custom"])
    assert info.value.key == "env.factory"
    assert "conf/env/custom.yaml" in info.value.file and "env.factory=" in info.value.fix


def test_custom_env_takes_its_own_reward_terms() -> None:
    cfg = load_run_config(["env=custom", *CUSTOM])
    assert cfg.env.kind == "custom" and cfg.env.factory == "tests.custom_env_factory:make"
    assert cfg.reward.scales == {"progress": 1.0, "effort": -0.01}
    assert cfg.scoring.weights == {"return": 1.0}


@pytest.mark.parametrize("env, scales, scoring", [
    ("navigation", REFERENCE_SCALES, {"success_rate", "termination_rate", "final_distance"}),
    ("navigation_stage2", REFERENCE_SCALES, {"success_rate", "termination_rate", "final_distance"}),
    ("cartpole", {"env_reward": 1.0}, {"return"}),
    ("pendulum", {"env_reward": 1.0}, {"return"}),
])
def test_an_env_picks_its_reward_and_scoring(env: str, scales: dict[str, float], scoring: set[str]) -> None:
    cfg = load_run_config([f"env={env}"])
    assert cfg.reward.scales == scales
    assert set(cfg.scoring.weights) == scoring


def test_navigation_reward_preset_is_the_reference_weights_of_all_16_terms() -> None:
    scales = option_file("reward", "navigation")["scales"]
    assert tuple(scales) == TERMS and len(TERMS) == 16
    assert scales == REFERENCE_SCALES


@pytest.mark.parametrize("override, attribute, value", [
    ("ppo.learning_rate=1e-4", ("ppo", "learning_rate"), 1e-4),
    ("ppo.learning_rate=3", ("ppo", "learning_rate"), 3.0),  # an int where a float goes
    ("ppo.lambda=0.9", ("ppo", "gae_lambda"), 0.9),  # the YAML name of skrl's gae_lambda
    ("env.num_envs=null", ("env", "num_envs"), None),
    ("network.policy_hidden_layer_sizes=[32,16]", ("network", "policy_hidden_layer_sizes"), [32, 16]),
    ("train.seed=7", ("train", "seed"), 7),
    ("reward.scales.termination=-50", ("reward", "scales"), {**REFERENCE_SCALES, "termination": -50.0}),
])
def test_overrides_reach_the_typed_config(override: str, attribute: tuple[str, str], value: Any) -> None:
    cfg = load_run_config([override])
    got = getattr(getattr(cfg, attribute[0]), attribute[1])
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("overrides, key, says", [
    (["ppo.foo=1"], "ppo.foo", "allowed: discount_factor, entropy_loss_scale"),
    (["ppo.learning_rate=abc"], "ppo.learning_rate", "it must be a number"),
    (["train.frames=1e3"], "train.frames", "it must be an integer"),
    (["network=huge"], "network", "options: deep, isaaclab_task, large, medium, small"),
    (["env=mujoco"], "env", "options: ant, cartpole, custom, halfcheetah, hopper, humanoid, isaaclab, navigation"),
    (["env.num_envs=0"], "env.num_envs", "it must be a positive integer"),
    (["train.frames=0"], "train.frames", "it must be a positive number of frames"),
    (["train.frames=-1000"], "train.frames", "it must be a positive number of frames"),
    (["train.eval_frequency=0"], "train.eval_frequency", "positive number of frames"),
    (["ppo.lambda=1.5"], "ppo.lambda", "it must lie in (0.0, 1.0]"),
    (["ppo.mini_batches=0"], "ppo.mini_batches", "it must be > 0"),
    (["network.activation=swish"], "network.activation", "it must be one of elu, relu"),
    (["network.value_hidden_layer_sizes=[]"], "network.value_hidden_layer_sizes", "non-empty list"),
    (["env.device=gpu"], "env.device", "it must be one of auto, cpu, cuda"),
    (["mode=eval"], "checkpoint", "mode=eval needs a checkpoint"),
    (["episodes=0"], "episodes", "it must be >= 1"),
    # A new key in a free mapping needs `+`: the fix says so instead of listing no allowed keys.
    (["reward.scales.bogus=1.0"], "reward.scales.bogus", "+reward.scales.bogus=1.0"),
])
def test_each_mistake_is_one_config_error(overrides: list[str], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_run_config(overrides)
    err = info.value
    assert err.key == key
    assert says in err.message
    assert f"`{key}`" in err.message and "Fix:" in err.message


def test_a_wrong_value_names_the_file_it_would_come_from() -> None:
    with pytest.raises(ConfigError) as info:
        load_run_config(["network=small", "network.activation=swish"])
    assert info.value.file.startswith("conf/network/small.yaml")
    assert info.value.value == "swish"


@pytest.mark.parametrize("overrides", [
    ["env=navigation", "env.num_envs=32", "+env.params.max_steps=64", "ppo.lambda=0.9",
     "ppo.mini_batches=4"],
    ["env=cartpole", "network=small"],
    ["env=custom", *CUSTOM, "+env.params.max_steps=40"],
])
def test_resolved_config_yaml_loads_back_to_the_same_config(overrides: list[str], tmp_path: Path) -> None:
    cfg = load_run_config(overrides)
    save_resolved(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "???" not in text and "${" not in text  # fully resolved
    data = yaml.safe_load(text)
    assert set(data) == {"env", "ppo", "network", "reward", "scoring", "train", "run_dir", "mode",
                         "checkpoint", "episodes", "experiment"}
    assert "lambda" in data["ppo"] and "gae_lambda" not in data["ppo"]
    assert run_config_from_plain(data, source=str(tmp_path / "config.yaml")) == cfg


@pytest.mark.parametrize("overrides, says", [
    (["env=navigation", "env.num_envs=16"], "24 x 16 environments / 32 mini-batches = 12 samples"),
    (["env=cartpole", "ppo.mini_batches=64"], "24 x 16 environments / 64 mini-batches = 6 samples"),
])
def test_mini_batches_of_a_handful_of_samples_are_refused(overrides: list[str], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_run_config(overrides)
    assert info.value.key == "ppo.mini_batches" and says in str(info.value)
    assert "Fix: set ppo.mini_batches=" in str(info.value)


def test_the_gymnasium_presets_train_on_mini_batches_of_useful_size() -> None:
    for env in ("cartpole", "pendulum"):
        cfg = load_run_config([f"env={env}"])
        assert cfg.ppo.rollouts * cfg.env.num_envs // cfg.ppo.mini_batches >= 32


def test_value_normalisation_is_off_by_default_and_can_be_turned_on() -> None:
    assert load_run_config([]).ppo.normalize_values is False
    assert load_run_config(["ppo.normalize_values=true"]).ppo.normalize_values is True
