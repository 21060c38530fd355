"""Bad input (space file, flags, study name) exits 2 with one message naming the file, the key,
the value and the fix, before anything is launched, and leaves an existing study untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from search_harness import (
    SHORT_TRIALS,
    SPACES,
    read_csv,
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


# name -> (flags and overrides, fragments the message names); each on a new study, no --resume
# unless the case says so: nothing may be written, not even the study's folder.
FLAG_CASES: dict[str, tuple[list[str], list[str]]] = {
    "resume a study that does not exist": (
        ["--resume"], ["fresh", "--study-name", "'fresh'", "--resume needs an existing study",
                       "drop --resume"]),
    "grace frames = train.frames": (
        ["--grace-frames", "100000"], ["command line", "--grace-frames", "100000",
                                       "below train.frames (100000)", "lower --grace-frames"]),
    "grace frames above train.frames": (
        ["--grace-frames", "250000"], ["--grace-frames", "250000", "below train.frames"]),
    "grace frames 0": (["--grace-frames", "0"], ["--grace-frames", "0", "must be > 0"]),
    "cuda without a GPU": (["env.device=cuda"], ["command line", "`env.device`", "'cuda'",
                                                 "no NVIDIA GPU is visible", "env.device=auto"]),
    "workers 0": (["--workers", "0"], ["--workers", "0", "must be >= 1", "drop it"]),
    "workers negative": (["--workers", "-2"], ["--workers", "-2", "must be >= 1"]),
    "gpu fraction 0": (["--gpu-fraction", "0"], ["--gpu-fraction", "0.0", "(0, 1]",
                                                 "--gpu-fraction 0.25"]),
    "gpu fraction above 1": (["--gpu-fraction", "1.5"], ["--gpu-fraction", "1.5", "(0, 1]"]),
    "failure rate above 1": (["--max-failure-rate", "1.5"], ["--max-failure-rate", "1.5",
                                                             "[0, 1]", "--max-failure-rate 0.5"]),
    "failure rate negative": (["--max-failure-rate", "-0.1"], ["--max-failure-rate", "-0.1"]),
    "two stage shares": (["--stage-shares", "0.5,0.5"], ["--stage-shares", "'0.5,0.5'",
                                                         "three non-negative shares summing to 1",
                                                         "--stage-shares 0.7,0.2,0.1"]),
    "stage shares not numbers": (["--stage-shares", "a,b,c"], ["--stage-shares", "'a,b,c'"]),
    "stage shares summing to 1.1": (["--stage-shares", "0.7,0.2,0.2"], ["'0.7,0.2,0.2'"]),
    "negative stage share": (["--stage-shares=-0.1,0.6,0.5"], ["'-0.1,0.6,0.5'"]),
    "override without =": (["trainframes"], ["`overrides`", "'trainframes'", "key=value",
                                              "train.frames=200000"]),
}


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_bad_flag_exits_2_with_one_message_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    log = tmp_path / "log"
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(log))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever the machine has
    extra, fragments = FLAG_CASES[case]
    message = run_bad(["--mode", "stage", "--quiet", "--space", GOOD_SPACE, "--study-name",
                       "fresh", "--worker", "false", *extra, *SHORT_TRIALS], capsys)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    assert not log.exists(), f"bad input wrote {sorted(log.rglob('*'))}"


def test_a_space_whose_constraints_reject_every_sample_exits_2(tmp_path, monkeypatch, capsys):
    # The loop gives up after MAX_CONSTRAINT_REJECTIONS (1000) rejections in a row; 25 here keeps
    # the test fast (each rejection is a recorded trial: 1000 take about two minutes of journal
    # writes), the rule is the same.
    from automl.search.optuna_loop import scheduler

    monkeypatch.setattr(scheduler, "MAX_CONSTRAINT_REJECTIONS", 25)
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    space = tmp_path / "never.yaml"
    space.write_text(SPACE_HEAD + "ppo_params:\n  learning_rate: {type: choice, values: "
                     "[1e-3, 3e-3]}\nconstraints:\n  - \"learning_rate > 5e-4\"\n")
    behaviour = write_behaviour(tmp_path, "fast", seconds_per_point=0.01)
    argv = search_argv(study="never", space=space, behaviour=behaviour, hp_trials=3,
                       flags=["--search-method", "random", "--seed", "0"])
    assert run_search(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for fragment in (str(space), "`constraints`", "learning_rate > 5e-4",
                     "25 sampled configurations in a row", "Fix: loosen the constraints"):
        assert fragment in err[0], f"{fragment!r} missing from: {err[0]}"
    sp = StudyPaths.for_study("never")
    reasons_seen = {r["stop_reason"] for r in read_csv(sp.trial_final_csv)}
    assert reasons_seen == {"constraint"}
    assert not sp.trials_dir.exists(), "a rejected configuration was trained"


def test_tpe_names_the_default_method_and_the_study_records_bayesian(tmp_path, monkeypatch):
    """rl-zoo3 and Optuna users say `tpe`: the same multivariate TPE as `bayesian`."""
    from automl.cli import build_parser, check_flags, to_request
    from automl.errors import ConfigError

    args = build_parser().parse_args(["--search-method", "tpe"])
    check_flags(args)
    request = to_request(args, ["--search-method", "tpe"])
    assert request.search.method == "bayesian"
    args = build_parser().parse_args(["--search-method", "tse"])
    with pytest.raises(ConfigError, match="bayesian, random, grid, cmaes, pbt"):
        check_flags(args)


def test_a_run_without_a_budget_says_how_long_it_may_take(tmp_path, monkeypatch, capsys):
    """The 12-hour default is said before the first trial starts, and only after the input
    checks (a wrong input still gets its one message)."""
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)
    quick = write_behaviour(tmp_path, "quick", seconds_per_point=0.0)
    argv = search_argv(study="unbudgeted", space="lr_prior.yaml", behaviour=quick, hp_trials=1,
                       workers=1)
    del argv[argv.index("--budget-hours"):argv.index("--budget-hours") + 2]
    assert run_search(argv) == 0
    out = capsys.readouterr().out
    said = out.index("no --budget-hours given: this search runs for up to 12 hours")
    assert said < out.index("trial    0")
