"""The default live console (no --quiet): a real search renders its table of running trials,
the counts by stop reason, the best trial and the time left."""

from __future__ import annotations

import io
import re

from rich.console import Console
from search_harness import rows, run_search, search_argv, skip_reports, write_behaviour

from automl import paths
from automl.paths import StudyPaths
from automl.search.optuna_loop import console


def test_a_search_without_quiet_renders_the_live_table(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    recorded: list[Console] = []

    def recording_console(**kwargs):  # a terminal the test can read back
        out = Console(file=io.StringIO(), force_terminal=True, width=140, record=True, **kwargs)
        recorded.append(out)
        return out

    monkeypatch.setattr(console, "Console", recording_console)
    # Trial 0 (the prior, lr = 3e-4) runs 3 s while trials 1 and 2 end: the table shows it
    # running beside their counts.
    behaviour = write_behaviour(tmp_path, "one_slow", seconds_per_point=0.02, rules=[
        {"when": {"ppo.learning_rate": 3e-4}, "seconds_per_point": 0.3}])
    argv = search_argv(study="live", space="lr_prior.yaml", behaviour=behaviour, hp_trials=3,
                       flags=["--pruner", "none", "--search-method", "random", "--seed", "1"])
    argv.remove("--quiet")
    assert run_search(argv) == 0
    assert len(rows(StudyPaths.for_study("live"))) == 3
    [out] = recorded
    text = out.export_text()
    assert "study live: running trials" in text
    for column in ("trial", "frames", "score", "elapsed", "slot"):
        assert column in text
    # A row of trial 0 while it ran: its number, frames done of 100,000, its slot.
    assert re.search(r"│\s+0\s+│\s+[\d,]+/100,000\s+│", text), text
    assert re.search(r"started [123]/3 \([012] running\)\s+finished: completed [12]\b", text), text
    # The best says what it rests on: one run, or a mean over its confirmed seeds.
    assert re.search(r"best: trial [12] score [\d.e-]+ \((one run, not confirmed|search mean over \d "
                     r"seeds)\)\s+time left: 0h0[0-2]m\d\ds", text), text
    assert "trial    1 ended: completed" in text and "trial    0 ended: completed" in text


def test_without_a_terminal_the_last_table_ends_its_line(tmp_path, monkeypatch):
    """Piped to a file, rich prints the table once, when the search ends: the final counts (not a
    throttled earlier frame), and a line break before the next message."""
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    recorded: list[Console] = []

    def piped_console(**kwargs):
        out = Console(file=io.StringIO(), force_terminal=False, width=140, record=True, **kwargs)
        recorded.append(out)
        return out

    monkeypatch.setattr(console, "Console", piped_console)
    behaviour = write_behaviour(tmp_path, "quick", seconds_per_point=0.02)
    argv = search_argv(study="piped", space="lr_prior.yaml", behaviour=behaviour, hp_trials=3,
                       flags=["--pruner", "none", "--search-method", "random", "--seed", "1"])
    argv.remove("--quiet")
    assert run_search(argv) == 0
    [out] = recorded
    text = out.file.getvalue()
    assert re.search(r"time left: \dh\d\dm\d\ds\nautoml: search ended", text), text
    assert "started 3/3 (0 running)   finished: completed 3" in text, text
