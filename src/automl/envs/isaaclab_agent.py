"""The start of an Isaac Lab task: its own skrl agent configuration (the YAML file its
`skrl_cfg_entry_point` names), read as automl's `ppo.*` and `network.*` keys.

conf/ppo/isaaclab_task.yaml and conf/network/isaaclab_task.yaml hold one interpolation per key,
`${isaaclab_agent:ppo.rollouts}`, which this module's resolver answers for the run's `env.task`. A
value set on the command line, in an experiment preset or by a search trial replaces the
interpolation, so it wins as it does over any preset.

What is read (skrl's names as Isaac Lab writes them, on the left):
- models.separate -> network.shared (false: one trunk, the policy's layers, for both heads);
  the policy's and value's `layers` and `activations`; the policy's min/max/initial log std;
- agent: rollouts, learning_epochs, mini_batches, discount_factor, lambda, learning_rate,
  learning_rate_scheduler (KLAdaptiveLR) and its kl_threshold, state_preprocessor and
  value_preprocessor (RunningStandardScaler: normalize_observations / normalize_values),
  grad_norm_clip, ratio_clip, value_clip (0 where clip_predicted_values is false),
  entropy_loss_scale, value_loss_scale, kl_threshold, rewards_shaper_scale.

The one deviation: `time_limit_bootstrap` stays on (Isaac Lab's configurations turn it off; automl
bootstraps a time-limit end from the episode's own last observation, which is right for a task whose
episodes end on a clock).

A task without a skrl configuration, or with one automl's trainer does not build (an AMP agent,
several input networks, a scheduler or preprocessor other than skrl's KL-adaptive one and running
scaler), starts from conf/ppo/isaaclab.yaml and conf/network/tiny.yaml instead, and the first read
says so, once per process, on stderr.
"""

from __future__ import annotations

import importlib.resources
import os
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from automl import paths
from automl.errors import EXIT_BAD_INPUT, ConfigError

RESOLVER = "isaaclab_agent"
"""The OmegaConf resolver conf/ppo/isaaclab_task.yaml and conf/network/isaaclab_task.yaml call."""
FALLBACK = ("ppo/isaaclab.yaml", "network/tiny.yaml")
"""The start of a task whose skrl configuration automl cannot read, under conf/."""
ACTIVATIONS = ("elu", "relu", "tanh", "leaky_relu", "selu", "gelu")
"""skrl activation names automl builds (run/models.py)."""
NOTE = "automl: "
"""How the fallback's note starts (a subprocess's note is passed on by it)."""
SCALER = "RunningStandardScaler"
SCHEDULER = "KLAdaptiveLR"


class Unsupported(ValueError):
    """A skrl configuration automl's trainer does not build; the message says what."""


def _network(model: dict[str, Any], role: str) -> tuple[list[int], str]:
    """(layers, activation) of a skrl model with one MLP over the observations."""
    nets = model.get("network") or []
    if len(nets) != 1 or nets[0].get("input") != "OBSERVATIONS":
        raise Unsupported(f"its {role} has {len(nets)} networks or an input other than OBSERVATIONS")
    layers, activations = nets[0].get("layers"), nets[0].get("activations")
    if not layers or not all(isinstance(w, int) for w in layers):
        raise Unsupported(f"its {role} layers {layers} are not an MLP's widths")
    if isinstance(activations, list):
        if len(set(activations)) != 1:
            raise Unsupported(f"its {role} mixes activations {activations}")
        activations = activations[0]
    if activations not in ACTIVATIONS:
        raise Unsupported(f"its {role} activation {activations!r} is not one of {', '.join(ACTIVATIONS)}")
    return list(layers), str(activations)


def network_keys(models: dict[str, Any]) -> dict[str, Any]:
    """network.* from skrl's `models` section."""
    policy, value = models.get("policy") or {}, models.get("value") or {}
    if policy.get("class") != "GaussianMixin" or value.get("class") != "DeterministicMixin":
        raise Unsupported(f"its models are {policy.get('class')} and {value.get('class')}, not "
                          "GaussianMixin and DeterministicMixin")
    if not policy.get("clip_log_std", True):
        raise Unsupported("its policy's log std is unbounded (clip_log_std: false)")
    layers, activation = _network(policy, "policy")
    shared = not models.get("separate", True)
    value_layers, value_activation = (layers, activation) if shared else _network(value, "value")
    if value_activation != activation:
        raise Unsupported(f"its policy and value activations differ ({activation}, {value_activation})")
    return {"policy_hidden_layer_sizes": layers, "value_hidden_layer_sizes": value_layers,
            "activation": activation, "shared": shared,
            "min_log_std": float(policy.get("min_log_std", -20.0)),
            "max_log_std": float(policy.get("max_log_std", 2.0)),
            "initial_log_std": float(policy.get("initial_log_std", 0.0))}


