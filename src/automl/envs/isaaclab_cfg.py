"""An Isaac Lab task's config as automl builds it: the registered config, the physics and presets
chosen (`env.params.physics`, `env.params.presets`) and the user's own settings (`env.cfg.<path>`),
all applied by Isaac Lab's own override parser (`isaaclab_tasks.utils.hydra.register_task`, what
its `resolve_task_config` runs), then automl's size, device and seed. Also the reward weights as
automl reads them: every term at MARK in the manager, Isaac Lab's own weights kept aside, and the
curricula that change them. Nothing here builds the simulation.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import torch

from automl.errors import ConfigError

CPU_PHYSICS = "newton_mjwarp"
"""The physics preset of a task on CPU: Newton with MuJoCo-Warp, the one Isaac Lab backend that runs
without a GPU."""
PARAMS = ("physics", "presets")
"""The env.params an Isaac Lab task takes."""
AUTOML_SET = {"sim.device": "env.device", "scene.num_envs": "env.num_envs", "seed": "train.seed"}
"""Task settings automl sets from its own keys."""
DIRECT_TERM = "reward"
"""The one raw term of a direct-workflow task: its own reward."""
_SOURCE = "conf/env/isaaclab.yaml or the command line"


MARK = 1.0 + 2.0**-10
"""The weight every reward term has in Isaac Lab's manager under automl: not 0, so the manager computes
each term every step, and a value no curriculum writes, so any other weight read after a step is the
one a curriculum set (`IsaacLabEnv.live`)."""


def unit_weights(rewards_cfg: Any) -> dict[str, float]:
    """Set every reward term's weight to MARK in the cfg; returns Isaac Lab's own weights by term."""
    reference = {}
    for name in rewards_cfg.__dataclass_fields__:
        term = getattr(rewards_cfg, name, None)
        if term is None or not hasattr(term, "weight"):
            continue  # a term switched off in a derived cfg
        reference[name] = float(term.weight)
        term.weight = MARK
    return reference


def curriculum_targets(cfg: Any) -> dict[str, str]:
    """Reward terms whose weight one of the task's curriculum terms changes, with that curriculum
    term's name: Isaac Lab's `modify_reward_weight` (params term_name, weight) and `modify_term_cfg`
    on an address `rewards.<term>.weight`."""
    curriculum = getattr(cfg, "curriculum", None)
    targets = {}
    for name in getattr(curriculum, "__dataclass_fields__", {}):
        params = getattr(getattr(curriculum, name, None), "params", None) or {}
        address = str(params.get("address", ""))
        if "term_name" in params and "weight" in params:
            targets[str(params["term_name"])] = name
        elif address.startswith("rewards.") and address.endswith(".weight"):
            targets[address.split(".")[1]] = name
    return targets


def check_curricula(cfg: Any, reference: dict[str, float], task: str) -> None:
    """automl weighs a term as its scale x (Isaac Lab's live weight / its starting weight), which a
    curriculum on a term that starts at 0 cannot be followed by: such a task is refused."""
    for term, curriculum in curriculum_targets(cfg).items():
        if reference.get(term) == 0.0:
            raise ConfigError(
                file=_SOURCE, key="env.task", value=task,
                rule=f"its curriculum term `{curriculum}` changes the weight of reward term "
                     f"`{term}`, which starts at 0; automl follows a curriculum by scaling each "
                     "term with its live weight over its starting weight",
                fix="pick a task whose curricula change only non-zero weights, or remove that "
                    "curriculum term from the task's config")


TASK_PREFIXES = ("Isaac-", "IsaacContrib-")
"""The gymnasium ids Isaac Lab's task packages register."""


def unknown_task(task: str, known: list[str]) -> ConfigError:
    """The error for a task id Isaac Lab does not register: the closest of the `known` ids (case
    and separators ignored), else a few of them."""
    def plain(name: str) -> str:
        return name.lower().replace("-", "").replace("_", "")

    by_plain = {plain(k): k for k in sorted(known)}
    close = [by_plain[c] for c in difflib.get_close_matches(plain(task), by_plain, n=4, cutoff=0.6)]
    return ConfigError(
        file=_SOURCE, key="env.task", value=task,
        rule=f"Isaac Lab registers no such task ({len(known)} ids start with "
             f"{' or '.join(TASK_PREFIXES)})",
        fix=(f"the closest registered: {', '.join(close)}" if close else
             f"use a registered id, e.g. {', '.join(sorted(known)[:4])}"))


def check_params(params: Mapping[str, Any]) -> list[str]:
    """The presets `env.params` selects; anything but physics and presets is refused."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ConfigError(file=_SOURCE, key=f"env.params.{unknown[0]}", value=params[unknown[0]],
                          rule="an Isaac Lab task takes env.params.physics (a physics preset such "
                               "as newton_mjwarp or physx) and env.params.presets (a list of the "
                               "task's preset names); its own settings are env.cfg.<path>",
                          fix=f"remove env.params.{unknown[0]}, or set +env.cfg.{unknown[0]}=...")
    presets = params.get("presets") or []
    if not isinstance(presets, list) or not all(isinstance(p, str) for p in presets):
        raise ConfigError(file=_SOURCE, key="env.params.presets", value=presets,
                          rule="it must be a list of the task's preset names",
                          fix="write +env.params.presets=[name,...]")
    physics = params.get("physics")
    return [*([str(physics)] if physics else []), *presets]


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted paths: {"sim": {"dt": 0.01}} -> {"sim.dt": 0.01}."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _keys(node: Any) -> list[str]:
    if isinstance(node, Mapping):
        return [str(k) for k in node]
    fields = getattr(node, "__dataclass_fields__", None)
    return list(fields) if fields is not None else []


def check_overrides(cfg: Any, overrides: Mapping[str, Any]) -> None:
    """Every `env.cfg.<path>` names a setting the resolved task config has, and none that automl
    sets itself (size, device, seed) or weighs itself (rewards)."""
    for path, value in overrides.items():
        key = f"env.cfg.{path}"
        if path.split(".")[0] == "rewards":
            raise ConfigError(file=_SOURCE, key=key, value=value,
                              rule="reward weights are automl's (and a term's function is the task's)",
                              fix="set reward.scales.<term> instead")
        if path in AUTOML_SET:
            raise ConfigError(file=_SOURCE, key=key, value=value, rule=f"automl sets it from {AUTOML_SET[path]}",
                              fix=f"set {AUTOML_SET[path]} instead")
        node = cfg
        for depth, part in enumerate(path.split(".")):
            keys = _keys(node)
            if part not in keys:
                where = ".".join(path.split(".")[:depth]) or "the top level"
                close = difflib.get_close_matches(part, keys, n=3)
                raise ConfigError(
                    file=_SOURCE, key=key, value=value,
                    rule=f"the task's config has no `{part}` at {where}",
                    fix=f"the closest there: {', '.join(close)}" if close else
                        f"its keys there: {', '.join(keys[:12]) or 'none'}")
            node = node[part] if isinstance(node, Mapping) else getattr(node, part)


def _literal(value: Any) -> str:
    """A value as Isaac Lab's override parser reads it back (`true`, `none`, `[1, 2]`, `3.5`)."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def import_tasks() -> None:
    """Import Isaac Lab's task registry (the Isaac-* gymnasium ids), its asset root set first: Isaac
    Lab reads the root once, at import, into every asset path of every task config."""
    from automl.envs.isaaclab_assets import use_asset_root

    use_asset_root()
    import isaaclab_tasks  # noqa: F401


def check_task(task: str) -> None:
    """Import Isaac Lab's task registry and refuse a task it does not register."""
    import_tasks()
    if task not in gymnasium.registry:
        raise unknown_task(task, [k for k in gymnasium.registry if str(k).startswith(TASK_PREFIXES)])


def load_task_cfg(task: str, *, num_envs: int, device: torch.device, seed: int,
                  params: Mapping[str, Any] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Any:
    """The task's registered env config under the physics and presets `params` choose (on CPU
    Newton with MuJoCo-Warp unless chosen) and the user's `overrides` (dotted paths), through
    Isaac Lab's own parser; then automl's size, device and seed."""
    check_task(task)
    from isaaclab_tasks.utils.hydra import register_task

    selected = check_params(params or {})
    if not (params or {}).get("physics") and device.type == "cpu":
        selected.insert(0, CPU_PHYSICS)
    presets = [f"presets={','.join(selected)}"] if selected else []
    try:
        cfg, _, _ = register_task(task, None, overrides=presets)
        flat = flatten(overrides or {})
        if flat:  # checked against the resolved config, then applied by Isaac Lab's parser
            check_overrides(cfg, flat)
            cfg, _, _ = register_task(task, None, overrides=[
                *presets, *(f"env.{path}={_literal(value)}" for path, value in flat.items())])
    except ValueError as err:  # Isaac Lab's message for a preset the task does not have
        raise ConfigError(file=_SOURCE, key="env.params.presets", value=selected,
                          rule=str(err).splitlines()[0],
                          fix="name presets the task has (Isaac Lab's message lists them)") from None
    cfg.sim.device = str(device)
    cfg.scene.num_envs = num_envs
    cfg.seed = seed
    cfg.compute_final_obs = True
    return cfg


def task_reward_weights(task: str, *, device: str = "cpu", params: Mapping[str, Any] | None = None,
                        overrides: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Isaac Lab's own weight of each reward term of `task` (a direct task: {"reward": 1.0} and its
    reward fields) under the physics, presets and settings the run chose, read from its config
    without building it."""
    from automl.envs.isaaclab_assets import use_asset_root

    use_asset_root()
    cfg = load_task_cfg(task, num_envs=1, device=torch.device(device), seed=0, params=params,
                        overrides=overrides)
    rewards = getattr(cfg, "rewards", None)
    if rewards is not None:
        return unit_weights(rewards)
    from automl.envs.isaaclab_direct import reward_fields

    return {DIRECT_TERM: 1.0, **reward_fields(cfg)}


def answer_as_json(compute: Callable[[], Any]) -> int:
    """A subprocess's answer to the orchestrator: what `compute` returns as JSON on stdout (Isaac
    Lab's own start-up lines kept off it), or exit 2 with the ConfigError's parts as JSON on
    stderr, for the orchestrator to raise the same error."""
    import contextlib
    import io
    import json
    import sys

    from automl.errors import EXIT_BAD_INPUT

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            answer = compute()
    except ConfigError as err:
        print(json.dumps({"file": err.file, "key": err.key, "value": err.value, "rule": err.rule,
                          "fix": err.fix}), file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(answer))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m automl.envs.isaaclab_cfg TASK [OPTIONS_JSON]`: the task's reward weights as JSON on
    stdout, for the orchestrator, which never imports Isaac Lab (or torch) itself; OPTIONS_JSON holds
    `device` (cpu or cuda), `params` and `overrides` (env.params and env.cfg); exit 2 for bad input."""
    import json
    import sys

    task, *rest = argv if argv is not None else sys.argv[1:]
    options = json.loads(rest[0]) if rest else {}
    return answer_as_json(lambda: task_reward_weights(task, **options))


if __name__ == "__main__":
    raise SystemExit(main())
