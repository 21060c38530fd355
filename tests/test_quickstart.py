"""The README's quick start, as a newcomer runs it: in a fresh copy of the repository, `--help`,
then the CartPole stage at a tiny budget, stopped by Ctrl-C and continued with the command it
printed, and its preset. Nothing may change `git status` of the copy. Real training (CartPole)."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from automl import paths, reasons

REPO = Path(__file__).resolve().parents[1]
TINY = ["--space", "templates/cartpole.yaml", "env=cartpole", "train.eval_frequency=2048"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files (tracked, and new ones git does not ignore) in a fresh git checkout."""
    root = tmp_path_factory.mktemp("newcomer") / "automl"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(source.read_bytes())
    git = ["git", "-c", "user.name=newcomer", "-c", "user.email=newcomer@example.org"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fresh checkout"]):
        subprocess.run([*git, *step], cwd=root, check=True, capture_output=True)
    return root


def environment() -> dict[str, str]:
    """The newcomer's: none of the tests' settings that move outputs out of the project."""
    moved = (paths.LOG_ROOT_ENV, paths.PRESETS_ROOT_ENV, paths.PROJECT_ENV)
    return {k: v for k, v in os.environ.items() if k not in moved}


def run(copy: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=copy, env=environment(),
                          capture_output=True, text=True, timeout=timeout)


def git_status(copy: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=copy, capture_output=True,
                          text=True, check=True).stdout


def test_help_groups_the_flags_and_shows_every_default(copy: Path) -> None:
    done = run(copy, "automl.py", "--help", timeout=60)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for group in ("budget:", "search:", "population-based training", "validation and final run:",
                  "study and storage:"):
        assert group in text, group
    assert "12-hour stage" in text and "(default: 12.0)" in text
    assert "--hp-trials" in text and "default: 8" in text
    entries = re.split(r"\n  (?=-)", text.split("\noptions:", 1)[1])  # one per flag
    switches = ("-h,", "--version", "--resume", "--quiet", "--no-fork-server", "--pbt-barrier")
    flags = {e.split()[0]: " ".join(e.split()) for e in entries if e.startswith("-")}
    assert len(flags) > 30 and "--budget-hours" in flags
    undocumented = [f for f, entry in flags.items() if f not in switches and "default" not in entry]
    assert not undocumented, f"flags whose help shows no default: {undocumented}"


def test_the_quick_start_stopped_by_ctrl_c_and_continued_leaves_a_result(copy: Path) -> None:
    """The README's first result at a tiny budget, with the real train_one through the fork server:
    stopped by Ctrl-C in its search, then continued by the command it printed, it trains to the
    study's trial count with the study's overrides, validates, trains the choice and exports it; no
    real trial fails, and `git status` of the copy stays clean."""
    study = copy / "starter_kit_log" / "automl" / "first-look"
    process = subprocess.Popen(
        [sys.executable, "automl.py", "--mode", "stage", "--budget-hours", "0.1", "--hp-trials", "2",
         "--validate-top", "1", "--screen-seeds", "2", "--validate-seeds", "2",
         "--final-frames-multiplier", "1", "--study-name", "first-look", "--quiet", *TINY,
         "train.frames=4096", "env.num_envs=8", "ppo.mini_batches=2"],
        cwd=copy, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (study / "trials" / "trial_0000" / "config.yaml").exists():
            assert time.monotonic() < deadline and process.poll() is None, "no trial started"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1, err
    [command] = re.findall(r"continue with: (.+)", err)
    words = shlex.split(command)
    assert words[:3] == ["uv", "run", "automl.py"] and "--budget-hours" in words, command
    assert words[words.index("--mode") + 1] == "stage" and words[words.index("--hp-trials") + 1] == "2"
    done = run(copy, *words[2:])
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("automl: result: ") and "the starting configuration" in last
    assert "best validated configuration" in done.stdout
    meta = yaml.safe_load((study / "meta.yaml").read_text())
    assert len(meta["sessions"]) == 2 and meta["sessions"][1]["hp_trials"] == 2
    table = list(csv.DictReader((study / "trial_final.csv").open()))
    for row in table:  # an error in a real run is a bug in train_one or the orchestrator
        assert row["stop_reason"] in (reasons.COMPLETED, reasons.PRUNED, reasons.PLATEAU,
                                      reasons.DROP, reasons.BUDGET), row["error_tail"]
    assert sum(r["stop_reason"] != reasons.BUDGET for r in table) == 2
    # A trial the signal stopped as it started may have no config.yaml yet; every other has.
    configs = list((study / "trials").glob("trial_*/config.yaml"))
    assert len(configs) >= 2
    for config_file in configs:
        config = yaml.safe_load(config_file.read_text())
        assert config["env"]["num_envs"] == 8  # the command line's, kept on resume, over the space's
        summary = config_file.with_name("summary.json")
        if summary.exists():  # a trial the signal stopped before its first update trained 0
            ended = json.loads(summary.read_text())
            assert ended["frames"] > 0 or ended["status"] != "completed", ended
    validated = (study / "validation.csv").read_text().splitlines()
    assert len(validated) == 3 and validated[2].split(",")[0] == "baseline"  # the top, the start
    assert (study / "final" / "model.pt").is_file()
    assert (study / "best_config.yaml").is_file()
    assert (study / "experiment" / "first_look_best.yaml").is_file()
    assert (study / "experiment_df.csv").exists() and (study / "hyperparameter_importance.yaml").exists()
    assert git_status(copy) == ""
    # The preset trains again as the README says, dash and all (--cfg: compose it, print it).
    again = run(copy, "train_one.py", "+experiment=first-look_best", "--cfg", "job", timeout=120)
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load(again.stdout)["experiment"]["study"] == "first-look"
    assert git_status(copy) == ""