def _preprocessor(agent: dict[str, Any], key: str) -> bool:
    name = agent.get(key)
    if name not in (None, SCALER):
        raise Unsupported(f"its {key} is {name}, not {SCALER}")
    return name == SCALER


def ppo_keys(agent: dict[str, Any]) -> dict[str, Any]:
    """ppo.* from skrl's `agent` section."""
    if agent.get("class") != "PPO":
        raise Unsupported(f"its agent is {agent.get('class')}, not PPO")
    scheduler = agent.get("learning_rate_scheduler")
    if scheduler not in (None, SCHEDULER):
        raise Unsupported(f"its learning_rate_scheduler is {scheduler}, not {SCHEDULER}")
    kwargs = agent.get("learning_rate_scheduler_kwargs") or {}
    keys = {name: agent[name] for name in (
        "rollouts", "learning_epochs", "mini_batches", "discount_factor", "lambda", "learning_rate",
        "grad_norm_clip", "ratio_clip", "entropy_loss_scale", "value_loss_scale")}
    return {**keys,
            "value_clip": agent["value_clip"] if agent.get("clip_predicted_values", True) else 0.0,
            "kl_threshold": agent.get("kl_threshold", 0.0),
            "learning_rate_scheduler": scheduler,
            "learning_rate_kl_threshold": float(kwargs.get("kl_threshold", 0.008)),
            "normalize_observations": _preprocessor(agent, "state_preprocessor"),
            "normalize_values": _preprocessor(agent, "value_preprocessor"),
            "rewards_shaper_scale": float(agent.get("rewards_shaper_scale", 1.0)),
            "time_limit_bootstrap": True, "value_refit_updates": 0}


def skrl_file(task: str) -> Any:
    """The task's skrl agent YAML as a resource path; None where it registers none."""
    import gymnasium

    from automl.envs.isaaclab_cfg import check_task

    check_task(task)
    entry = gymnasium.registry[task].kwargs.get("skrl_cfg_entry_point")
    if not isinstance(entry, str) or ":" not in entry or not entry.endswith(".yaml"):
        return None
    module, name = entry.split(":")
    return importlib.resources.files(module) / name


_READER = {"subprocess": False}
"""How this process reads a task's start: in a short subprocess where it must not import Isaac Lab
(the orchestrator: `read_in_subprocess`), else in-process (trainers, which import it anyway)."""


def read_in_subprocess(on: bool = True) -> bool:
    """From now on read a task's start in a short subprocess (`on`), so this process never imports
    Isaac Lab or torch (the orchestrator: its reward terms are read the same way, search/plan.py);
    returns the setting it replaced, for the caller to put back when it is done."""
    previous, _READER["subprocess"] = _READER["subprocess"], on
    return previous


_STARTS: dict[str, dict[str, Any]] = {}
"""This process's starts by task: each is read once."""
_TERMS: dict[str, list[str]] = {}
"""Reward terms the orchestrator's subprocess read together with a start, by `_settings_key`."""


