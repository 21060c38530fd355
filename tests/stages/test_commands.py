"""The commands a stopped run prints: the same flags, with a budget and the study's trial count."""

from __future__ import annotations

import shlex

from automl.cli import build_parser, check_flags, to_request
from automl.stages.commands import continue_search, other_flags


def request_of(argv: list[str]):
    args = build_parser().parse_args(argv)
    check_flags(args)
    return to_request(args, argv)


def test_the_continue_command_keeps_every_flag_and_sets_budget_trials_and_resume() -> None:
    argv = ["--mode", "stage", "--trial-timeout", "1800", "--validate-top=5", "--quiet",
            "--space", "templates/cartpole.yaml", "--search-method", "tpe", "--pruner", "median",
            "--storage", "postgresql://me:secret@db/s", "env=cartpole", "train.frames=4096"]
    command = continue_search(request_of(argv), "my-study")
    words = shlex.split(command)
    assert words[:9] == ["uv", "run", "automl.py", "--mode", "stage", "--resume", "--study-name",
                         "my-study", "--budget-hours"]
    assert words[9] == "12" and words[words.index("--hp-trials") + 1] == "8"
    for kept in (["--trial-timeout", "1800"], ["--validate-top=5"], ["--quiet"],
                 ["--space", "templates/cartpole.yaml"], ["--pruner", "median"]):
        at = words.index(kept[0])
        assert words[at:at + len(kept)] == kept, command
    assert "--search-method" not in words  # tpe is the default method
    assert "secret" not in command and words[-2:] == ["--storage", "postgresql://me@db/s"]
    assert "env=cartpole" not in words  # the study keeps its own overrides
    request = request_of(words[3:])  # and it parses as automl.py's command line
    assert request.study.resume and request.budget.hours == 12.0


def test_other_flags_leaves_out_what_it_sets_and_the_overrides() -> None:
    assert other_flags(["--budget-hours", "2", "--resume", "--workers", "1", "x=1",
                        "--hp-trials=3", "--no-fork-server"]) == ["--workers", "1",
                                                                  "--no-fork-server"]
