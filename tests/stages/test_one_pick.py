"""One choice, named the same in every output on every path of one study: a search alone, a stage's
validation, a smaller re-validation, a report, and resumed searches stopped by the budget, by Ctrl-C
and by failures; the files, `analyze.py --study` and the last console line all name it. (A
population's stage: tests/stages/test_pbt.py; a start kept that no search trial ran:
tests/analysis/test_configurations.py.)"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from search_harness import REPO, WORKER, choice_names, trials, write_behaviour

from automl import cli, paths
from automl.paths import StudyPaths

LR_SCORE = {"param": "ppo.learning_rate", "target": 3e-4, "log": True, "width": 0.5}
SPACE = str(REPO / "templates" / "quick_ppo_validation.yaml")
FRAMES = ["train.frames=100000", "train.eval_frequency=10000"]


def argv(mode: str, behaviour, *extra: str, budget: str = "0.2") -> list[str]:
    return ["--mode", mode, "--quiet", "--budget-hours", budget, "--workers", "2",
            "--worker", f"{sys.executable} {WORKER} --behaviour {behaviour}",
            "--study-name", "one_pick", *extra]


def resumed(sp: StudyPaths, behaviour, *extra: str, budget: str = "0.2") -> list[str]:
    """A resumed search with room for 4 more trials."""
    more = str(len(trials(sp)) + 4)
    return [*argv("search", behaviour, "--resume", "--search-method", "random", "--hp-trials", more,
                  "--pruner", "none", *extra, budget=budget), *FRAMES]


def interrupt_once_running(sp: StudyPaths, first_new: int) -> threading.Thread:
    """Ctrl-C (SIGINT to this process, where the search runs) once trial `first_new` runs."""
    def watch() -> None:
        run = sp.trial_dir(first_new) / "config.yaml"
        while not run.exists():
            threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_every_path_names_one_choice(tmp_path, monkeypatch, capsys):
    import automl.analysis.reports as reports

    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    monkeypatch.setattr(reports, "make_plots", lambda *a, **k: [])  # seconds each; tested elsewhere
    behaviour = write_behaviour(tmp_path, "pick", seconds_per_point=0.005, score=LR_SCORE, noise=0.3,
                                rules=[{"when": {"ppo.rollouts": 24}, "score": {**LR_SCORE, "scale": 0.5}}])
    sp = StudyPaths.for_study("one_pick")

    def named(out: str | None = None) -> set[str]:
        names = choice_names(sp, capsys.readouterr().out if out is None else out, capsys)
        assert len(set(names.values())) == 1, names
        return set(names.values())

    assert cli.main([*argv("search", behaviour, "--space", SPACE, "--search-method", "random",
                           "--seed", "3", "--hp-trials", "6", "--pruner", "none"), *FRAMES]) == 0
    named()  # the search's best, not validated

    assert cli.main(argv("validate", behaviour, "--validate-top", "3", "--validate-seeds", "5")) == 0
    pick = named()

    for command in (argv("validate", behaviour, "--validate-top", "1", "--validate-seeds", "5"),
                    argv("report", behaviour)):
        assert cli.main(command) == 0
        assert named() == pick

    # Resumed searches that stop early: their outputs name the validated choice, not the search's
    # best and not a stale export. New trials hold their last point until they are stopped: by the
    # budget (7 s) ...
    held = write_behaviour(tmp_path, "held", hold_until=str(tmp_path / "never"))
    before = len(trials(sp))
    assert cli.main(resumed(sp, held, budget="0.002")) == 0
    out = capsys.readouterr().out
    assert "search ended (budget)" in out and len(trials(sp)) > before
    assert named(out) == pick
    # ... by Ctrl-C ...
    watcher = interrupt_once_running(sp, len(trials(sp)))
    assert cli.main(resumed(sp, held)) == 1
    watcher.join(timeout=5)
    stopped = capsys.readouterr()
    assert "stopped (interrupted); continue with: uv run automl.py --mode" in stopped.err
    assert named(stopped.out) == pick
    # ... and by failures: every new trial crashes (exit 1).
    crash = write_behaviour(tmp_path, "crash", crash_at=10000)
    assert cli.main(resumed(sp, crash, "--max-failure-rate", "0.2")) == 1
    assert named() == pick
    assert json.loads(sp.validation_race.read_text())["candidates"]  # the race's record stands
