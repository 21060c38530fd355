"""A user's own environment: `env.factory=package.module:function` builds a BatchedEnv.

The factory is imported by name and called with the run's `num_envs`, `device`, `seed` and
`env.params`; what it returns is checked against the interface in src/automl/envs/base.py before
training, so a wrong path or a half-finished env is one config error, not a traceback mid-run.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from automl.envs.base import BatchedEnv
from automl.errors import ConfigError

_SOURCE = "command line / conf/env/custom.yaml"
_INTERFACE = "src/automl/envs/base.py"
_ATTRIBUTES = ("observation_space", "action_space", "num_envs", "device", "reward_terms",
               "episode_metrics")
_METHODS = ("reset", "step", "close")


def load_factory(spec: str) -> Callable[..., Any]:
    """Import `package.module:function` and return the function."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute or ":" in attribute:
        raise _error(spec, rule="it must be `package.module:function` with exactly one colon",
                     fix="set env.factory=my_package.my_module:make_env")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise _error(spec, rule=f"the module `{module_name}` cannot be imported ({err})",
                     fix="check the spelling, and that the package is installed in this project's "
                         "environment (uv add ...) or its folder is on PYTHONPATH") from None
    # Any other exception while importing is a bug in the user's module: its traceback helps more.
    try:
        factory = getattr(module, attribute)
    except AttributeError:
        raise _error(spec, rule=f"the module `{module_name}` has no attribute `{attribute}`",
                     fix=f"name one of the functions it defines: {_functions_of(module)}") from None
    if not callable(factory):
        raise _error(spec, rule=f"`{attribute}` is a {type(factory).__name__}, not a function",
                     fix="point env.factory at a function that returns a BatchedEnv")
    return factory


def make_custom_env(
    *, factory: str, num_envs: int, device: torch.device, seed: int, params: dict[str, Any]
) -> BatchedEnv:
    """Build the user's env with `factory(num_envs=, device=, seed=, **params)` and check it."""
    fn = load_factory(factory)
    reserved = sorted({"num_envs", "device", "seed"} & set(params))
    if reserved:
        # Silently letting env.params override the run's own settings would hide the mistake.
        raise ConfigError(file=_SOURCE, key="env.params", value=params,
                          rule=f"{', '.join(reserved)} are set by the run, not by env.params",
                          fix="set env.num_envs, env.device or train.seed instead")
    kwargs = {"num_envs": num_envs, "device": device, "seed": seed, **params}
    _check_signature(fn, factory, kwargs)
    env = fn(**kwargs)
    _check_env(env, factory, num_envs)
    return env


def _check_signature(fn: Callable[..., Any], spec: str, kwargs: dict[str, Any]) -> None:
    """Catch a factory that cannot take our keywords before calling it, not by its TypeError."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C extension without a signature: let the call decide
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise _error(spec, rule=f"it cannot be called as {_call_text(spec, kwargs)} ({err})",
                     fix="give it the parameters num_envs, device, seed and one per key of "
                         "env.params (or **params)") from None


def _check_env(env: object, spec: str, num_envs: int) -> None:
    missing = [name for name in _ATTRIBUTES if not hasattr(env, name)]
    missing += [f"{name}()" for name in _METHODS if not callable(getattr(env, name, None))]
    if missing:
        raise _error(spec, rule=f"it returned a {type(env).__name__} without "
                                f"{', '.join(missing)} of the BatchedEnv interface",
                     fix=f"return an object that implements BatchedEnv (see {_INTERFACE})")
    if env.num_envs != num_envs:  # type: ignore[attr-defined]
        raise _error(spec, rule=f"the env it returned has num_envs={env.num_envs} "  # type: ignore[attr-defined]
                                f"where num_envs={num_envs} was asked for",
                     fix=f"build exactly num_envs environments (see {_INTERFACE})")


def _functions_of(module: ModuleType) -> str:
    # Only functions defined there: its imports (torch, gymnasium, ...) would bury the answer.
    names = sorted(name for name, value in vars(module).items()
                   if inspect.isfunction(value) and value.__module__ == module.__name__
                   and not name.startswith("_"))
    return ", ".join(names) or "(it defines none)"


def _call_text(spec: str, kwargs: dict[str, Any]) -> str:
    return f"{spec.partition(':')[2]}({', '.join(f'{k}=...' for k in kwargs)})"


def _error(spec: str, *, rule: str, fix: str) -> ConfigError:
    return ConfigError(file=_SOURCE, key="env.factory", value=spec, rule=rule, fix=fix)
