"""Samples that train_one would refuse (mini-batches of a handful of samples, a value its own rule
forbids) are refused before launch like a constraint violation, warned of at start, and never
count as failures; train_one's own message names the file the bad value came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState
from search_harness import (
    REPO,
    SHORT_TRIALS,
    reason_of,
    rows,
    run_search,
    search_argv,
    skip_reports,
    trials,
    write_behaviour,
)

from automl import paths, reasons
from automl.config import compose_with_choices, load_run_config, to_run_config
from automl.errors import EXIT_BAD_INPUT, ConfigError
from automl.paths import StudyPaths
from automl.search.space import Feasibility, load_space, nothing_runs, refuse_space

SPACE = """search_space_id: "{id}"
fixed:
  num_envs: 16
  rollouts: 16
ppo_params:
{params}"""
"""16 envs x 16 rollouts = 256 samples per update: at most 8 mini-batches of 32."""


def space_file(folder: Path, params: str, name: str = "mb") -> Path:
    """A space of `params` (text under ppo_params) with SPACE's fixed values, but for a searched
    rollouts."""
    text = SPACE.format(id=name, params=params)
    if "  rollouts: {" in params:
        text = text.replace("  rollouts: 16\n", "", 1)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def feasibility(folder: Path, params: str, overrides: list[str] | None = None) -> Feasibility:
    space = load_space(space_file(folder, params), reward_terms=["env_reward"])
    return Feasibility.compose(space, ["env=cartpole", *(overrides or [])])


# ------------------------------------------------------------------------------ the check itself
PROBLEMS = [
    # values -> the key train_one refuses and a fragment of its rule (None: it runs)
    ({"mini_batches": 8}, None),
    ({"mini_batches": 2, "learning_epochs": 4}, None),
    ({"mini_batches": 16}, ("ppo.mini_batches", "16 x 16 environments / 16 mini-batches = 16 "
                                                "samples per mini-batch, below 32")),
    ({"mini_batches": 64}, ("ppo.mini_batches", "= 4 samples per mini-batch, below 32")),
    ({"learning_epochs": 0}, ("ppo.learning_epochs", "it must be > 0")),
    ({"mini_batches": 0}, ("ppo.mini_batches", "it must be > 0")),
]


@pytest.mark.parametrize(("values", "refused"), PROBLEMS)
def test_problem_is_train_ones_own_refusal(tmp_path, values, refused):
    check = feasibility(tmp_path, "  mini_batches: {type: choice, values: [0, 2, 8, 16, 64]}\n"
                                  "  learning_epochs: {type: choice, values: [0, 4]}\n")
    error = check.problem(values)
    if refused is None:
        assert error is None
        return
    assert error is not None
    key, says = refused
    assert error.key == key and says in error.rule, error.message
    # the same verdict as composing the trial's whole config, as train_one does
    overrides = [*check.space.fixed_overrides(), *(check.space.param(n).override(v)
                                                   for n, v in values.items()), "env=cartpole"]
    with pytest.raises(ConfigError) as info:
        load_run_config(overrides)
    assert (info.value.key, info.value.rule) == (error.key, error.rule)


def test_the_command_line_wins_over_a_sampled_value(tmp_path):
    check = feasibility(tmp_path, "  mini_batches: {type: choice, values: [2, 64]}\n",
                        ["ppo.mini_batches=4"])
    assert check.problem({"mini_batches": 64}) is None  # the trial trains 4 mini-batches
    assert check.never_runs() == []


NEVER = [
    # mini_batches values, other searched parameters -> values reported as never running
    ("[2, 4, 64]", "", {("mini_batches", 64)}),
    ("[8, 16]", "  rollouts: {type: randint, low: 4, high: 32}\n", {("rollouts", 4)}),
    ("[2, 4]", "", set()),
    ("[2, 0]", "  learning_epochs: {type: choice, values: [4, 0]}\n",
     {("mini_batches", 0), ("learning_epochs", 0)}),
    ("[16, 64]", "  rollouts: {type: choice, values: [16, 64]}\n",
     {("mini_batches", 64), ("rollouts", 16)}),
]


@pytest.mark.parametrize(("choices", "more", "never"), NEVER)
def test_never_runs_finds_each_value_no_sample_can_run_with(tmp_path, choices, more, never):
    check = feasibility(tmp_path, f"  mini_batches: {{type: choice, values: {choices}}}\n{more}")
    found = check.never_runs()
    assert {(n.param.name, n.value) for n in found} == never
    assert nothing_runs(found) is None


def test_a_value_that_never_runs_is_described_at_its_most_favourable_point(tmp_path):
    check = feasibility(tmp_path, "  mini_batches: {type: choice, values: [4, 64]}\n"
                                  "  rollouts: {type: choice, values: [8, 16]}\n")
    [item] = check.never_runs()
    assert item.describe() == (
        "mini_batches=64 can never run with num_envs=16, rollouts<=16 (rollouts 16 x 16 "
        "environments / 64 mini-batches = 4 samples per mini-batch, below 32)")


def test_a_parameter_none_of_whose_values_can_run_is_refused(tmp_path):
    check = feasibility(tmp_path, "  mini_batches: {type: choice, values: [16, 64]}\n")
    stuck = nothing_runs(check.never_runs())
    assert stuck is not None and stuck.value == 16  # the most favourable choice
    error = refuse_space(stuck, check.space.source)
    assert error.key == "ppo_params.mini_batches" and error.value == [16, 64]
    assert "none of its values can run" in error.message
    assert "Fix: set ppo.mini_batches=8 or fewer" in error.message


def test_a_base_only_the_searched_mini_batches_refuse_starts_from_one_that_runs(tmp_path):
    # Ant's own PPO preset trains 32 mini-batches: 16 x 16 / 32 = 8 samples, but the space
    # searches the count.
    check = feasibility(tmp_path, "  mini_batches: {type: choice, values: [64, 2]}\n", ["env=ant"])
    assert check.base_config().ppo.mini_batches == 2 and check.reference == {"mini_batches": 2}
    assert [(n.param.name, n.value) for n in check.never_runs()] == [("mini_batches", 64)]


def test_a_base_the_space_cannot_mend_is_refused_as_train_one_refuses_it(tmp_path):
    check = feasibility(tmp_path, "  learning_rate: {type: choice, values: [1e-4, 3e-4]}\n",
                        ["env=ant"])
    with pytest.raises(ConfigError) as info:
        check.base_config()
    assert info.value.key == "ppo.mini_batches"
    assert info.value.file == "conf/ppo/mujoco.yaml or the command line"


# --------------------------------------------------------------- the file a bad value came from
@pytest.mark.parametrize(("overrides", "file"), [
    (["env=ant", "env.num_envs=1"], "conf/ppo/mujoco.yaml"),  # ant's defaults list picks it
    (["env=cartpole", "env.num_envs=1"], "conf/env/cartpole.yaml"),  # cartpole sets mini_batches
    (["env.num_envs=1"], "conf/ppo/default.yaml"),
    (["env=ant", "train.frames=0"], "conf/env/ant.yaml"),
    (["train.frames=0"], "conf/train.yaml"),
])
def test_a_bad_value_names_the_file_hydra_composed(overrides, file):
    with pytest.raises(ConfigError) as info:
        load_run_config(overrides)
    assert info.value.file == f"{file} or the command line"
    cfg, choices = compose_with_choices(overrides)  # what train_one checks
    with pytest.raises(ConfigError) as info:
        to_run_config(cfg, choices=choices)
    assert info.value.file == f"{file} or the command line"


def test_train_one_names_the_ppo_file_an_env_picks(tmp_path):
    env = {**os.environ, paths.LOG_ROOT_ENV: str(tmp_path / "log")}
    done = subprocess.run([sys.executable, "train_one.py", "env=ant", "env.num_envs=1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert done.stderr.startswith("train_one: error: conf/ppo/mujoco.yaml or the command line: "
                                  "`ppo.mini_batches` is 32"), done.stderr
    assert "conf/ppo/default.yaml" not in done.stderr


# ---------------------------------------------------------------------------------- in a search
@pytest.fixture
def log_root(tmp_path, monkeypatch):
    root = tmp_path / "log"
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(root))
    skip_reports(monkeypatch)
    return root


def argv_without_mini_batches(**kwargs) -> list[str]:
    """search_argv, without the short trials' `ppo.mini_batches=4` (it would win over a sample)."""
    return [a for a in search_argv(**kwargs) if a != "ppo.mini_batches=4"]


