"""Export mode: a policy with its normaliser as ONNX and TorchScript whose actions match what eval
mode's torch policy does, and checkpoints that name their task."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from skrl.resources.preprocessors.torch import RunningStandardScaler
from train_harness import train_one, train_one_here

from automl.config import load_run_config
from automl.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError
from automl.run.evaluate import evaluate
from automl.run.export import export_checkpoint
from automl.run.models import build_models, deterministic_action
from automl.schema import NetworkConfig

NETWORK = {"policy_hidden_layer_sizes": [32, 16], "value_hidden_layer_sizes": [16],
           "activation": "elu"}
SHARED = {"policy_hidden_layer_sizes": [32, 16], "value_hidden_layer_sizes": [32, 16],
          "activation": "elu", "shared": True, "min_log_std": -20.0, "max_log_std": 2.0}
"""A policy on the trunk it shares with the value (Isaac Lab's usual), its value head beside."""


def checkpoint(path: Path, *, discrete: bool, obs_dim: int = 7,
               network: dict = NETWORK) -> tuple[Path, object, object]:
    """A model.pt as train_one writes it, with random weights and a normaliser that has seen data
    (mean and variance far from 0 and 1), and the torch policy and scaler eval mode would build."""
    torch.manual_seed(1)
    observations = gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,))
    actions = gymnasium.spaces.Discrete(3) if discrete else gymnasium.spaces.Box(-1.0, 1.0, (2,))
    policy = build_models(NetworkConfig(**network), observations, actions, torch.device("cpu"))["policy"]
    scaler = RunningStandardScaler(observations, device="cpu")
    scaler(torch.randn(500, obs_dim) * 4.0 + 3.0, train=True)
    scaler.eval()
    torch.save({"policy": policy.state_dict(), "value": {}, "network": network,
                "observation_preprocessor": scaler.state_dict(), "env": "cartpole",
                "task": "CartPole-v1", "obs_dim": obs_dim, "discrete": discrete}, path)
    return path, policy.eval(), scaler


@pytest.mark.parametrize(("discrete", "network"), [(False, NETWORK), (True, NETWORK), (False, SHARED)],
                         ids=["gaussian", "categorical", "shared"])
def test_exported_files_act_as_the_torch_policy_does_in_eval_mode(tmp_path, discrete, network):
    path, policy, scaler = checkpoint(tmp_path / "model.pt", discrete=discrete, network=network)
    written = export_checkpoint(path, tmp_path / "out")
    assert written["normalised"] and written["discrete"] == discrete
    observations = torch.randn(100, 7) * 6.0 + 3.0  # beyond the normaliser's clip at times
    with torch.no_grad():
        expected = deterministic_action(policy, scaler(observations)).double().numpy()
    [onnx_actions] = ReferenceEvaluator(written["onnx"]).run(None, {"observations": observations.numpy()})
    assert np.max(np.abs(onnx_actions - expected)) <= 1e-5
    with torch.no_grad():
        script_actions = torch.jit.load(written["torchscript"])(observations).double().numpy()
    assert np.max(np.abs(script_actions - expected)) <= 1e-5
    if discrete:
        assert onnx_actions.dtype == np.int64 and set(np.unique(onnx_actions)) <= {0, 1, 2}


def test_eval_mode_refuses_a_checkpoint_of_another_task(tmp_path):
    path, _, _ = checkpoint(tmp_path / "model.pt", discrete=True, obs_dim=4)
    cfg = load_run_config(["env=cartpole", "mode=eval", f"checkpoint={path}", "env.gym_id=Acrobot-v1"])
    with pytest.raises(ConfigError, match="trained on task `CartPole-v1`") as err:
        evaluate(cfg)
    assert err.value.key == "env.gym_id" and "env.gym_id=CartPole-v1" in err.value.fix


@pytest.mark.slow
def test_a_trained_run_exports_from_the_command_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    trained = train_one(["env=cartpole", "train.frames=800", "train.eval_frequency=400",
                         "env.num_envs=8", "ppo.mini_batches=2", f"run_dir={run}"], log_root=tmp_path)
    assert trained.returncode == EXIT_OK, trained.stderr[-2000:]
    assert torch.load(run / "model.pt", weights_only=True)["task"] == "CartPole-v1"
    exported = train_one(["mode=export", f"checkpoint={run / 'model.pt'}"], log_root=tmp_path)
    assert exported.returncode == EXIT_OK, exported.stderr[-2000:]
    written = json.loads(exported.stdout[exported.stdout.index("{"):])
    assert Path(written["onnx"]) == run / "policy.onnx" and (run / "policy.ts.pt").is_file()
    assert max(written["max_difference"].values()) <= 1e-5
    code, _, err = train_one_here(["mode=export"], log_root=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code == EXIT_BAD_INPUT and "mode=export needs a checkpoint" in err
