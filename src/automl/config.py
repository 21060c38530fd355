"""Compose `conf/` with Hydra and turn it into a checked `RunConfig`; every mistake becomes a ConfigError."""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from automl import paths, presets
from automl.envs import isaaclab_agent
from automl.errors import ConfigError
from automl.schema import RunConfig, run_config_from_plain
from automl.typed import yaml_key

isaaclab_agent.register()  # `${isaaclab_agent:...}` in conf/ppo and conf/network's isaaclab_task

PRIMARY = "train"
"""conf/train.yaml: the primary config of a run."""
GROUPS = ("env", "ppo", "network", "reward", "scoring", "experiment")


def group_options(group: str) -> list[str]:
    """Options of a config group: the YAML files in conf/<group>/ (presets: automl.presets)."""
    if group == presets.GROUP:  # exported presets live in study folders too (automl.presets)
        return presets.options()
    return sorted(p.stem for p in (paths.conf_dir() / group).glob("*.yaml"))


def check_group_overrides(overrides: Sequence[str]) -> None:
    """Reject `group=option` where the option has no file, naming the options that exist."""
    for item in overrides:
        key, sep, value = item.partition("=")
        group = key.lstrip("+~").removeprefix("override ")
        if not sep or group not in GROUPS:
            continue
        options = group_options(group)
        if value in options or (group == presets.GROUP and presets.find(value)):
            continue
        if group == presets.GROUP:
            raise ConfigError(file="conf/experiment/ and the study folders", key=group, value=value,
                              rule="no exported preset has that name (a study's is <study>_best; "
                                   f"there are: {', '.join(options[:8]) or 'none'})",
                              fix=f"use +experiment=<study>_best for a study under "
                                  f"{paths.automl_root()}")
        raise ConfigError(file=f"conf/{group}/", key=group, value=value,
                          rule=f"there is no such option; options: {', '.join(options) or 'none'}",
                          fix=f"use one of them, e.g. {group}={options[0] if options else '...'}")


def allowed_keys(dotted: str) -> list[str]:
    """Keys allowed next to `dotted` (for `ppo.foo`: the PPO keys), from the schema."""
    cls: typing.Any = RunConfig
    for part in dotted.split(".")[:-1]:
        hints = typing.get_type_hints(cls)
        if part not in hints or not dataclasses.is_dataclass(hints[part]):
            return []
        cls = hints[part]
    return sorted(yaml_key(cls, f.name) for f in dataclasses.fields(cls))


COMPOSE_ORDER = ("ppo", "network", "reward", "scoring", PRIMARY, "env", "experiment")
"""The files of a run in the order Hydra merges them (conf/train.yaml's defaults list; a
`+experiment=` preset comes last): the last one that sets a key gave its value."""


def _option_file(group: str, option: str) -> Path | None:
    """The YAML file of `group=option` (an experiment preset may live outside conf/)."""
    if group == presets.GROUP:
        return presets.find(option)
    file = paths.conf_dir() / group / f"{option}.yaml"
    return file if file.is_file() else None


def _composed_files(choices: dict[str, Any]) -> list[tuple[str, Path]]:
    """(package, file) of each file Hydra merged for the options `choices` picked, in merge order;
    package "" is the root (conf/train.yaml)."""
    files = []
    for group in COMPOSE_ORDER:
        option = choices.get(group)
        if group == PRIMARY:
            files.append(("", paths.conf_dir() / f"{PRIMARY}.yaml"))
        elif option and (file := _option_file(group, str(option))) is not None:
            files.append((group, file))
    return files


def _sets(file: Path, package: str, key: str) -> bool:
    """Whether YAML `file`, merged at `package` (a `# @package _global_` header puts it at the
    root), sets the dotted `key`."""
    try:
        text = file.read_text()
        data: Any = yaml.safe_load(text)
    except (OSError, yaml.YAMLError):
        return False
    prefix = "" if not package or text.startswith("# @package _global_") else f"{package}."
    if not key.startswith(prefix):
        return False
    for part in key.removeprefix(prefix).split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _source_of(choices: dict[str, Any], key: str) -> str:
    """The file a composed value came from: the last file Hydra merged that sets `key` (an env
    sets `ppo.*` values of its own; `env=ant` picks conf/ppo/mujoco.yaml). The command line,
    merged last, may have set it too."""
    root = paths.repo_root()
    for package, file in reversed(_composed_files(choices)):
        if _sets(file, package, key):
            return f"{file.relative_to(root) if file.is_relative_to(root) else file} or the command line"
    group = key.split(".")[0]
    choice = choices.get(group)
    return f"conf/{group}/{choice}.yaml or the command line" if choice else "conf/train.yaml or the command line"


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose conf/train.yaml with overrides through Hydra's compose API (no output folders)."""
    return _compose(overrides, with_choices=False)[0]


