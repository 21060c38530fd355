"""An Isaac Lab task starts from its own skrl agent configuration: every ppo and network key of the
composed run config (what config.yaml holds) equals the task's YAML file, read here on its own by
path, for Isaac-Cartpole, Isaac-Ant and Isaac-Velocity-Flat-AnymalD; a value the user sets wins; a
task automl cannot build says so and names its fallback. Configurations only: no assets.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from automl import paths
from automl.config import load_run_config
from automl.envs.isaaclab_agent import forget_starts
from automl.errors import ConfigError
from automl.typed import to_plain

TASKS_DIR = Path(str(importlib.util.find_spec("isaaclab_tasks").origin)).parent / "core"  # type: ignore[union-attr]
FILES = {
    "Isaac-Cartpole": TASKS_DIR / "cartpole/agents/skrl_manager_ppo_cfg.yaml",
    "Isaac-Ant": TASKS_DIR / "locomotion/ant/agents/skrl_manager_ppo_cfg.yaml",
    "Isaac-Velocity-Flat-AnymalD": TASKS_DIR / "velocity/config/anymal_d/agents/skrl_flat_ppo_cfg.yaml",
}
SAME_NAME = ("rollouts", "learning_epochs", "mini_batches", "discount_factor", "lambda",
             "learning_rate", "grad_norm_clip", "ratio_clip", "value_clip", "entropy_loss_scale",
             "value_loss_scale", "kl_threshold", "rewards_shaper_scale")
"""ppo keys skrl's agent section names alike."""


def expected(data: dict[str, Any]) -> dict[str, Any]:
    """What config.yaml's ppo and network sections must hold for this skrl file."""
    agent, models = data["agent"], data["models"]
    policy_net = models["policy"]["network"][0]
    value_net = models["value"]["network"][0]
    assert agent["clip_predicted_values"] is True and models["policy"]["clip_log_std"] is True
    ppo = {key: agent[key] for key in SAME_NAME}
    ppo |= {"learning_rate_scheduler": agent["learning_rate_scheduler"],
            "learning_rate_kl_threshold": agent["learning_rate_scheduler_kwargs"]["kl_threshold"],
            "normalize_observations": agent["state_preprocessor"] == "RunningStandardScaler",
            "normalize_values": agent["value_preprocessor"] == "RunningStandardScaler",
            "time_limit_bootstrap": True,  # the one stated deviation (Isaac Lab's is false)
            "value_refit_updates": 0}  # automl's own (PBT's reward changes), off as everywhere
    network = {"policy_hidden_layer_sizes": policy_net["layers"],
               "value_hidden_layer_sizes": value_net["layers"],
               "activation": policy_net["activations"], "shared": not models["separate"],
               "min_log_std": models["policy"]["min_log_std"],
               "max_log_std": models["policy"]["max_log_std"],
               "initial_log_std": models["policy"]["initial_log_std"]}
    return {"ppo": ppo, "network": network}


@pytest.mark.parametrize("task", sorted(FILES))
def test_every_ppo_and_network_key_is_the_tasks_own(task: str) -> None:
    data = yaml.safe_load(FILES[task].read_text())
    composed = to_plain(load_run_config(["env=isaaclab", f"env.task={task}"]))
    want = expected(data)
    for section in ("ppo", "network"):
        assert set(composed[section]) == set(want[section]), section  # no key left unchecked
        assert composed[section] == want[section], (task, section)
    assert data["agent"]["time_limit_bootstrap"] is False


def test_the_three_tasks_differ_where_the_issue_says() -> None:
    """The files themselves differ, so the comparison above is not one file read three times."""
    cfgs = {task: load_run_config(["env=isaaclab", f"env.task={task}"]) for task in FILES}
    assert cfgs["Isaac-Ant"].network.policy_hidden_layer_sizes == [256, 128, 64]
    assert cfgs["Isaac-Ant"].ppo.rewards_shaper_scale == 0.6
    assert cfgs["Isaac-Ant"].ppo.normalize_observations and cfgs["Isaac-Ant"].ppo.normalize_values
    assert cfgs["Isaac-Velocity-Flat-AnymalD"].ppo.learning_rate == 1.0e-3
    assert cfgs["Isaac-Velocity-Flat-AnymalD"].ppo.entropy_loss_scale == 0.005
    assert cfgs["Isaac-Cartpole"].ppo.value_loss_scale == 2.0
    assert all(c.network.shared and c.ppo.learning_rate_scheduler == "KLAdaptiveLR"
               for c in cfgs.values())


def test_a_value_the_user_sets_wins_over_the_tasks() -> None:
    cfg = load_run_config(["env=isaaclab", "env.task=Isaac-Ant", "ppo.learning_rate=1e-3",
                           "network.shared=false", "network.value_hidden_layer_sizes=[64,64]",
                           "ppo.learning_rate_scheduler=null"])
    assert cfg.ppo.learning_rate == 1.0e-3 and cfg.ppo.learning_rate_scheduler is None
    assert not cfg.network.shared and cfg.network.value_hidden_layer_sizes == [64, 64]
    assert cfg.network.policy_hidden_layer_sizes == [256, 128, 64]  # the rest stays the task's


