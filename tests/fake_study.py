"""Synthetic studies shaped exactly as the orchestrator leaves them, for the analysis tests.

A study folder under $AUTOML_LOG_ROOT/automl/<name>/ with study.journal (Optuna journal storage),
search_space.yaml, and per trained trial a run folder trials/trial_NNNN/ holding tb/ event files,
summary.json and config.yaml. Trials carry the user attributes of automl.search.study.records.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState
from standin_worker import EventWriter, write_point

from automl import reasons
from automl.paths import RunPaths, StudyPaths, trial_name
from automl.search.space import SearchSpace, load_space
from automl.search.study import records
from automl.search.study.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE_TEXT = """\
search_space_id: "fake"
fixed:
  seed: 42
ppo_params:
  learning_rate: { type: "loguniform", low: 1e-5, high: 1e-2 }
  lambda_param: { type: "uniform", low: 0.9, high: 0.99 }
  learning_epochs: { type: "randint", low: 2, high: 8, step: 2 }
  policy_hidden_layer_sizes:
    type: "categorical"
    choices: [[64, 64], [256, 128, 64]]
reward_weights:
  torques: { type: "loguniform", low: -1e-3, high: -1e-6 }
  termination: { type: "choice", values: [-500, -200, -50] }
"""
REWARD_TERMS = ("torques", "termination", "position_tracking")
SCORING = {"weights": {"success_rate": 1.0, "termination_rate": -0.5}, "min_episodes": 100}
STATES = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED,
          "fail": TrialState.FAIL, "running": TrialState.RUNNING}
DEFAULT_REASON = {"complete": reasons.COMPLETED, "pruned": reasons.PRUNED,
                  "fail": reasons.ERROR, "running": None}
FRAMES_PER_POINT = 10_000


@dataclass
class FakeTrial:
    """One scripted trial: native parameter values, its score and how it ended."""

    params: dict[str, Any]
    score: float | None
    """Final score (complete) or the score at the last point (pruned, running)."""
    state: str = "complete"
    """complete / pruned / fail / running."""
    stop_reason: str | None = None
    """Defaults by state: completed / pruned / error / none while running."""
    points: int = 5
    """Evaluation points written (a pruned trial stops early: give it fewer)."""
    run_folder: bool = True
    """Write trials/trial_NNNN/ (tb/, summary.json, config.yaml)."""
    metrics_attr: bool = True
    """Store the metrics user attribute (a running trial has none yet)."""
    extra_attrs: dict[str, Any] = field(default_factory=dict)


def metrics_for(score: float) -> dict[str, float]:
    """Task metrics consistent with a score, plus the shaped reward."""
    success = min(max(0.5 + score / 4.0, 0.0), 1.0)
    return {"success_rate": success, "termination_rate": 1.0 - success,
            "episode_length": 200.0 - 100.0 * success, "episode_reward_mean": 10.0 * score}


def curve(trial: FakeTrial) -> list[tuple[int, float]]:
    """Score at each evaluation point, rising to `score` at the last one."""
    if trial.score is None or trial.points == 0:
        return []
    n = trial.points
    return [((i + 1) * FRAMES_PER_POINT, trial.score - 0.5 * (n - 1 - i) / n) for i in range(n)]


def write_events(run: RunPaths, points: list[tuple[int, float]]) -> None:
    """One event per tag per evaluation point, at step = frames (as the trial worker writes)."""
    writer = EventWriter(run.tb)
    try:
        for frames, score in points:
            write_point(writer, frames, score, metrics_for(score))
    finally:
        writer.close()


def write_run(run: RunPaths, trial: FakeTrial, config_values: dict[str, Any]) -> None:
    points = curve(trial)
    write_events(run, points)
    frames = points[-1][0] if points else 0
    status = "error" if trial.state == "fail" else "completed"
    summary = {"status": status, "score": trial.score, "frames": frames, "wall_s": 12.5,
               "seed": 42, "git_sha": None,
               "metrics": metrics_for(trial.score) if trial.score is not None else {}}
    run.summary.write_text(json.dumps(summary))
    config: dict[str, Any] = {"scoring": SCORING, "train": {"seed": 42}}
    for key, value in config_values.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    run.config.write_text(yaml.safe_dump(config))


def _attrs(trial: FakeTrial, number: int, config_values: dict[str, Any]) -> dict[str, Any]:
    points = curve(trial)
    attrs: dict[str, Any] = {records.PHASE: "search", records.CONFIG_VALUES: config_values,
                             records.RUN_DIR: f"trials/{trial_name(number)}"}
    reason = trial.stop_reason or DEFAULT_REASON[trial.state]
    if reason is not None:
        attrs[records.STOP_REASON] = reason
        attrs[records.FRAMES] = points[-1][0] if points else 0
        attrs[records.WALL_S] = 10.0 + number
    if trial.metrics_attr and trial.score is not None and trial.state != "running":
        attrs[records.METRICS] = metrics_for(trial.score)
    if trial.state == "fail":
        attrs[records.ERROR_TAIL] = "RuntimeError: scripted"
    return {**attrs, **trial.extra_attrs}


def make_study(name: str, trials: list[FakeTrial], *, space_text: str = SPACE_TEXT,
               direction: str = "maximize") -> StudyPaths:
    """Create the study folder, its journal study and its trials; returns the folder."""
    study_paths = StudyPaths.for_study(name)
    study_paths.root.mkdir(parents=True, exist_ok=True)
    study_paths.search_space.write_text(space_text)
    space = load_space(study_paths.search_space, reward_terms=REWARD_TERMS)
    study = optuna.create_study(study_name=name, storage=open_storage(study_paths, None),
                                direction=direction)
    for number, trial in enumerate(trials):
        config_values = space.config_values(trial.params)
        complete = trial.state == "complete"
        study.add_trial(optuna.trial.create_trial(
            params=space.to_optuna(trial.params), distributions=space.distributions(),
            value=trial.score if complete else None, state=STATES[trial.state],
            user_attrs=_attrs(trial, number, config_values),
            intermediate_values={} if complete and trial.points == 0 else dict(curve(trial))))
        if trial.run_folder:
            write_run(study_paths.trial_run(number), trial, config_values)
    return study_paths


def random_params(space: SearchSpace, rng: random.Random) -> dict[str, Any]:
    """Native values drawn uniformly (log-uniformly for log ranges) from the space."""
    values: dict[str, Any] = {}
    for p in space.params:
        if p.kind in ("choice", "categorical"):
            values[p.name] = list(v) if isinstance(v := rng.choice(p.values), tuple) else v
        elif p.kind == "randint":
            assert isinstance(p.low, int) and isinstance(p.high, int)
            values[p.name] = rng.randrange(p.low, p.high + 1, p.step or 1)
        elif p.log:
            assert p.low is not None and p.high is not None
            lo, hi = sorted((abs(p.low), abs(p.high)))
            values[p.name] = p.sign * 10 ** rng.uniform(math.log10(lo), math.log10(hi))
        else:
            assert p.low is not None and p.high is not None
            values[p.name] = rng.uniform(p.low, p.high)
    return values


def fake_space() -> SearchSpace:
    from automl.search.space import parse_space

    return parse_space(yaml.safe_load(SPACE_TEXT), source="fake", reward_terms=REWARD_TERMS,
                       text=SPACE_TEXT)


def lr_driven_trials(n: int = 30, *, seed: int = 0) -> list[FakeTrial]:
    """Trials whose score depends on the learning rate alone (best at 3e-4) plus tiny noise."""
    rng = random.Random(seed)
    space = fake_space()
    trials = []
    for _ in range(n):
        params = random_params(space, rng)
        score = -abs(math.log10(params["learning_rate"] / 3e-4)) + rng.gauss(0.0, 0.01)
        trials.append(FakeTrial(params=params, score=score))
    return trials
