"""`--mode stage` (search -> validation -> final -> reports) and the modes that work on an existing
study (`validate`, `report`), with the stand-in worker; one slow run with the real train_one."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import yaml
from search_harness import REPO, WORKER, read_csv, skip_reports, write_behaviour

from automl import cli, paths
from automl.analysis.export import preset_name
from automl.config import load_run_config
from automl.paths import StudyPaths

LR_SCORE = {"param": "ppo.learning_rate", "target": 3e-4, "log": True, "width": 0.5}
"""Score 1 at learning_rate 3e-4, about 0.1 at 1e-3 and 1e-4."""


def stage_argv(study: str, behaviour, *extra: str, budget: float = 0.2) -> list[str]:
    return ["--mode", "stage", "--quiet", "--budget-hours", str(budget), "--workers", "2",
            "--space", str(REPO / "templates" / "quick_ppo_validation.yaml"),
            "--worker", f"{sys.executable} {WORKER} --behaviour {behaviour}",
            "--study-name", study, *extra, "train.frames=100000", "train.eval_frequency=10000"]


@pytest.fixture
def log_root(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    return tmp_path / "log"


def test_stage_validates_on_fresh_seeds_and_picks_the_validated_mean_over_a_lucky_run(
        tmp_path, log_root, capsys):
    # learning_rate 1e-3 is poor, except under the search's seed 42, where it scores 2.0: the best
    # single search run is a lucky seed. Validation (fresh seeds) must see through it. Rollouts 24
    # halve the score, so the starting configuration (the composed defaults: 3e-4, 24 rollouts)
    # scores 0.5 and 3e-4 with 48 rollouts beats it by 0.5 on every seed.
    lr_half = {**LR_SCORE, "scale": 0.5}
    behaviour = write_behaviour(tmp_path, "lucky", seconds_per_point=0.01, score=LR_SCORE, rules=[
        {"when": {"ppo.rollouts": 24}, "score": lr_half},
        {"when": {"ppo.learning_rate": 0.001, "train.seed": 42},
         "score": {"param": "ppo.learning_rate", "target": 1e-3, "log": True, "scale": 2.0}}])
    # Grid over 3 learning rates x 2 rollouts: the two lucky trials (1e-3) rank first in the search,
    # then 3e-4 x 48; the top 3 go to validation, with the starting configuration as the baseline.
    code = cli.main(stage_argv("lucky", behaviour, "--search-method", "grid", "--hp-trials", "6",
                               "--pruner", "none", "--validate-top", "3", "--validate-seeds", "2"))
    out = capsys.readouterr().out
    assert code == 0
    sp = StudyPaths.for_study("lucky")
    validation = read_csv(sp.validation_csv)
    assert len(validation) == 4
    base = next(row for row in validation if row["config_id"] == "baseline")
    start = json.loads(sp.trial_config(int(base["source_trial"])).read_text())["params"]
    assert start == {"learning_rate": 0.0003, "rollouts": 24}  # the grid trial that ran it
    by_lr: dict[float, list[dict[str, str]]] = {}
    for row in validation:
        if row is not base:
            config = json.loads(sp.trial_config(int(row["source_trial"])).read_text())
            by_lr.setdefault(config["params"]["learning_rate"], []).append(row)
    assert len(by_lr[0.001]) == 2 and len(by_lr[0.0003]) == 1
    good = by_lr[0.0003][0]
    for lucky in by_lr[0.001]:
        assert float(lucky["search_score"]) > float(good["search_score"])  # won the search
        assert float(good["mean"]) > float(lucky["mean"])                  # ... lost validation
        assert float(lucky["improvement"]) < 0
    assert float(good["improvement"]) == pytest.approx(0.5)
    assert float(good["improvement_ci_low"]) > 0 and good["paired_seeds"] == "2"
    assert base["improvement"] == "" and base["seeds"] == good["seeds"]  # the same fresh seeds
    seeds = {int(s) for row in validation for s in row["seeds"].split(";")}
    assert seeds and 42 not in seeds                                    # fresh seeds only
    best = yaml.safe_load(sp.best_config.read_text())
    assert best["ppo"]["learning_rate"] == 0.0003
    assert best["train"]["frames"] == 100000  # the command line's, as it trained
    assert best["source"]["trial"] == int(good["source_trial"])
    # The exported preset reproduces the configuration through train_one's own composition.
    cfg = load_run_config([f"+experiment={preset_name('lucky')}"])
    preset = f"experiment/{preset_name('lucky')}.yaml"
    assert (paths.presets_root() / preset).exists() and not (paths.conf_dir() / preset).exists()
    assert cfg.ppo.learning_rate == 0.0003
    assert cfg.ppo.rollouts == best["ppo"]["rollouts"]
    # The final run trained the choice for frames x 2 and kept its checkpoint.
    final = json.loads((sp.root / "final" / "summary.json").read_text())
    assert final["frames"] == 200000
    state = yaml.safe_load(sp.state.read_text())
    assert state["phase"] == "done"
    assert any("final run: completed" in note for note in state["stage_notes"])
    for name in ("experiment_df.csv", "hyperparameter_importance.yaml"):
        assert (sp.root / name).stat().st_size > 0
    assert sorted(p.name for p in sp.plots_dir.glob("*.png")) == [
        "experiment_variables.png", "importance.png", "multi_trial.png", "optimization_history.png",
        "reward_term_shares.png"]
    assert (paths.latest_importance_yaml()).exists()
    assert "best validated configuration: trial" in out and "95% CI" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"automl: result: {good['config_id']} chosen: +0.5 [+0.5, +0.5] over the "
                           "starting configuration on 2")
    assert state["chosen"]["improvement"] == pytest.approx(0.5)
    assert state["best"]["config_id"] == good["config_id"]
    assert "+0.5 [+0.5, +0.5] over the starting configuration" in sp.best_config.read_text()


def test_stage_splits_its_budget_and_reports_what_did_not_fit(tmp_path, log_root, capsys,
                                                               monkeypatch):
    # 18 s in all, shared 50/40/10. The search fills its 9 s (hp-trials is no limit); 3 x 3
    # validation runs of ~1.3 s each in one slot cannot fit in the ~7 s left, so validation runs
    # fewer configurations or seeds, and the final run (frames x 10) cannot fit at all: each must
    # be reported, never silently dropped. (Validation's share leaves room for a run or two to
    # complete on a loaded machine, where runs take longer than the search's rate predicts.)
    skip_reports(monkeypatch)
    behaviour = write_behaviour(tmp_path, "slowish", seconds_per_point=0.1, score=LR_SCORE)
    argv = stage_argv("split", behaviour, "--hp-trials", "100", "--pruner", "none",
                      "--validate-top", "3", "--validate-seeds", "3",
                      "--final-frames-multiplier", "10", "--stage-shares", "0.5,0.4,0.1",
                      budget=0.005)
    argv[argv.index("--workers") + 1] = "1"
    code = cli.main(argv)
    out = capsys.readouterr().out
    assert code == 0
    sp = StudyPaths.for_study("split")
    state = yaml.safe_load(sp.state.read_text())
    assert state["budget"]["total_s"] == pytest.approx(0.5 * 18.0, abs=0.5)
    notes = " | ".join(state["stage_notes"])
    assert "validation fits" in notes and "configuration(s) x" in notes
    assert "final run skipped: budget too small" in notes
    assert "final run skipped: budget too small" in out
    assert state["phase"] == "done"
    validation = read_csv(sp.validation_csv)
    assert validation and sum(int(r["n_seeds"]) for r in validation) < 9
    assert not (sp.root / "final").exists()


def test_validate_and_report_need_an_existing_study_with_completed_trials(tmp_path, log_root, capsys):
    assert cli.main(["--mode", "validate", "--study-name", "nowhere"]) == 2
    assert "no study of that name exists" in capsys.readouterr().err
    assert cli.main(["--mode", "report"]) == 2
    assert "--study-name" in capsys.readouterr().err
    crash = write_behaviour(tmp_path, "crash", seconds_per_point=0.01, crash_at=10000)
    argv = stage_argv("crashed", crash, "--hp-trials", "4", "--pruner", "none")
    argv[argv.index("stage")] = "search"
    assert cli.main(argv) == 1  # every trial failed: the study stops
    capsys.readouterr()
    assert cli.main(["--mode", "validate", "--study-name", "crashed"]) == 2
    err = capsys.readouterr().err
    assert "no completed trial to validate" in err and err.count("\n") == 1


def test_report_mode_rewrites_the_reports_of_an_existing_study(tmp_path, log_root, capsys,
                                                               monkeypatch):
    behaviour = write_behaviour(tmp_path, "ok", seconds_per_point=0.01, score=LR_SCORE)
    argv = stage_argv("reported", behaviour, "--hp-trials", "3", "--pruner", "none")
    argv[argv.index("stage")] = "search"
    assert cli.main(argv) == 0
    sp = StudyPaths.for_study("reported")
    sp.experiment_df_csv.unlink()
    monkeypatch.setattr("automl.analysis.reports.make_plots", lambda *a, **k: [])
    assert cli.main(["--mode", "report", "--study-name", "reported"]) == 0
    with sp.experiment_df_csv.open() as handle:
        assert len(list(csv.DictReader(handle))) == 3
