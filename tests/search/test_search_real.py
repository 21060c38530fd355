"""End to end with the real trial worker (train_one on CartPole), a tiny budget: slow."""

from __future__ import annotations

import json

import pytest
import yaml
from search_harness import REPO, reason_of, rows, run_search, trials

from automl import paths, reasons
from automl.paths import StudyPaths
from automl.search.trials import launcher


@pytest.mark.slow
def test_a_real_search_on_cartpole_ends_every_trial(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    # A pruned trial stops at its next update and writes its summary; on a loaded machine an
    # update can outlast the usual SIGTERM -> SIGKILL grace, and a killed trial writes nothing.
    monkeypatch.setattr(launcher, "TERMINATE_GRACE_S", 120.0)
    code = run_search([
        "--mode", "search", "--quiet", "--budget-hours", "0.5", "--hp-trials", "2",
        "--workers", "1", "--space", str(REPO / "templates" / "cartpole.yaml"),
        "--study-name", "real", "env=cartpole", "train.frames=3000",
        "train.eval_frequency=1000", "env.num_envs=8", "ppo.mini_batches=2"])
    assert code == 0
    sp = StudyPaths.for_study("real")
    table = rows(sp)
    assert sorted(r["trial"] for r in table) == ["0", "1"]
    for r in table:
        # A real run must not fail: an error here is a bug in train_one or the orchestrator.
        assert r["stop_reason"] in (reasons.COMPLETED, reasons.PRUNED, reasons.PLATEAU,
                                    reasons.DROP), r["error_tail"]
    for t in trials(sp):
        assert reason_of(t) == next(r["stop_reason"] for r in table if r["trial"] == str(t.number))
        summary = json.loads((sp.trial_dir(t.number) / "summary.json").read_text())
        assert summary["status"] in ("completed", "stopped")
        assert summary["frames"] > 0
        config = yaml.safe_load((sp.trial_dir(t.number) / "config.yaml").read_text())
        assert config["env"]["num_envs"] == 8  # the command line wins over the space's fixed 16
    assert yaml.safe_load(sp.state.read_text())["phase"] == "search finished"
    assert sp.experiment_df_csv.exists() and sp.importance_yaml.exists()