def start_of(task: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The task's start by dotted key (`ppo.rollouts`, `network.shared`), or the fallback's.

    `settings`: `device`, `params` and `overrides` (env.device, env.params, env.cfg) of the run
    that asks. Where this process reads starts in a subprocess, that subprocess also reads the
    task's reward terms under them (`terms_read_with_start`): the orchestrator imports Isaac Lab
    once for both, not once for each."""
    if task not in _STARTS:
        if _READER["subprocess"]:
            _STARTS[task], terms = _from_subprocess(task, settings)
            if settings is not None and terms is not None:
                _TERMS[_settings_key(task, settings)] = terms
        else:
            _STARTS[task] = read_start(task)
    return _STARTS[task]


def terms_read_with_start(task: str, settings: Mapping[str, Any]) -> list[str] | None:
    """The reward terms of `task` under `settings` that its start's read brought back; None where
    it read none (in-process reading, other settings, or a read that failed: read them again)."""
    return _TERMS.get(_settings_key(task, settings))


def _settings_key(task: str, settings: Mapping[str, Any]) -> str:
    import json

    return json.dumps([task, {k: settings.get(k) or ({} if k != "device" else "auto")
                              for k in ("device", "params", "overrides")}], sort_keys=True, default=str)


def forget_starts() -> None:
    """Read every start again (its first read prints the fallback's note)."""
    _STARTS.clear()
    _TERMS.clear()


def _from_subprocess(task: str, settings: Mapping[str, Any] | None = None
                     ) -> tuple[dict[str, Any], list[str] | None]:
    import json
    import subprocess

    env = dict(os.environ)  # this very package first, as a trial gets it (search/trials/launcher)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.package_parent()), env.get("PYTHONPATH")]))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    extra = [] if settings is None else [json.dumps(dict(settings), default=str)]
    process = subprocess.run([sys.executable, "-P", "-m", __name__, task, *extra], capture_output=True,
                             text=True, check=False, env=env)
    lines = process.stderr.strip().splitlines()
    if process.returncode == EXIT_BAD_INPUT:  # the error's parts, as JSON on its last line
        raise ConfigError(**json.loads(lines[-1]))
    if process.returncode != 0:
        raise RuntimeError(f"reading the agent configuration of {task} failed:\n{process.stderr[-2000:]}")
    for line in lines:  # the fallback's note
        if line.startswith(NOTE):
            print(line, file=sys.stderr)
    answer = json.loads(process.stdout.strip().splitlines()[-1])
    return dict(answer["start"]), answer["terms"]


def _terms(task: str, settings: Mapping[str, Any]) -> list[str] | None:
    """The task's reward terms under `settings`, as search/plan.py's own read finds them; None
    where that read fails (the orchestrator then reads them again, and reports what failed)."""
    from automl.envs.isaaclab_cfg import task_reward_weights
    from automl.search.trials.gpus import visible_gpus  # the orchestrator's rule for `auto`

    device = settings.get("device") or "auto"
    if device == "auto":
        device = "cuda" if visible_gpus() else "cpu"
    try:
        return list(task_reward_weights(task, device=str(device), params=settings.get("params") or {},
                                        overrides=settings.get("overrides") or {}))
    except Exception:  # noqa: BLE001 - any failure: the orchestrator's own read reports it
        return None


def read_start(task: str) -> dict[str, Any]:
    """The task's start read in this process (it imports Isaac Lab's task registry)."""
    file = skrl_file(task)
    try:
        if file is None:
            raise Unsupported("it registers no skrl agent configuration (skrl_cfg_entry_point)")
        data = yaml.safe_load(file.read_text())
        return {**{f"ppo.{k}": v for k, v in ppo_keys(data["agent"]).items()},
                **{f"network.{k}": v for k, v in network_keys(data["models"]).items()}}
    except (Unsupported, KeyError, TypeError) as err:
        reason = str(err) if isinstance(err, Unsupported) else f"{file} lacks {err}"
        print(f"{NOTE}{task} starts from conf/{FALLBACK[0]} and conf/{FALLBACK[1]}: {reason}",
              file=sys.stderr)
        out: dict[str, Any] = {}
        for relative in FALLBACK:
            group = relative.split("/")[0]
            values = yaml.safe_load((paths.conf_dir() / relative).read_text())
            out.update({f"{group}.{k}": v for k, v in values.items()})
        return out


def resolve(key: str, _root_: Any) -> Any:
    """`${isaaclab_agent:ppo.rollouts}`: the key's value in the start of the run's env.task."""
    task = _root_.env.get("task") if "env" in _root_ else None
    if not task:
        raise ConfigError(file="conf/ppo/isaaclab_task.yaml or conf/network/isaaclab_task.yaml",
                          key=key, value=f"${{{RESOLVER}:{key}}}",
                          rule="it reads an Isaac Lab task's own agent configuration, and env.task "
                               "is not set", fix="use it with env=isaaclab env.task=Isaac-...")
    settings = None
    if _READER["subprocess"] and str(task) not in _STARTS:  # the orchestrator's first read: terms too
        env = _root_.env
        settings = {"device": env.get("device"), "params": _plain(env.get("params")),
                    "overrides": _plain(env.get("cfg"))}
    start = start_of(str(task), settings)
    if key not in start:
        raise ConfigError(file="conf/ppo/isaaclab_task.yaml or conf/network/isaaclab_task.yaml",
                          key=key, value=f"${{{RESOLVER}:{key}}}",
                          rule=f"the start of {task} has no such key; its keys: {', '.join(start)}",
                          fix="correct the key")
    return start[key]


def _plain(node: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else node


def register() -> None:
    """Make `${isaaclab_agent:...}` known to OmegaConf (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, resolve)


def main(argv: list[str] | None = None) -> int:
    """`python -m automl.envs.isaaclab_agent TASK [SETTINGS_JSON]`: {"start": the task's start,
    "terms": its reward terms under SETTINGS_JSON (`start_of`), or null} as JSON on stdout (the note
    of a fallback on stderr); exit 2 with the error's parts as JSON on stderr for an unknown task."""
    import json

    from automl.envs.isaaclab_cfg import answer_as_json

    task, *rest = argv if argv is not None else sys.argv[1:]
    settings = json.loads(rest[0]) if rest else None
    return answer_as_json(lambda: {"start": read_start(task),
                                   "terms": None if settings is None else _terms(task, settings)})


if __name__ == "__main__":
    raise SystemExit(main())