def test_a_task_without_a_buildable_configuration_names_its_fallback(
        capsys: pytest.CaptureFixture[str]) -> None:
    forget_starts()  # the note is printed once per process, at the first read
    cfg = load_run_config(["env=isaaclab", "env.task=IsaacContrib-Humanoid-AMP-Walk-Direct"])
    err = capsys.readouterr().err
    assert "IsaacContrib-Humanoid-AMP-Walk-Direct starts from conf/ppo/isaaclab.yaml and " \
           "conf/network/tiny.yaml: its agent is AMP, not PPO" in err
    fallback = yaml.safe_load((paths.conf_dir() / "ppo/isaaclab.yaml").read_text())
    assert to_plain(cfg.ppo) == fallback
    assert to_plain(cfg.network) == yaml.safe_load((paths.conf_dir() / "network/tiny.yaml").read_text())


def test_an_unknown_task_is_one_clear_error_naming_close_ids() -> None:
    with pytest.raises(ConfigError) as err:
        load_run_config(["env=isaaclab", "env.task=Isaac-Antt"])
    assert err.value.key == "env.task" and "Isaac-Ant" in err.value.fix


def test_a_shared_trunk_with_unequal_size_lists_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        load_run_config(["env=isaaclab", "env.task=Isaac-Ant", "network.value_hidden_layer_sizes=[64]"])
    assert err.value.key == "network.value_hidden_layer_sizes"
    assert "network.shared" in err.value.rule and "network.shared=false" in err.value.fix


def test_the_templates_baseline_is_the_tasks_own_configuration() -> None:
    """templates/isaaclab_cartpole.yaml gives its PPO parameters no prior: the start a stage
    validates against (`baseline`) trains with Isaac-Cartpole's own skrl settings."""
    from automl.envs.isaaclab_cfg import task_reward_weights
    from automl.search.space import load_space
    from automl.stages.candidates import composed_start

    space = load_space(paths.templates_dir() / "isaaclab_cartpole.yaml",  # terms read in-process
                       reward_terms=list(task_reward_weights("Isaac-Cartpole")))
    values, overrides, _ = composed_start(space, ["env=isaaclab"])
    start = to_plain(load_run_config(overrides))
    want = expected(yaml.safe_load(FILES["Isaac-Cartpole"].read_text()))
    assert start["ppo"] == want["ppo"] and start["network"] == want["network"]
    assert values["ppo.learning_rate"] == 3.0e-4 and values["ppo.learning_epochs"] == 8


def test_the_orchestrators_subprocess_reads_the_same_start() -> None:
    """The orchestrator never imports Isaac Lab: it reads a start in a short subprocess, which gives
    the same values (its errors come back as search/plan.py's reward-term reader's do)."""
    from automl.envs.isaaclab_agent import _from_subprocess, read_start

    assert _from_subprocess("Isaac-Ant") == (read_start("Isaac-Ant"), None)


def test_an_orchestrator_run_in_a_process_gives_back_how_it_reads_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    """cli.main reads Isaac Lab starts in a subprocess while it runs, and puts the process's own way
    back when it returns: a caller in the same process (a test) composes in-process again."""
    from automl import cli
    from automl.envs import isaaclab_agent

    assert isaaclab_agent.read_in_subprocess(False) is False  # this process's own way
    assert cli.main(["--mode", "report"]) == 2  # bad input, after the switch
    assert "--study-name" in capsys.readouterr().err
    assert isaaclab_agent.read_in_subprocess(False) is False


def test_an_orchestrator_imports_isaac_lab_once_for_the_start_and_the_reward_terms(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Its subprocess that reads the task's start reads the reward terms the plan checks too (each
    read is a fresh Isaac Lab import, about 5 s), and the terms are the ones read on their own."""
    import subprocess

    from automl import cli
    from automl.envs.isaaclab_cfg import task_reward_weights

    reads: list[list[str]] = []
    run = subprocess.run

    def counted(args: Any, *a: Any, **k: Any) -> Any:
        if isinstance(args, list) and any(str(x).startswith("automl.envs.isaaclab") for x in args):
            reads.append([str(x) for x in args])
        return run(args, *a, **k)

    forget_starts()
    monkeypatch.setattr(subprocess, "run", counted)
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    # A scale for a term the task lacks: refused once the terms are read, before any trial.
    assert cli.main(["--mode", "search", "--space", str(paths.templates_dir() / "isaaclab_cartpole.yaml"),
                     "env=isaaclab", "+reward.scales.pole_angle=-1"]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert [r[3] for r in reads] == ["automl.envs.isaaclab_agent"], reads
    assert "pole_angle" in message and ", ".join(task_reward_weights("Isaac-Cartpole")) in message
    forget_starts()
