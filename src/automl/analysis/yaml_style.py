"""YAML as the reports write it: block mappings, lists of scalars (layer sizes) on one line."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper with lists of scalars in flow style."""


def _represent_list(dumper: yaml.SafeDumper, data: Any) -> yaml.Node:
    flat = bool(data) and all(not isinstance(v, (list, tuple, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)


def dump_yaml(data: Any) -> str:
    """`data` as YAML text, keys in their given order; floats round-trip exactly."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100,
                     allow_unicode=True)