def compose_with_choices(overrides: Sequence[str] = ()) -> tuple[DictConfig, dict[str, Any]]:
    """compose(), plus the option picked in each config group (to name the file of a bad value)."""
    return _compose(overrides, with_choices=True)


def _compose(overrides: Sequence[str], *, with_choices: bool) -> tuple[DictConfig, dict[str, Any]]:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    check_group_overrides(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base=None):
            cfg = hydra_compose(config_name=PRIMARY,
                                overrides=presets.resolve(overrides),
                                return_hydra_config=with_choices)
        if not with_choices:
            return cfg, {}
        choices = dict(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg, choices
    except (HydraException, OmegaConfBaseException) as err:
        unknown = re.search(r"Could not override '([^']+)'", str(err))
        if unknown:
            key = unknown.group(1)
            value = next((o.partition("=")[2] for o in overrides if o.startswith(f"{key}=")), None)
            allowed = allowed_keys(key)
            if not allowed:  # a key inside a free mapping (reward.scales, env.params): it may be new
                raise ConfigError(file="command line", key=key, value=value,
                                  rule="the composed config has no such key",
                                  fix=f"add a new key with a leading `+`: +{key}={value}") from None
            raise ConfigError(file="command line", key=key, value=value,
                              rule=f"it is not a known key; allowed: {', '.join(allowed)}",
                              fix="correct its spelling (see src/automl/schema.py)") from None
        raise ConfigError(file="command line", key=" ".join(overrides) or "<none>", value=None,
                          rule=f"Hydra could not compose it: {str(err).splitlines()[0]}",
                          fix="check the key names against conf/ (`+key=value` adds a new key)") from None
    finally:
        GlobalHydra.instance().clear()


def to_run_config(cfg: DictConfig, *, choices: dict[str, Any] | None = None,
                  mini_batch_rule: bool = True) -> RunConfig:
    """Resolve a composed DictConfig and check it against the schema, once, at the entry point
    (the mini-batch size too unless not `mini_batch_rule`: a search space may still change it)."""
    choices = choices or {}
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:  # a resolver's own clear error, under OmegaConf's wrappers
            raise cause from None
        key = getattr(err, "full_key", None) or "?"
        if not isinstance(err, MissingMandatoryValue):  # a resolver failed: say how
            raise ConfigError(file=_source_of(choices, str(key)), key=str(key), value=None,
                              rule=f"it could not be resolved: {str(err).splitlines()[0]}",
                              fix="see the message; report it if the value's file looks right") from err
        raise ConfigError(file=_source_of(choices, str(key)), key=str(key), value="???",
                          rule="it has no value", fix=f"set {key}=... on the command line") from None
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    try:
        return run_config_from_plain({str(k): v for k, v in plain.items()}, source="composed config",
                                     mini_batch_rule=mini_batch_rule)
    except ConfigError as err:  # a fresh error: str(err) must name the right file too
        raise ConfigError(file=_source_of(choices, err.key), key=err.key, value=err.value,
                          rule=err.rule, fix=err.fix) from None


def load_run_config(overrides: Sequence[str] = ()) -> RunConfig:
    """Compose and check in one go (tests, the orchestrator's pre-launch check); a mistake names
    the file Hydra really composed (an env's own ppo option, not conf/ppo/default.yaml)."""
    cfg, choices = compose_with_choices(overrides)
    return to_run_config(cfg, choices=choices)


def save_resolved(cfg: RunConfig, path: Path) -> None:
    """config.yaml of a run: the fully resolved config, readable by train_one again."""
    from automl.typed import to_plain

    paths.atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(to_plain(cfg))))
