"""Names in a space file: the config key each one sets, and the names a constraint may use.

A name under `ppo_params`, `reward_weights` or `fixed` is either a bare name (`learning_rate` for
`ppo.learning_rate`, `lambda_param` for `ppo.lambda`, a reward term for `reward.scales.<term>`) or a
full dotted config key; `resolve_name` maps it to its key and the run schema's annotation for it.

A parameter (searched or fixed) may be named in a constraint by the name the space file gives it,
by its full dotted config key, or by its bare name, whichever way the file wrote it. Only a name
that could mean two parameters is refused. Constraints read the effective configuration: sampled
values, fixed values and the command line's overrides, which win over both.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import typing
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import yaml

from automl.config import allowed_keys
from automl.errors import ConfigError
from automl.schema import RunConfig
from automl.typed import yaml_key

PPO_NAMES = ("learning_rate", "discount_factor", "ratio_clip", "value_clip", "entropy_loss_scale",
             "learning_epochs", "mini_batches", "rollouts", "grad_norm_clip", "value_loss_scale",
             "kl_threshold")
NETWORK_NAMES = ("policy_hidden_layer_sizes", "value_hidden_layer_sizes", "activation")
MODEL_KEYS: dict[str, str] = {
    **{name: f"ppo.{name}" for name in PPO_NAMES},
    "lambda_param": "ppo.lambda",
    "lambda": "ppo.lambda",
    **{name: f"network.{name}" for name in NETWORK_NAMES},
}
"""Bare names allowed in `ppo_params` and `fixed` -> config key."""
RUN_KEYS: dict[str, str] = {"seed": "train.seed", "num_envs": "env.num_envs",
                            "frames": "train.frames", "eval_frequency": "train.eval_frequency"}
"""Further bare names allowed in `fixed` -> config key."""
REWARD_PREFIX = "reward.scales."
ENV_PARAMS_PREFIX = "env.params."

MAX_PROBES = 4096
"""Combinations tried when looking for a constraint that can never fire."""


def name_aliases(entries: Mapping[str, str], bare_names: Mapping[str, str]
                 ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """`entries`: name in the file -> config key. `bare_names`: bare name -> config key (the
    space's table). Returns alias -> name in the file, and the aliases that name several."""
    meaning: dict[str, set[str]] = {}
    for name, key in entries.items():
        aliases = {name, key, key.rsplit(".", 1)[-1]}
        aliases |= {bare for bare, bare_key in bare_names.items() if bare_key == key}
        for alias in aliases:
            meaning.setdefault(alias, set()).add(name)
    unique = {alias: next(iter(names)) for alias, names in meaning.items() if len(names) == 1}
    ambiguous = {alias: sorted(names) for alias, names in meaning.items() if len(names) > 1}
    return unique, ambiguous


def override_values(overrides: Iterable[str], keys: Mapping[str, str]) -> dict[str, Any]:
    """Values the command line sets for the space's entries: name in the file -> value.
    `keys`: name in the file -> config key."""
    by_key = {key: name for name, key in keys.items()}
    found = {}
    for override in overrides:
        key, _, text = override.partition("=")
        name = by_key.get(key.lstrip("+~"))
        if name is not None:
            found[name] = _value(text)
    return found


def _value(text: str) -> Any:
    """An override's value as Hydra reads it: `1e-3` is a number (PyYAML alone keeps it a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def by_alias(values: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """Values by every alias (what a constraint expression reads)."""
    return {alias: values[name] for alias, name in aliases.items() if name in values}


def probe_combinations(choices: Mapping[str, list[Any]]) -> Iterable[dict[str, Any]]:
    """Every combination of the probe values (at most MAX_PROBES of them)."""
    names = list(choices)
    for combo in itertools.islice(itertools.product(*(choices[n] for n in names)), MAX_PROBES):
        yield dict(zip(names, combo, strict=True))


# ---------------------------------------------------------------------------------------------
# Names -> config keys


def resolve_name(name: str, *, section: str, reward_terms: Collection[str],
                 source: str) -> tuple[str, Any]:
    """Config key and schema annotation of a name in `section` (bare or full dotted path)."""
    key = f"{section}.{name}"
    if "." in name:
        return _resolve_dotted(name, reward_terms, source=source, key=key)
    if section == "reward_weights":
        return _resolve_dotted(REWARD_PREFIX + name, reward_terms, source=source, key=key)
    bare = dict(MODEL_KEYS)
    if section == "fixed":
        bare = {term: REWARD_PREFIX + term for term in reward_terms} | bare | RUN_KEYS
    if name not in bare:
        hint = " (reward weights go under reward_weights)" if name in reward_terms else ""
        raise ConfigError(file=source, key=key, value=name,
                          rule=f"it is not a known parameter{hint}; names allowed in {section}: "
                          f"{', '.join(sorted(bare))}, or a full dotted path such as "
                          "ppo.learning_rate", fix=did_you_mean(name, bare))
    return _resolve_dotted(bare[name], reward_terms, source=source, key=key)


def did_you_mean(name: str, options: Collection[str]) -> str:
    """A fix for a misspelt name: the closest of `options`, if any is close."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"did you mean `{close[0]}`?" if close else "correct its spelling"


def _resolve_dotted(dotted: str, reward_terms: Collection[str], *, source: str,
                    key: str) -> tuple[str, Any]:
    """Check a full dotted config key (`key`: where the file names it, for the message)."""
    if dotted.startswith(REWARD_PREFIX):
        term = dotted.removeprefix(REWARD_PREFIX)
        if term not in reward_terms:
            raise ConfigError(file=source, key=key, value=dotted,
                              rule=f"the environment has no reward term `{term}`; its terms: "
                              f"{', '.join(sorted(reward_terms))}",
                              fix=did_you_mean(term, reward_terms))
        return dotted, float
    if dotted.startswith(ENV_PARAMS_PREFIX) and len(dotted) > len(ENV_PARAMS_PREFIX):
        return dotted, Any
    annotation = _schema_annotation(dotted)
    if annotation is None:
        allowed = allowed_keys(dotted) or allowed_keys(dotted.split(".")[0])
        raise ConfigError(file=source, key=key, value=dotted,
                          rule=f"it is not a config key that takes a value; keys allowed next to "
                          f"its last part: {', '.join(allowed)}",
                          fix="correct the path (see src/automl/schema.py), e.g. ppo.learning_rate")
    return dotted, annotation


def _schema_annotation(dotted: str) -> Any | None:
    """Annotation of a leaf key of the run schema (`ppo.lambda` -> float), None if not a leaf."""
    node: Any = RunConfig
    for part in dotted.split("."):
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            return None
        names = {yaml_key(node, f.name): f.name for f in dataclasses.fields(node)}
        if part not in names:
            return None
        node = typing.get_type_hints(node)[names[part]]
    if dataclasses.is_dataclass(node) or typing.get_origin(node) is dict:
        return None
    return node
