"""automl as a package: where it finds its configs and writes its outputs, what its wheel carries,
its console scripts and its version."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from automl import paths

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (paths.PROJECT_ENV, paths.LOG_ROOT_ENV):
        monkeypatch.delenv(name, raising=False)


def project(folder: Path) -> Path:
    (folder / "conf").mkdir(parents=True)
    (folder / "conf" / "train.yaml").write_text("defaults: []\n")
    (folder / "templates").mkdir()
    return folder


def test_the_project_is_the_working_folder_or_the_nearest_above_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_settings: None) -> None:
    mine = project(tmp_path / "mine")
    (mine / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(mine / "sub" / "deeper")
    assert paths.repo_root() == mine
    assert paths.log_root() == mine / "starter_kit_log"
    monkeypatch.chdir(tmp_path)  # no project here or above: the checkout the package runs from
    assert paths.repo_root() == REPO and paths.conf_dir() == REPO / "conf"
    monkeypatch.setenv(paths.PROJECT_ENV, str(mine))  # the setting wins over the working folder
    monkeypatch.chdir(REPO)
    assert paths.repo_root() == mine
    monkeypatch.chdir(tmp_path)  # a relative setting is read from where it was given
    monkeypatch.setenv(paths.PROJECT_ENV, "mine")
    assert paths.repo_root() == mine
    monkeypatch.delenv(paths.PROJECT_ENV)
    other = tmp_path / "other_hydra_app"  # conf/train.yaml alone is any Hydra app's, not automl's
    (other / "conf").mkdir(parents=True)
    (other / "conf" / "train.yaml").write_text("x: 1\n")
    monkeypatch.chdir(other)
    assert paths.repo_root() == REPO


def built_wheel(tmp_path: Path) -> Path:
    out = tmp_path / "dist"
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names itself in $UV
    if uv is None:
        pytest.fail("building the wheel needs uv: run the tests with `uv run pytest`")
    subprocess.run([uv, "build", "--wheel", "--python", sys.executable, "--out-dir", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = out.glob("automl-*.whl")
    return wheel


def test_the_installed_package_runs_from_any_folder_with_its_own_configs(tmp_path: Path) -> None:
    """The wheel carries conf/ and templates/; installed (here: unpacked first on the import path)
    and run from a folder that is no project, it composes from its own copy and writes its outputs
    below the working folder, never into the package."""
    wheel = built_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        z.extractall(tmp_path / "site")
    assert "automl/_project/conf/train.yaml" in names
    assert "automl/_project/templates/ppo_search_space.yaml" in names
    for script in ("automl = automl.cli:main", "automl-train = automl.run.train_one:run",
                   "automl-analyze = automl.analysis.cli:main"):
        assert script in entry_points
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import sys; sys.path.insert(0, sys.argv[1]);"
             "from automl import paths; from automl.config import compose;"
             "cfg = compose(['env=cartpole']);"
             "print(paths.conf_dir()); print(paths.log_root()); print(paths.templates_dir());"
             "print(cfg.env.gym_id)")
    env = {k: v for k, v in os.environ.items()
           if k not in (paths.PROJECT_ENV, paths.LOG_ROOT_ENV)}
    done = subprocess.run([sys.executable, "-P", "-c", probe, str(tmp_path / "site")],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    conf, log, templates, gym_id = done.stdout.split()
    assert Path(conf) == tmp_path / "site" / "automl" / "_project" / "conf"
    assert Path(templates).is_dir() and Path(templates).parent == Path(conf).parent
    assert Path(log) == elsewhere / "starter_kit_log"
    assert gym_id == "CartPole-v1"
    # A trial of it runs in the working folder, told the orchestrator's project and log folders.
    probe = ("import sys; sys.path.insert(0, sys.argv[1]);"
             "from automl import paths; from automl.search.trials.launcher import Slot, trial_env;"
             "env = trial_env(Slot(index=0, threads=1));"
             "print(paths.work_dir()); print(env[paths.PROJECT_ENV]); print(env[paths.LOG_ROOT_ENV])")
    done = subprocess.run([sys.executable, "-P", "-c", probe, str(tmp_path / "site")],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    work, project, trial_log = done.stdout.split()
    assert Path(work) == elsewhere and Path(project) == Path(conf).parent
    assert Path(trial_log) == elsewhere / "starter_kit_log"


def test_version_and_scripts() -> None:
    from automl import __version__

    for script in ("automl.py", "train_one.py", "analyze.py"):
        text = (REPO / script).read_text()
        assert "sys.path" not in text.split('"""', 2)[2], script  # no import-path edits
    done = subprocess.run([sys.executable, "automl.py", "--version"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"automl {__version__}"
    assert __version__[0].isdigit()
