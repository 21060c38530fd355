"""Every output path of the project: a run's folder, a study's folder, the shared analysis folder."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

LOG_ROOT_ENV = "AUTOML_LOG_ROOT"
"""Environment variable that moves `starter_kit_log/` elsewhere (tests use it)."""
PRESETS_ROOT_ENV = "AUTOML_PRESETS_ROOT"
"""Environment variable naming a folder that takes every exported preset (`<folder>/experiment/`)
instead of each study's folder; composition searches it too (automl.presets)."""


PROJECT_ENV = "AUTOML_PROJECT"
"""Environment variable naming the project folder (the one holding `conf/` and `templates/`)."""
BUNDLED = "_project"
"""The copy of `conf/` and `templates/` an installed package carries (pyproject.toml)."""


def package_parent() -> Path:
    """The folder this package is imported from: `src/` of a checkout, site-packages of an install."""
    return Path(__file__).resolve().parents[1]


def _is_project(folder: Path) -> bool:
    """conf/train.yaml and templates/: automl's layout, not just any Hydra project's."""
    return (folder / "conf" / "train.yaml").is_file() and (folder / "templates").is_dir()


def repo_root() -> Path:
    """The project's folder, holding `conf/` and `templates/` (and `starter_kit_log/`):
    $AUTOML_PROJECT; else the working folder or the nearest folder above it that holds
    `conf/train.yaml` and `templates/`; else the checkout this package runs from; else the copy of
    `conf/` and `templates/` an installed package carries. So an installed package runs from any
    folder, and a folder of the user's own with its `conf/` wins."""
    override = os.environ.get(PROJECT_ENV)
    if override:
        return Path(override).resolve()
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if _is_project(folder):
            return folder
    checkout = package_parent().parent
    return checkout if _is_project(checkout) else Path(__file__).resolve().parent / BUNDLED


def conf_dir() -> Path:
    """`conf/`: the Hydra config groups a run is composed from."""
    return repo_root() / "conf"


def presets_root() -> Path | None:
    """$AUTOML_PRESETS_ROOT, where exported presets go instead of their study's folder; else None."""
    override = os.environ.get(PRESETS_ROOT_ENV)
    return Path(override) if override else None


def templates_dir() -> Path:
    """`templates/`: the search space presets."""
    return repo_root() / "templates"


def bundled() -> bool:
    """Whether the project is the copy of `conf/` and `templates/` an installed package carries."""
    return repo_root() == Path(__file__).resolve().parent / BUNDLED


def work_dir() -> Path:
    """Where trials run and outputs go by default: the project folder, or the working folder when
    the project is the installed package's own copy (never inside site-packages)."""
    return Path.cwd() if bundled() else repo_root()


def log_root() -> Path:
    """`starter_kit_log/` of the project (or of the working folder, for an installed package's own
    configs), or $AUTOML_LOG_ROOT."""
    override = os.environ.get(LOG_ROOT_ENV)
    if override:
        return Path(override).resolve()
    return work_dir() / "starter_kit_log"


def runs_root() -> Path:
    """`starter_kit_log/runs/`: folders of the runs started by hand."""
    return log_root() / "runs"


def automl_root() -> Path:
    """`starter_kit_log/automl/`: one folder per study."""
    return log_root() / "automl"


def analysis_dir() -> Path:
    """`starter_kit_log/analysis/`: a copy of the latest study's importance report."""
    return log_root() / "analysis"


GPU_SHARE_ENV = "AUTOML_GPU_MEMORY_FRACTION"
"""A trial's share of its GPU's memory (1 / trials per GPU, from --gpu-fraction), set by the
launcher; the trial caps torch's allocations at it (envs/registry.py: cap_gpu_memory)."""
ISAACLAB_ASSETS_ENV = "AUTOML_ISAACLAB_ASSETS"
"""Where automl builds its offline Isaac Lab asset folder (default: the user's cache folder)."""


def isaaclab_asset_folder() -> Path:
    """The offline Isaac Lab asset folder automl builds from installed packages, used as
    ISAACSIM_ASSET_ROOT when the user sets none ($AUTOML_ISAACLAB_ASSETS, else ~/.cache/automl/...)."""
    override = os.environ.get(ISAACLAB_ASSETS_ENV)
    if override:
        return Path(override)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "automl" / "isaaclab_assets"


