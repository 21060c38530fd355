"""Who validation compares: the top configurations of the search (by the study's own ranking) and
the starting configuration (the `baseline`), and the fresh seeds they run on.

The starting configuration is the space's priors, with the composed defaults where a parameter has no
prior: what the user would have trained without a search. Its values and overrides are written to
configs/baseline.json, next to the search trials' configs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import optuna

from automl.analysis.validation import BASELINE, NO_TRIAL
from automl.errors import ConfigError
from automl.paths import atomic_write_text
from automl.requests import SearchOptions
from automl.search.space import SearchSpace, thaw
from automl.search.study import records
from automl.search.study.confirm import Configuration, ranked, study_seeds
from automl.stages.context import Stages

VALIDATION_SEED_BASE = 1000
"""Validation seeds start here, skipping any seed a search trial used."""


@dataclass(frozen=True)
class Candidate:
    """A configuration validation re-trains: a search trial's, or the starting configuration."""

    config_id: str
    """`trial_NNNN`, or `baseline`."""
    source_trial: int
    """The search trial that ran it (NO_TRIAL: a baseline no search trial ran)."""
    overrides: list[str]
    """Its base overrides; validation adds the seed."""
    rate: optuna.trial.FrozenTrial
    """A search trial whose recorded frames/s estimates its run time."""


def completed(study: optuna.Study, search: SearchOptions) -> list[Configuration]:
    """The study's configurations whose first trial completed, best first: confirmed on the
    study's --confirm-seeds by their mean, then the others (automl.search.study.confirm)."""
    return ranked(study, study_seeds(study, search, source=f"study {study.study_name}"))


def _plain(values: Any) -> Any:
    """Values as JSON gives them back (tuples as lists), to compare a record with a trial's."""
    return json.loads(json.dumps(values))


def starting_configuration(st: Stages) -> dict[str, Any]:
    """The baseline's record (configs/baseline.json): the space's fixed values and priors, the
    composed default of every parameter without a prior, the study's command-line overrides, and
    the first search trial that ran exactly this (the all-priors trial 0, when every parameter has a
    prior, or any trial that sampled exactly these values). Raises ConfigError when the study's
    space cannot be read."""
    from automl.analysis.folder import load_study_space

    trials = [t for t in st.study.get_trials(deepcopy=False) if records.in_search(t)]
    space = load_study_space(st.paths, trials)
    if space is None:
        raise ConfigError(file=str(st.paths.search_space), key="search_space.yaml", value=None,
                          rule="the study's search space cannot be read, so its starting "
                          "configuration cannot be rebuilt", fix="restore search_space.yaml")
    user: list[str] = next((st.trial_file(t.number).get("user_overrides", []) for t in trials
                            if st.paths.trial_config(t.number).exists()), [])
    values, overrides, priors = composed_start(space, user)
    ran = [t for t in trials if records.CONFIRMS not in t.user_attrs
           and _plain(t.user_attrs.get(records.CONFIG_VALUES)) == _plain(values)]
    ran.sort(key=lambda t: (t.state != optuna.trial.TrialState.COMPLETE, t.number))
    source = ran[0].number if ran else NO_TRIAL
    return {"config_id": BASELINE, "source_trial": source, "params": priors,
            "config_values": values, "base_overrides": overrides, "user_overrides": user}


def composed_start(space: SearchSpace, user: list[str]) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """The starting configuration of `space` under the command line's `user` overrides: its config
    values (the fixed values, each parameter's prior, else its composed default), the overrides
    that train it, and the priors by parameter name."""
    from omegaconf import OmegaConf

    from automl.config import compose

    priors = {p.name: thaw(p.prior) for p in space.params if p.has_prior}
    composed = compose([*space.fixed_overrides(),
                        *(space.param(name).override(value) for name, value in priors.items()),
                        *user])
    values = {k: thaw(v) for k, v in space.fixed.items()}
    searched = []  # every parameter set explicitly, as a search trial sets it
    for p in space.params:
        value = priors[p.name] if p.name in priors else OmegaConf.select(composed, p.key)
        if value is not None or p.name in priors:  # None composed: the task's own default
            values[p.key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            searched.append(p.override(values[p.key]))
    return values, [*space.fixed_overrides(), *searched, *user], priors


def with_baseline(st: Stages, top: list[Candidate]) -> list[Candidate]:
    """The top configurations with the starting configuration among them, second (a budget cut
    keeps the best and the baseline longest; first where the best is the start itself); a top
    configuration with the start's very values is the baseline, not run again. Writes
    configs/baseline.json, or keeps the one an earlier session wrote (its runs are kept too)."""
    try:  # an earlier session's record stands: its runs are kept, and must be of the same start
        start = st.config_record(BASELINE)
    except (OSError, ValueError):
        try:
            start = starting_configuration(st)
        except ConfigError as err:
            st.note(f"no baseline in validation: {err.message}")
            return top
        atomic_write_text(st.paths.config_file(BASELINE), json.dumps(start, indent=2) + "\n")
    values = _plain(start["config_values"])
    same = [c for c in top if _plain(c.rate.user_attrs.get(records.CONFIG_VALUES)) == values]
    rest = [c for c in top if c not in same]
    source = int(start["source_trial"])
    ran = next((t for t in st.study.get_trials(deepcopy=False) if t.number == source), None)
    rate = ran if ran is not None and _has_rate(ran) else top[0].rate
    baseline = Candidate(BASELINE, source, start["base_overrides"], rate)
    at = 0 if same and same[0] is top[0] else 1
    return [*rest[:at], baseline, *rest[at:]]


def _has_rate(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial recorded the frames and seconds it trained (its rate estimates a rerun)."""
    frames, wall = trial.user_attrs.get(records.FRAMES), trial.user_attrs.get(records.WALL_S)
    return isinstance(frames, int) and frames > 0 and isinstance(wall, (int, float)) and wall > 0


def fresh_seeds(st: Stages, count: int) -> list[int]:
    """`count` seeds from VALIDATION_SEED_BASE on that no trial of the study trained with."""
    used = set()
    for t in st.study.get_trials(deepcopy=False):
        try:
            base = st.trial_file(t.number).get("base_overrides", [])
        except (OSError, ValueError):
            continue
        used |= {int(o.split("=", 1)[1]) for o in base if o.startswith("train.seed=")}
    seeds: list[int] = []
    seed = VALIDATION_SEED_BASE
    while len(seeds) < count:
        if seed not in used:
            seeds.append(seed)
        seed += 1
    return seeds