def test_samples_train_one_would_refuse_are_never_launched(tmp_path, log_root, capsys):
    space = space_file(tmp_path, "  mini_batches: {type: choice, values: [2, 4, 64]}\n"
                                 "  learning_rate: {type: choice, values: [1e-4, 3e-4]}\n")
    behaviour = write_behaviour(tmp_path, "fast", seconds_per_point=0.01)
    # A refused trial counted as a failure would end this study at once (rate 0).
    argv = argv_without_mini_batches(
        study="refused", space=space, behaviour=behaviour, hp_trials=10,
        flags=["--search-method", "grid", "--pruner", "none", "--max-failure-rate", "0"])
    assert run_search(argv) == 0
    out, err = capsys.readouterr()
    assert (f"automl: warning: {space}: mini_batches=64 can never run with num_envs=16, "
            "rollouts=16 (rollouts 16 x 16 environments / 64 mini-batches = 4 samples per "
            "mini-batch, below 32); such samples are refused before launch") in err
    assert "search ended (grid)" in out
    sp = StudyPaths.for_study("refused")
    table = rows(sp)
    assert sorted(int(r["mini_batches"]) for r in table) == [2, 2, 4, 4, 64, 64]
    for row in table:
        refused = row["mini_batches"] == "64"
        assert row["stop_reason"] == (reasons.CONSTRAINT if refused else reasons.COMPLETED), row
        if refused:
            assert row["frames"] == "0"
            assert row["error_tail"] == (
                "cannot run (train_one refuses it): `ppo.mini_batches` is 64, but rollouts 16 x "
                "16 environments / 64 mini-batches = 4 samples per mini-batch, below 32")
    for t in trials(sp):
        if t.params["mini_batches"] != 64:
            assert reason_of(t) == reasons.COMPLETED
            assert sp.trial_dir(t.number).exists()
            continue
        assert reason_of(t) == reasons.CONSTRAINT
        assert t.state == TrialState.PRUNED
        assert t.system_attrs.get("constraints:space") == 1.0  # the sampler sees it infeasible
        assert not sp.trial_dir(t.number).exists()  # the worker was never started
        assert json.loads(sp.trial_config(t.number).read_text())["overrides"] == []


def test_a_space_none_of_whose_values_can_run_exits_2(tmp_path, log_root, capsys):
    space = space_file(tmp_path, "  mini_batches: {type: choice, values: [16, 64]}\n")
    behaviour = write_behaviour(tmp_path, "fast", seconds_per_point=0.01)
    argv = argv_without_mini_batches(study="stuck", space=space, behaviour=behaviour, hp_trials=2)
    assert "ppo.mini_batches=4" in SHORT_TRIALS  # what the helper drops
    assert run_search(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for fragment in (str(space), "`ppo_params.mini_batches` is [16, 64]", "none of its values can run",
                     "16 samples per mini-batch, below 32", "Fix: set ppo.mini_batches=8 or fewer"):
        assert fragment in err[0], f"{fragment!r} missing from: {err[0]}"
    assert not StudyPaths.for_study("stuck").root.exists()
