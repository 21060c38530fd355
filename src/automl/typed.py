"""Plain YAML data checked against typed dataclasses and back: the conversion every config schema
(automl.schema, the search space's) goes through. A mistake becomes one ConfigError naming the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from automl.errors import ConfigError


def yaml_key(cls: type, field_name: str) -> str:
    """The YAML key of a dataclass field: its `yaml` metadata where the YAML name is not a valid
    Python name (`lambda` for PPOConfig.gae_lambda), else the field name."""
    return next((str(f.metadata.get("yaml", f.name)) for f in dataclasses.fields(cls)
                 if f.name == field_name), field_name)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_value(tp: Any, value: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp` and return it converted (int -> float only)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(rule: str, fix: str = "") -> ConfigError:
        """A ConfigError about this value, naming `key` and the source."""
        return ConfigError(file=source, key=key, value=value, rule=rule, fix=fix)

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return check_value(inner[0], value, key, source)
    if origin is Literal:
        if value not in args:
            raise bad(f"it must be one of {', '.join(map(str, args))}", f"set {key}={args[0]}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, path=key, source=source)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad(f"it must be a list of {_type_name(args[0])}", f"write a list: {key}=[...]")
        return [check_value(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad("it must be a mapping", f"write a mapping: {key}={{...}}")
        return {str(k): check_value(args[1], v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("it must be true or false", f"set {key}=true or {key}=false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("it must be an integer", f"write a whole number such as {key}=1000 (1e3 reads as a float)")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("it must be a number", f"write a number such as {key}=0.001")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("it must be a string", f"quote it: {key}='...'")
        return value
    raise TypeError(f"schema type {tp!r} of {key} is not supported")


def build(cls: type, data: Any, *, path: str, source: str) -> Any:
    """Build dataclass `cls` from a plain mapping, rejecting unknown, missing and mistyped keys."""
    prefix = f"{path}." if path else ""
    if not isinstance(data, Mapping):
        raise ConfigError(file=source, key=path or "<root>", value=data, rule="it must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    aliases = {yaml_key(cls, n): n for n in fields}
    allowed = sorted(yaml_key(cls, n) for n in fields)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(key, key)
        if name not in fields:
            raise ConfigError(file=source, key=f"{prefix}{key}", value=value,
                              rule=f"it is not a known key; allowed keys here: {', '.join(allowed)}",
                              fix="remove it or correct its spelling")
        kwargs[name] = check_value(hints[name], value, f"{prefix}{key}", source)
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in kwargs and no_default:
            raise ConfigError(file=source, key=f"{prefix}{yaml_key(cls, name)}", value=None,
                              rule="it is missing", fix=f"add `{yaml_key(cls, name)}` to the config")
    return cls(**kwargs)


def to_plain(obj: Any) -> Any:
    """A dataclass tree back to plain YAML-ready data, with YAML key names (`lambda`)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {yaml_key(type(obj), f.name): to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
