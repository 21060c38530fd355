"""Best-config export: best_config.yaml and a Hydra preset that composes to the same values."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_study import FakeTrial, lr_driven_trials, make_study

from automl import paths, presets
from automl.analysis.export import (
    export_best_config,
    export_validated_best,
    nest,
    preset_name,
    trial_config_values,
)
from automl.analysis.validation import summarize_validation
from automl.config import load_run_config
from automl.errors import ConfigError
from automl.typed import to_plain

VALUES: dict[str, Any] = {
    "ppo.learning_rate": 0.00012345678901234,
    "ppo.lambda": 0.93,
    "ppo.learning_epochs": 6,
    "network.policy_hidden_layer_sizes": [512, 256, 128],
    "reward.scales.torques": -2.5e-7,
    "reward.scales.termination": -300,
    "env.num_envs": 64,
    "env.params.stage": 2,
    "train.seed": 7,
}


@pytest.fixture
def log_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture
def study_name() -> Iterator[str]:
    """A unique study name (its preset goes to the tests' presets folder, see conftest.py)."""
    yield f"export test.{uuid.uuid4().hex[:8]}"


def lookup(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def test_preset_names_are_safe() -> None:
    assert preset_name("my study/2024.v1-b") == "my_study_2024_v1_b_best"
    assert preset_name("plain_name") == "plain_name_best"
    assert preset_name("???") == "study_best"


def test_nest() -> None:
    assert nest({"ppo.lambda": 0.9, "reward.scales.a": 1, "run_dir": None}) == \
        {"ppo": {"lambda": 0.9}, "reward": {"scales": {"a": 1}}, "run_dir": None}
    with pytest.raises(ValueError, match="both a value and a section"):
        nest({"ppo": 1, "ppo.lambda": 0.9})


def test_preset_composes_and_reproduces_every_value(log_root: Path, study_name: str) -> None:
    study_paths = paths.StudyPaths.for_study(study_name)
    source = {"trial": 23, "validated_mean": 0.81, "ci_low": 0.7, "ci_high": 0.9}
    best, preset = export_best_config(study_paths, config_values=VALUES, source=source,
                                      groups={"env": "navigation"})
    assert best == study_paths.best_config
    assert preset == paths.presets_root() / "experiment" / f"{preset_name(study_name)}.yaml"
    assert paths.conf_dir() not in preset.parents
    assert preset.read_text().startswith("# @package _global_\n")
    cfg = load_run_config([f"+experiment={preset.stem}"])
    plain = to_plain(cfg)
    for key, value in VALUES.items():
        assert lookup(plain, key) == value, key  # every value differs from the defaults
    assert cfg.experiment == {"study": study_name, **source}
    written = yaml.safe_load(best.read_text())
    assert written["ppo"]["learning_rate"] == VALUES["ppo.learning_rate"]
    assert written["reward"]["scales"] == {"torques": -2.5e-7, "termination": -300}
    assert written["source"]["study"] == study_name and written["source"]["trial"] == 23
    assert written["source"]["run_with"].endswith(f"+experiment={preset.stem}")
    assert written["groups"] == {"env": "navigation"}


def test_validated_best_exports_the_trial_config(log_root: Path, study_name: str) -> None:
    trials = lr_driven_trials(4, seed=2)
    study_paths = make_study(study_name.replace(" ", "_"), trials)
    rows = [("trial_0001", 1, s, 0.9) for s in (1, 2)] + [("trial_0002", 2, s, 0.1) for s in (1, 2)]
    results = summarize_validation(rows, search_scores={1: 0.5, 2: 0.9})
    best, preset = export_validated_best(study_paths, results)
    cfg = load_run_config([f"+experiment={preset.stem}"])
    expected = trial_config_values(study_paths, 1)
    assert expected["ppo.learning_rate"] == trials[1].params["learning_rate"]
    plain = to_plain(cfg)
    for key, value in expected.items():
        assert lookup(plain, key) == value, key
    assert cfg.experiment["trial"] == 1 and cfg.experiment["validated_mean"] == 0.9
    assert yaml.safe_load(best.read_text())["source"]["n_seeds"] == 2


def test_a_preset_lives_in_its_study_folder_and_is_found_by_the_study_name(
        log_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $AUTOML_PRESETS_ROOT a study's preset goes to its own folder, never to conf/, and
    `+experiment=<study>_best` composes it whatever characters the study's name holds."""
    monkeypatch.delenv(paths.PRESETS_ROOT_ENV, raising=False)
    study_paths = paths.StudyPaths.for_study("my-study.v2")
    _, preset = export_best_config(study_paths, config_values=VALUES, source={"trial": 1})
    assert preset == study_paths.root / "experiment" / "my_study_v2_best.yaml"
    for typed in ("my-study.v2_best", "my_study_v2_best"):
        cfg = load_run_config([f"+experiment={typed}"])
        assert cfg.ppo.learning_rate == VALUES["ppo.learning_rate"], typed
    assert "my_study_v2_best" in presets.options()
    with pytest.raises(ConfigError, match=r"no exported preset has that name.*\+experiment=<study>_best"):
        load_run_config(["+experiment=other_study_best"])


def test_the_presets_root_setting_takes_every_preset(monkeypatch: pytest.MonkeyPatch,
                                                     log_root: Path, tmp_path: Path) -> None:
    monkeypatch.setenv(paths.PRESETS_ROOT_ENV, str(tmp_path / "moved"))
    study_paths = paths.StudyPaths.for_study("elsewhere")
    _, preset = export_best_config(study_paths, config_values=VALUES, source={"trial": 1})
    assert preset == tmp_path / "moved" / "experiment" / "elsewhere_best.yaml"
    assert not (study_paths.root / "experiment").exists()
    assert presets.resolve(["+experiment=elsewhere_best"]) == [
        "+experiment=elsewhere_best", f"hydra.searchpath=['file://{(tmp_path / 'moved').resolve()}']"]
    assert presets.resolve(["env=cartpole"]) == ["env=cartpole"]  # nothing added without a preset


def test_trial_config_values_of_a_missing_trial(log_root: Path) -> None:
    study_paths = make_study("missing", [FakeTrial(lr_driven_trials(1)[0].params, score=0.1)])
    with pytest.raises(ConfigError, match="no search trial of that number"):
        trial_config_values(study_paths, 5)


def test_a_study_preset_wins_over_a_stale_copy_in_conf_and_any_folder_name_composes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An older version exported presets into conf/experiment/: the study's own newer export
    wins. And the study folder may sit below any path (brackets, commas, equals signs)."""
    monkeypatch.delenv(paths.PRESETS_ROOT_ENV, raising=False)
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "runs (v2), a=b]"))
    study_paths = paths.StudyPaths.for_study("again")
    _, preset = export_best_config(study_paths, config_values=VALUES, source={"trial": 1})
    stale = tmp_path / "conf"
    (stale / "experiment").mkdir(parents=True)
    (stale / "experiment" / "again_best.yaml").write_text("# @package _global_\n")
    with monkeypatch.context() as m:
        m.setattr(paths, "conf_dir", lambda: stale)
        assert presets.find("again_best") == preset
    cfg = load_run_config(["+experiment=again_best"])
    assert cfg.ppo.learning_rate == VALUES["ppo.learning_rate"]


def test_a_sweep_over_two_studies_presets_finds_both(monkeypatch: pytest.MonkeyPatch,
                                                     log_root: Path) -> None:
    monkeypatch.delenv(paths.PRESETS_ROOT_ENV, raising=False)
    for name in ("first-study", "second"):
        export_best_config(paths.StudyPaths.for_study(name), config_values=VALUES,
                           source={"trial": 1})
    resolved = presets.resolve(["+experiment=first-study_best,second_best", "env=cartpole"])
    roots = [f"'file://{(log_root / 'automl' / n).resolve()}'" for n in ("first-study", "second")]
    assert resolved == ["+experiment=first_study_best,second_best",
                        f"hydra.searchpath=[{','.join(roots)}]", "env=cartpole"]
