"""The validation race through the real stage (stand-in worker): seeds go where they decide, the
decision is recorded in validation.csv and validation_race.json, and a later `--mode validate` with
a smaller --validate-top keeps every earlier row and the same pick."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from search_harness import REPO, WORKER, read_csv, skip_reports, write_behaviour

from automl import cli, paths
from automl.paths import StudyPaths

LR_SCORE = {"param": "ppo.learning_rate", "target": 3e-4, "log": True, "width": 0.5}


@pytest.fixture
def log_root(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    return tmp_path / "log"


def argv(mode: str, study: str, behaviour, *extra: str) -> list[str]:
    return ["--mode", mode, "--quiet", "--budget-hours", "0.2", "--workers", "2",
            "--worker", f"{sys.executable} {WORKER} --behaviour {behaviour}",
            "--study-name", study, *extra]


def test_a_clear_gain_ends_the_race_early_and_a_smaller_revalidation_keeps_every_row(
        tmp_path, log_root, monkeypatch, capsys):
    # Grid over 3 learning rates x 2 rollouts; rollouts 24 halve the score, so the start (3e-4, 24
    # rollouts) scores 0.5 and 3e-4 x 48 scores 1.0. The noise is drawn from train.seed alone, so it
    # is the same for every configuration on a seed: the paired gain is exactly 0.5.
    behaviour = write_behaviour(tmp_path, "race", seconds_per_point=0.01, score=LR_SCORE, noise=0.3,
                                rules=[{"when": {"ppo.rollouts": 24},
                                        "score": {**LR_SCORE, "scale": 0.5}}])
    skip_reports(monkeypatch)
    code = cli.main([*argv("stage", "race", behaviour, "--search-method", "grid", "--hp-trials",
                           "6", "--pruner", "none", "--validate-top", "3", "--validate-seeds", "7",
                           "--space", str(REPO / "templates" / "quick_ppo_validation.yaml")),
                     "train.frames=100000", "train.eval_frequency=10000",
                     # No drop stopper: the noisy curves would have it stop the best configuration
                     # at a dip whenever the loop reads a point before the run's last one.
                     "scoring.drop=0"])
    out = capsys.readouterr().out
    assert code == 0, out
    sp = StudyPaths.for_study("race")
    race = json.loads(sp.validation_race.read_text())
    rows = {r["config_id"]: r for r in read_csv(sp.validation_csv)}
    k = len(rows) - 1  # the top 3, one of which may be the start itself (then it is the baseline)
    assert k >= 2 and race["candidates"] == [c for c in rows if c != "baseline"]
    assert race["plan"] == {"candidates": k, "first": 3, "most": 7, "step": 2, "alpha": 0.05}
    assert race["looked_at"] == 3  # the gain was clear at the first look: 4 seeds never ran
    assert f"Holm over {k} candidate(s)" in race["rule"]
    chosen = [c for c, r in rows.items() if r["decision"] == "chosen"]
    assert len(chosen) == 1 and rows["baseline"]["decision"] == "start"
    pick = rows[chosen[0]]
    assert float(pick["improvement"]) == pytest.approx(0.5)
    assert float(pick["p_value"]) < float(pick["test_level"]) < 0.05
    assert {len(r["seeds"].split(";")) for r in rows.values()} == {3}
    for run in sp.validation_dir.iterdir():  # each run says which job it is
        assert json.loads((run / "job.json").read_text())["overrides"][-1].startswith("train.seed=")
    assert (f"automl: result: {chosen[0]} chosen: +0.5 [+0.5, +0.5] over the starting configuration on 3 "
            "fresh seeds") in out
    assert f"Holm over {k}" in out.strip().splitlines()[-1]
    best = yaml.safe_load(sp.best_config.read_text())
    assert best["source"]["config_id"] == chosen[0]

    # A re-validation of the top one only: the earlier candidates are raced again (their runs
    # kept, nothing re-trained), no row is dropped and the pick stays.
    before = {p.name: (p / "summary.json").stat().st_mtime for p in sp.validation_dir.iterdir()}
    code = cli.main(argv("validate", "race", behaviour, "--validate-top", "1", "--validate-seeds", "7"))
    out = capsys.readouterr().out
    assert code == 0, out
    again = {r["config_id"]: r for r in read_csv(sp.validation_csv)}
    assert set(again) == set(rows)
    assert [c for c, r in again.items() if r["decision"] == "chosen"] == chosen
    after = {p.name: (p / "summary.json").stat().st_mtime for p in sp.validation_dir.iterdir()}
    assert after == before  # every run was the same job: kept
    assert "a re-validation adds rows" in out


def test_a_run_folder_of_another_job_is_moved_aside_not_reused(tmp_path):
    from automl.search.trials.runner import Job
    from automl.stages.validate import JOB_FILE, earlier_result

    run = tmp_path / "validation" / "trial_0001_seed1000"
    run.mkdir(parents=True)
    (run / JOB_FILE).write_text(json.dumps({"overrides": ["ppo.learning_rate=0.001", "train.seed=1000"]}))
    (run / "summary.json").write_text(json.dumps({"status": "completed", "score": 9.0, "frames": 10,
                                                  "wall_s": 1.0, "seed": 1000}))
    same = Job(name=run.name, overrides=["ppo.learning_rate=0.001", "train.seed=1000"], run_dir=run)
    kept = earlier_result(same)
    assert kept is not None and kept.score == 9.0
    other = Job(name=run.name, overrides=["ppo.learning_rate=0.0003", "train.seed=1000"], run_dir=run)
    assert earlier_result(other) is None
    assert not run.exists()
    [aside] = list(run.parent.glob(f"{run.name}.superseded-*"))
    assert json.loads((aside / "summary.json").read_text())["score"] == 9.0  # nothing lost
