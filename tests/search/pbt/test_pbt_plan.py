"""Population-based training's plan (population, interval, segment ends), the next generation of a
population with failed members, and train.schedule: its steps, its Hydra override and a real
replay in train_one."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from search_harness import REPO, SPACES

from automl.config import compose, load_run_config
from automl.errors import ConfigError
from automl.requests import PbtOptions
from automl.run import schedule
from automl.search.pbt.plan import PbtPlan, plan_pbt
from automl.search.pbt.population import Segment, next_generation
from automl.search.space import load_space
from automl.search.study import records
from automl.stages.pbt import replay_steps, schedule_override

SPACE = load_space(SPACES / "pbt.yaml", reward_terms=["torques"])


def plan(**changes: object) -> PbtPlan:
    fields = {"population": 8, "frames": 100_000, "interval": 20_000, "fraction": 0.25,
              "factors": (1.1, 1.5), "resample_probability": 0.25, "init": "start", "floor": 0.0,
              "seed": 3}
    return PbtPlan(**{**fields, **changes})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- the plan
def test_default_population_and_interval_follow_the_slots_and_the_episodes():
    base = load_run_config(["train.frames=2000000", "train.eval_frequency=50000"])
    made = plan_pbt(PbtOptions(), base, slots=2, episode_frames=100_000, seed=None)
    assert made.population == 4 and made.interval == 200_000 and made.generations == 10
    assert made.note == ""
    assert plan_pbt(PbtOptions(), base, slots=6, episode_frames=None, seed=1).population == 6
    short = load_run_config(["train.frames=300000", "train.eval_frequency=50000"])
    made = plan_pbt(PbtOptions(), short, slots=2, episode_frames=100_000, seed=None)
    # A segment holds one time limit of every env at least: 3 segments, and the plan says why.
    assert made.interval == 100_000 and made.generations == 3 and "only 3 segments" in made.note
    assert made.floor == base.scoring.plateau_min_delta


def test_an_interval_under_an_evaluation_point_or_not_below_the_frames_is_refused():
    base = load_run_config(["train.frames=200000", "train.eval_frequency=50000"])
    with pytest.raises(ConfigError, match="under one evaluation point"):
        plan_pbt(PbtOptions(interval=40_000), base, slots=2, episode_frames=None, seed=None)
    with pytest.raises(ConfigError, match="no member would ever copy another"):
        plan_pbt(PbtOptions(interval=200_000), base, slots=2, episode_frames=None, seed=None)


def test_segments_end_on_whole_updates_and_the_last_at_the_frames():
    p = plan(frames=100_000, interval=20_000)
    assert [p.segment_end(g, 384) for g in range(5)] == [20_352, 40_320, 60_288, 80_256, 100_000]
    assert p.segment_end(0, 1) == 20_000
    assert PbtPlan.from_dict(p.as_dict()) == p
    seeds = {p.seed_of(m, g) for m in range(8) for g in range(5)}
    assert len(seeds) == 40 and min(seeds) >= 10_000
    other = plan(seed=4)  # another --seed trains every member on other seeds
    assert seeds.isdisjoint({other.seed_of(m, g) for m in range(8) for g in range(5)})


# ----------------------------------------------------------------------------- next generation
def segment(number: int, member: int, score: float, *, lr: float = 3e-4) -> Segment:
    values = {"learning_rate": lr, "entropy_loss_scale": 0.005, "policy_hidden_layer_sizes": [64, 64],
              "torques": -1e-5}
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE if math.isfinite(score) else optuna.trial.TrialState.FAIL,
        value=score if math.isfinite(score) else None, params=SPACE.to_optuna(values),
        distributions=SPACE.distributions(),
        user_attrs={records.PHASE: records.PHASE_PBT, records.MEMBER: member,
                    records.GENERATION: 0, records.PARENT: -1, records.FRAMES_START: 0,
                    records.FRAMES_END: 20_000, records.FRAMES: 20_000,
                    records.STOP_REASON: "completed" if math.isfinite(score) else "error"})
    trial.number = number
    return Segment.of(trial, SPACE)


def test_every_failed_member_is_replaced_even_outside_the_bottom_group():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, math.nan, math.nan, math.nan]
    previous = {m: segment(m, m, s) for m, s in enumerate(scores)}
    specs = next_generation(plan(), SPACE, previous, allowed=lambda v: True, update_frames=lambda v: 1)
    assert specs is not None
    replaced = {s.member: s for s in specs if s.exploit is not None}
    # k = 2 of 8: the bottom two are exploit's; the third failed member is replaced all the same.
    assert {5, 6, 7} <= set(replaced)
    for spec in replaced.values():
        assert spec.exploit.donor in (0, 1) and spec.parent == spec.exploit.donor
        assert spec.frames_start == 20_000 and spec.generation == 1
        assert spec.values["policy_hidden_layer_sizes"] == [64, 64]  # fixed per member
    kept = [s for s in specs if s.exploit is None]
    assert all(s.parent == s.member and s.values == previous[s.member].values for s in kept)


def test_a_generation_without_any_score_cannot_go_on():
    previous = {m: segment(m, m, math.nan) for m in range(4)}
    assert next_generation(plan(population=4), SPACE, previous, allowed=lambda v: True,
                           update_frames=lambda v: 1) is None


def test_perturbed_values_that_break_a_rule_are_drawn_again():
    previous = {m: segment(m, m, s) for m, s in enumerate([0.9, 0.1, 0.5, 0.4])}
    specs = next_generation(plan(population=4), SPACE, previous,
                            allowed=lambda v: v["learning_rate"] < 3e-4, update_frames=lambda v: 1)
    assert specs is not None
    (step,) = [s for s in specs if s.exploit is not None]
    assert step.values["learning_rate"] < 3e-4


# ------------------------------------------------------------------------------ train.schedule
SEGMENTS = [
    {"until": 2048, "values": {"ppo.learning_rate": 0.001, "reward.scales.env_reward": 1.0}},
    {"until": 4096, "values": {"ppo.learning_rate": 0.001, "reward.scales.env_reward": 1.0}},
    {"until": 6000, "values": {"ppo.learning_rate": 0.0002, "reward.scales.env_reward": 0.5}},
]


def test_equal_consecutive_segments_are_one_step_and_the_override_composes():
    steps = replay_steps(SEGMENTS)
    assert [s["until"] for s in steps] == [4096, 6000]
    composed = compose(["env=cartpole", schedule_override(steps)])
    assert [dict(s) for s in composed.train.schedule] == [
        {"until": s["until"], "values": s["values"]} for s in steps]


@pytest.mark.parametrize(("steps", "says"), [
    ([{"until": 3000, "values": {}}, {"until": 2000, "values": {}}], "rising order"),
    ([{"until": 6000, "values": {"network.policy_hidden_layer_sizes": [8]}}], "ppo.* and reward.scales"),
    ([{"until": 6000, "values": {"ppo.rollouts": 8}}], "keep the training state's shape"),
    ([{"until": 5000, "values": {}}], "must end at train.frames"),
    ([{"from": 0, "until": 6000}], "a step is"),
])
def test_a_bad_schedule_is_refused_naming_the_step(steps, says):
    cfg = load_run_config(["env=cartpole", "train.frames=6000", f"{schedule_override(steps)}"
                           if all(set(s) <= {"until", "values"} for s in steps) else
                           "train.schedule=[{from:0,until:6000}]"])
    with pytest.raises(ConfigError, match="train.schedule") as err:
        schedule.steps(cfg)
    assert says in str(err.value)


def test_train_one_replays_a_schedule_in_one_run_folder(tmp_path):
    run = tmp_path / "run"
    steps = replay_steps(SEGMENTS)
    done = subprocess.run(
        [sys.executable, "-P", str(REPO / "train_one.py"), "env=cartpole", "env.num_envs=8",
         "train.frames=6000", "train.eval_frequency=2000", "train.quiet=true", "train.threads=1",
         f"run_dir={run}", schedule_override(steps)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (run / "stdout.log").read_text()
    assert "frames=4096" in log and f"resumed from {run / 'state.pt'} at 4096 frames" in log
    config = yaml.safe_load((run / "config.yaml").read_text())  # the last step's
    assert config["ppo"]["learning_rate"] == 0.0002 and config["train"]["frames"] == 6000
    assert config["reward"]["scales"]["env_reward"] == 0.5
    assert yaml.safe_load((run / "summary.json").read_text())["frames"] == 6000
    assert Path(run / "model.pt").exists()
