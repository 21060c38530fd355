"""Trials land only on the GPUs the user gave in CUDA_VISIBLE_DEVICES (indices, UUIDs or MIG ids),
checked without a GPU by looking at the environment each trial gets."""

from __future__ import annotations

import json
import sys

import pytest
from search_harness import WORKER, run_search, search_argv, skip_reports, write_behaviour

from automl import paths
from automl.paths import StudyPaths
from automl.search.trials.gpus import visible_gpus
from automl.search.trials.launcher import Slot, plan_slots, trial_env


@pytest.mark.parametrize(("visible", "expected"), [
    ("2,3", ["2", "3"]),
    (" 1 , 0 ", ["1", "0"]),
    ("GPU-8f3a2c1e-aaaa-bbbb-cccc-0123456789ab,MIG-5c1d-1/2/0",
     ["GPU-8f3a2c1e-aaaa-bbbb-cccc-0123456789ab", "MIG-5c1d-1/2/0"]),
    ("3,-1,2", ["3"]),  # CUDA ignores an invalid entry and every one after it
    ("-1", []),
    ("", []),
])
def test_visible_gpus_are_the_users_entries(monkeypatch, visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpus() == expected


def test_slots_take_the_users_gpus_in_order():
    slots = plan_slots(workers=None, use_gpu=True, gpus=["2", "3"], gpu_fraction=0.5,
                       threads_per_trial=1, cpus=8)
    assert [s.gpu for s in slots] == ["2", "2", "3", "3"]
    assert trial_env(slots[2])["CUDA_VISIBLE_DEVICES"] == "3"
    mig = Slot(index=0, threads=1, gpu="MIG-5c1d-1/2/0")
    assert trial_env(mig)["CUDA_VISIBLE_DEVICES"] == "MIG-5c1d-1/2/0"


ENV_WORKER = '''
import json, os, runpy, sys
from pathlib import Path
run_dir = Path(next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("run_dir=")))
run_dir.mkdir(parents=True, exist_ok=True)
(run_dir / "env.json").write_text(json.dumps(
    {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "argv": sys.argv[1:]}))
sys.argv = [WORKER, *sys.argv[1:]]
runpy.run_path(WORKER, run_name="__main__")
'''


@pytest.mark.parametrize("visible", ["2,3", "GPU-8f3a2c1e-aaaa,MIG-5c1d-1/2/0"])
def test_each_trial_gets_one_of_the_users_gpus(tmp_path, monkeypatch, visible):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    skip_reports(monkeypatch)
    wrapper = tmp_path / "env_worker.py"
    wrapper.write_text(ENV_WORKER.replace("WORKER", repr(str(WORKER))))
    behaviour = write_behaviour(tmp_path, "fast", seconds_per_point=0.05)
    argv = search_argv(study="gpus", space="lr_prior.yaml", behaviour=behaviour, hp_trials=4,
                       workers=2, flags=["--pruner", "none", "--gpu-fraction", "1"])
    argv[argv.index("--worker") + 1] = f"{sys.executable} {wrapper} --behaviour {behaviour}"
    assert run_search(argv) == 0
    sp = StudyPaths.for_study("gpus")
    seen = [json.loads((sp.trial_dir(n) / "env.json").read_text()) for n in range(4)]
    given = visible.split(",")
    assert {s["CUDA_VISIBLE_DEVICES"] for s in seen} == set(given)  # both, and nothing else
    assert all("env.device=cuda" in s["argv"] for s in seen)


def test_each_gpu_trial_is_told_its_share_of_the_gpus_memory(monkeypatch):
    """--gpu-fraction 0.25: four slots per GPU, each told 0.25; a CPU slot is told nothing, even
    when the orchestrator itself was (a trial started from another trial's environment)."""
    slots = plan_slots(workers=None, use_gpu=True, gpus=["0"], gpu_fraction=0.25,
                       threads_per_trial=1, cpus=8)
    assert len(slots) == 4 and {trial_env(s)[paths.GPU_SHARE_ENV] for s in slots} == {"0.25"}
    monkeypatch.setenv(paths.GPU_SHARE_ENV, "0.5")
    assert paths.GPU_SHARE_ENV not in trial_env(Slot(index=0, threads=1))


def test_a_trial_caps_torchs_allocations_at_its_share_on_a_gpu_only(monkeypatch):
    import torch

    from automl.envs.registry import cap_gpu_memory

    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device: calls.append((fraction, str(device))))
    share = {paths.GPU_SHARE_ENV: "0.25"}
    assert cap_gpu_memory(torch.device("cpu"), share) is None
    assert cap_gpu_memory(torch.device("cuda", 0), {}) is None  # started by hand: no cap
    assert cap_gpu_memory(torch.device("cuda", 0), share) == 0.25
    assert calls == [(0.25, "cuda:0")]