def new_run_dir(env_name: str) -> Path:
    """A fresh, explicitly named folder for a run started by hand."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return runs_root() / f"{stamp}_{env_name}_{os.getpid()}"


@dataclass(frozen=True)
class RunPaths:
    """The files of one train_one run: tb/, config.yaml, summary.json, model.pt, stdout.log."""

    root: Path

    @property
    def tb(self) -> Path:
        """tb/: the run's TensorBoard events (task metrics, score, losses)."""
        return self.root / "tb"

    @property
    def config(self) -> Path:
        """config.yaml: the run's fully resolved config, readable by train_one again."""
        return self.root / "config.yaml"

    @property
    def summary(self) -> Path:
        """summary.json: the run's status, score and metrics."""
        return self.root / "summary.json"

    @property
    def model(self) -> Path:
        """model.pt: the trained policy and value weights, saved when the run completes or is stopped."""
        return self.root / "model.pt"

    @property
    def state(self) -> Path:
        """state.pt: the whole training state (weights, optimizer, normalisers, frames), saved at
        the end when train.save_state is true; train.resume_from continues from it."""
        return self.root / "state.pt"

    @property
    def stdout_log(self) -> Path:
        """stdout.log: the run's progress lines and messages."""
        return self.root / "stdout.log"

    @property
    def stderr_log(self) -> Path:
        """stderr.log: the run's stderr (tracebacks), kept when it runs as a trial."""
        return self.root / "stderr.log"


def trial_name(number: int) -> str:
    """`trial_0007` for trial 7: the name of a trial's folder and config file."""
    return f"trial_{number:04d}"


@dataclass(frozen=True)
class StudyPaths:
    """The files of one study folder, `starter_kit_log/automl/<study_name>/`."""

    root: Path

    @classmethod
    def for_study(cls, study_name: str) -> StudyPaths:
        """The folder of the study of that name under `starter_kit_log/automl/`."""
        return cls(automl_root() / study_name)

    @property
    def name(self) -> str:
        """The study's name: its folder's name."""
        return self.root.name

    @property
    def journal(self) -> Path:
        """study.journal: the Optuna study's journal file (when no database storage is given)."""
        return self.root / "study.journal"

    @property
    def search_space(self) -> Path:
        """search_space.yaml: the search space the study uses."""
        return self.root / "search_space.yaml"

    @property
    def meta(self) -> Path:
        """meta.yaml: how the study was started, one entry per session."""
        return self.root / "meta.yaml"

    @property
    def state(self) -> Path:
        """automl_state.yaml: what the search is doing now (live)."""
        return self.root / "automl_state.yaml"

    @property
    def configs_dir(self) -> Path:
        """configs/: each trial's full configuration, as JSON."""
        return self.root / "configs"

    def trial_config(self, number: int) -> Path:
        """configs/trial_NNNN.json: the trial's parameters, overrides and command."""
        return self.config_file(trial_name(number))

    def config_file(self, config_id: str) -> Path:
        """configs/<config_id>.json: a configuration's values and overrides (`trial_NNNN` for a
        search trial's, `baseline` for the starting configuration validation runs)."""
        return self.configs_dir / f"{config_id}.json"

    @property
    def trials_dir(self) -> Path:
        """trials/: the trials' run folders."""
        return self.root / "trials"

    def trial_dir(self, number: int) -> Path:
        """trials/trial_NNNN/: the trial's run folder."""
        return self.trials_dir / trial_name(number)

    def trial_run(self, number: int) -> RunPaths:
        """The files of the trial's run, in trials/trial_NNNN/."""
        return RunPaths(self.trial_dir(number))

    @property
    def trial_final_csv(self) -> Path:
        """trial_final.csv: one row the moment each trial ends."""
        return self.root / "trial_final.csv"

    @property
    def threshold_hits_csv(self) -> Path:
        """threshold_hits.csv: the first time each trial crossed --target-score."""
        return self.root / "threshold_hits.csv"

    @property
    def experiment_df_csv(self) -> Path:
        """experiment_df.csv: every trial, best first, as analyze.py lists them."""
        return self.root / "experiment_df.csv"

    @property
    def configurations_csv(self) -> Path:
        """configurations.csv: one row per configuration (its seeds grouped), the chosen one first."""
        return self.root / "configurations.csv"

    @property
    def validation_csv(self) -> Path:
        """validation.csv: the top configurations re-trained on fresh seeds, with their scores."""
        return self.root / "validation.csv"

    @property
    def validation_race(self) -> Path:
        """validation_race.json: the race validation ran (its plan, seeds, rule, power)."""
        return self.root / "validation_race.json"

    @property
    def validation_dir(self) -> Path:
        """validation/: the run folders of the validation runs, one per configuration and seed."""
        return self.root / "validation"

    @property
    def importance_yaml(self) -> Path:
        """hyperparameter_importance.yaml: which searched parameters drive the score."""
        return self.root / "hyperparameter_importance.yaml"

    @property
    def best_config(self) -> Path:
        """best_config.yaml: the chosen configuration, and how it was chosen."""
        return self.root / "best_config.yaml"

    @property
    def plots_dir(self) -> Path:
        """plots/: the study's PNG plots."""
        return self.root / "plots"


def latest_importance_yaml() -> Path:
    """`starter_kit_log/analysis/hyperparameter_importance.yaml`: copy of the latest study's."""
    return analysis_dir() / "hyperparameter_importance.yaml"


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file others may read while we run: temp file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
