"""Bad input (space file, flags, study name) exits 2 with one message naming the file, the key,
the value and the fix, before anything is launched, and leaves an existing study untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from search_harness import (
    SHORT_TRIALS,
    SPACES,
    run_search,
    search_argv,
    skip_reports,
    write_behaviour,
)

from automl import paths
from automl.errors import EXIT_BAD_INPUT
from automl.paths import StudyPaths

GOOD_SPACE = str(SPACES / "two_by_two.yaml")
SPACE_HEAD = 'search_space_id: "bad"\n'

# name -> (space file text, or None for GOOD_SPACE; extra flags; fragments the message names)
CASES: dict[str, tuple[str | bytes | None, list[str], list[str]]] = {
    "missing space file": (None, ["--space", "no/such/space.yaml"],
                           ["no/such/space.yaml", "--space", "does not exist", "templates/"]),
    "unreadable space file": (b"search_space_id: \xff\xfe\n", [],
                              ["bad.yaml", "<file>", "cannot be read"]),
    "malformed yaml": (SPACE_HEAD + "ppo_params:\n  learning_rate: {type: choice, values: [1, 2\n",
                       [], ["bad.yaml", "line ", "not valid YAML"]),
    "unknown section": (SPACE_HEAD + "ppo_param:\n  rollouts: {type: choice, values: [16]}\n", [],
                        ["bad.yaml", "`ppo_param`", "not a section", "ppo_params"]),
    "unknown parameter": (SPACE_HEAD + "ppo_params:\n  learning_rat: {type: uniform, low: 0.1, "
                          "high: 0.2}\n", [],
                          ["bad.yaml", "ppo_params.learning_rat", "'learning_rat'",
                           "did you mean `learning_rate`"]),
    "unknown type": (SPACE_HEAD + "ppo_params:\n  learning_rate: {type: lognormal, low: 1e-5, "
                     "high: 1e-3}\n", [],
                     ["bad.yaml", "ppo_params.learning_rate.type", "'lognormal'", "loguniform"]),
    "low >= high": (SPACE_HEAD + "ppo_params:\n  ratio_clip: {type: uniform, low: 0.3, "
                    "high: 0.1}\n", [],
                    ["bad.yaml", "ppo_params.ratio_clip.high", "0.1", "greater than `low`"]),
    "loguniform crossing 0": (SPACE_HEAD + "reward_weights:\n  torques: {type: loguniform, "
                              "low: -1e-3, high: 1e-3}\n", [],
                              ["bad.yaml", "reward_weights.torques.low", "-1e-3",
                               "touch or cross 0"]),
    "empty choice list": (SPACE_HEAD + "ppo_params:\n  rollouts: {type: choice, values: []}\n", [],
                          ["bad.yaml", "ppo_params.rollouts.values", "[]", "non-empty"]),
    "prior outside range": (SPACE_HEAD + "ppo_params:\n  learning_rate: {type: loguniform, "
                            "low: 1e-5, high: 1e-3, prior: 1e-2}\n", [],
                            ["bad.yaml", "ppo_params.learning_rate.prior", "1e-2",
                             "must lie in"]),
    "bad constraint": (SPACE_HEAD + "ppo_params:\n  rollouts: {type: choice, values: [16, 32]}\n"
                       "constraints:\n  - \"__import__('os').system('true') or rollouts > 16\"\n",
                       [], ["bad.yaml", "constraints[0]", "__import__", "a function call"]),
    "unknown search method": (None, ["--search-method", "annealing"],
                              ["command line", "--search-method", "'annealing'", "bayesian"]),
    "unknown pruner": (None, ["--pruner", "asha"], ["command line", "--pruner", "'asha'",
                                                     "hyperband"]),
    "zero budget": (None, ["--budget-hours", "0"], ["command line", "--budget-hours", "0.0",
                                                     "must be > 0"]),
    "zero hp trials": (None, ["--hp-trials", "0"], ["command line", "--hp-trials", "0",
                                                     "must be > 0"]),
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A finished one-trial study, and a snapshot of every file under the log root."""
    tmp = tmp_path_factory.mktemp("existing")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp / "log"))
        skip_reports(monkeypatch)
        behaviour = write_behaviour(tmp, "fast", seconds_per_point=0.01)
        argv = search_argv(study="existing", space=GOOD_SPACE, behaviour=behaviour, hp_trials=1)
        assert run_search(argv) == 0
    sp = StudyPaths(tmp / "log" / "automl" / "existing")
    assert (sp.trial_dir(0) / "summary.json").exists()
    return tmp / "log", sp


def run_bad(argv: list[str], capsys) -> str:
    """Exit code 2 and exactly one line on stderr, nothing on stdout; returns the line."""
    assert run_search(argv) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("automl: error: ") and "Fix: " in lines[0]
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_message_and_touches_nothing(case, existing, tmp_path,
                                                                monkeypatch, capsys):
    log, sp = existing
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(log))
    text, flags, fragments = CASES[case]
    space = GOOD_SPACE
    if text is not None:
        bad = tmp_path / "bad.yaml"
        bad.write_bytes(text if isinstance(text, bytes) else text.encode())
        space = str(bad)
    before = snapshot(log)
    # --resume of the existing study: a mistake must not reach its folder.
    message = run_bad(["--mode", "search", "--quiet", "--space", space, "--resume",
                       "--study-name", sp.name, "--worker", "false", *flags, *SHORT_TRIALS],
                      capsys)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    assert snapshot(log) == before


def test_an_existing_study_needs_resume(existing, monkeypatch, capsys):
    log, sp = existing
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(log))
    before = snapshot(log)
    message = run_bad(["--mode", "search", "--quiet", "--space", GOOD_SPACE, "--study-name",
                       sp.name, "--worker", "false", *SHORT_TRIALS], capsys)
    for fragment in (str(sp.root), "--study-name", "'existing'", "exists already", "--resume"):
        assert fragment in message
    assert snapshot(log) == before


def test_a_bad_new_study_creates_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    run_bad(["--mode", "search", "--quiet", "--space", GOOD_SPACE, "--pruner", "asha",
             "--study-name", "fresh", *SHORT_TRIALS], capsys)
    bad = tmp_path / "bad.yaml"
    bad.write_text(CASES["unknown type"][0])  # type: ignore[arg-type]
    run_bad(["--mode", "search", "--quiet", "--space", str(bad), "--study-name", "fresh",
             *SHORT_TRIALS], capsys)
    assert not (tmp_path / "log").exists()
