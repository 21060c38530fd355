"""One choice, named the same in every output on every path of one study: a search alone, a stage's
validation, a smaller re-validation, a report, and a resumed search that stops on failures; the
files, `analyze.py --study` and the last console line all name it."""

from __future__ import annotations

import json
import sys

import yaml
from search_harness import REPO, WORKER, read_csv, write_behaviour

from automl import cli, paths
from automl.analysis import cli as analyze
from automl.paths import StudyPaths

LR_SCORE = {"param": "ppo.learning_rate", "target": 3e-4, "log": True, "width": 0.5}
SPACE = str(REPO / "templates" / "quick_ppo_validation.yaml")


def argv(mode: str, behaviour, *extra: str) -> list[str]:
    return ["--mode", mode, "--quiet", "--budget-hours", "0.2", "--workers", "2",
            "--worker", f"{sys.executable} {WORKER} --behaviour {behaviour}",
            "--study-name", "one_pick", *extra]


def named(sp: StudyPaths, out: str, capsys) -> dict[str, str]:
    """The configuration each output names as the study's choice."""
    best = yaml.safe_load(sp.best_config.read_text())["source"]
    state = yaml.safe_load(sp.state.read_text())
    importance = yaml.safe_load(sp.importance_yaml.read_text())
    names = {"best_config.yaml": best.get("config_id") or f"trial_{best['trial']:04d}",
             "automl_state.yaml best": state["best"]["config_id"],
             "configurations.csv": read_csv(sp.configurations_csv)[0]["config_id"],
             "importance chosen": importance["chosen"]["config_id"],
             "experiment_df.csv": read_csv(sp.experiment_df_csv)[0]["configuration"]}
    if state.get("chosen"):
        names["automl_state.yaml chosen"] = state["chosen"]["config_id"]
    last = out.strip().splitlines()[-1]
    if last.startswith("automl: result: "):  # after validation: the result line names the pick
        names["last console line"] = (names["best_config.yaml"] if "over the starting" in last
                                      else "baseline")
    assert analyze.main(["--study", "one_pick"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("chosen: "))
    names["analyze.py"] = line.removeprefix("chosen: ").split(",")[0]
    return names


def test_every_path_names_one_choice(tmp_path, monkeypatch, capsys):
    import automl.analysis.reports as reports

    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    monkeypatch.setattr(reports, "make_plots", lambda *a, **k: [])  # seconds each; tested elsewhere
    behaviour = write_behaviour(tmp_path, "pick", seconds_per_point=0.005, score=LR_SCORE, noise=0.3,
                                rules=[{"when": {"ppo.rollouts": 24}, "score": {**LR_SCORE, "scale": 0.5}}])
    sp = StudyPaths.for_study("one_pick")
    frames = ["train.frames=100000", "train.eval_frequency=10000"]

    assert cli.main([*argv("search", behaviour, "--space", SPACE, "--search-method", "random",
                           "--seed", "3", "--hp-trials", "6", "--pruner", "none"), *frames]) == 0
    searched = named(sp, capsys.readouterr().out, capsys)
    assert len(set(searched.values())) == 1, searched

    assert cli.main(argv("validate", behaviour, "--validate-top", "3", "--validate-seeds", "5")) == 0
    validated = named(sp, capsys.readouterr().out, capsys)
    assert len(set(validated.values())) == 1, validated
    pick = validated["best_config.yaml"]

    for command in (argv("validate", behaviour, "--validate-top", "1", "--validate-seeds", "5"),
                    argv("report", behaviour)):
        assert cli.main(command) == 0
        assert set(named(sp, capsys.readouterr().out, capsys).values()) == {pick}

    # A resumed search whose every new trial crashes stops on failures (exit 1): its outputs still
    # name the validated choice, not the search's best and not a stale export.
    crash = write_behaviour(tmp_path, "crash", crash_at=10000)
    assert cli.main([*argv("search", crash, "--resume", "--search-method", "random", "--hp-trials", "12",
                           "--pruner", "none", "--max-failure-rate", "0.2"), *frames]) == 1
    out = capsys.readouterr().out
    assert set(named(sp, out, capsys).values()) == {pick}
    assert json.loads(sp.validation_race.read_text())["candidates"]  # the race's record stands
