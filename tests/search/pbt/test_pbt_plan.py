"""Population-based training's plan (population, interval, segment ends), the next generation of a
population with failed members, and train.schedule: its steps, its Hydra override and a real
replay in train_one."""

from __future__ import annotations

import math
import random
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
from automl.search.pbt.decide import next_generation
from automl.search.pbt.plan import PbtPlan, plan_pbt
from automl.search.pbt.population import Population, Segment
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


def trained_until(start: int, end: int, num_envs: int) -> int:
    """The frames train_one holds after training from `start` to train.frames=`end` (whole steps of
    num_envs; run/train.py)."""
    return start + math.ceil((end - start) / num_envs) * num_envs


@pytest.mark.parametrize("num_envs", [16, 256, 2048])
def test_every_segment_starts_below_its_end_and_the_last_ends_at_the_frames(num_envs):
    # Members may hold different rollouts (fixed per member, copied with a donor's state), so a
    # lineage's update size can change at every generation: each is drawn at random here.
    rng = random.Random(num_envs)
    rollouts = [16, 24, 32, 64]
    checked = 0
    for frames in (24_008, 100_000, 1_020_000, 2_000_000, 2_000_128, 3_333_333):
        for interval in (8_000, 20_000, 100_000, 499_500, 1_000_000):
            if interval >= frames or interval < 64 * num_envs:
                continue
            base = load_run_config([f"train.frames={frames}", "train.eval_frequency=1000",
                                    f"env.num_envs={num_envs}", "ppo.rollouts=16",
                                    "ppo.mini_batches=4"])
            try:
                made = plan_pbt(PbtOptions(interval=interval), base, slots=2, episode_frames=None,
                                seed=None, most_update=max(rollouts) * num_envs)
            except ConfigError as err:  # one segment and less than an update after it
                assert frames - interval < max(rollouts) * num_envs, str(err)
                continue
            assert made.generations >= 2
            for _ in range(20):
                start = 0
                for g in range(made.generations):
                    end = made.segment_end(g, rng.choice(rollouts) * num_envs, start=start)
                    assert start < end, (frames, interval, g)
                    if g < made.generations - 1:
                        assert end < frames, (frames, interval, g)
                    start = trained_until(start, end, num_envs)
                assert end == frames and frames <= start < frames + num_envs
                checked += 1
    assert checked >= 100


def test_the_issues_boundaries_end_in_a_reachable_last_segment():
    # train.frames=24008, interval 8000, 16 envs x 24 rollouts: the third segment, rounded up to a
    # whole update, reached 24,016 and left a fourth from 24,016 to 24,008, which every member
    # failed. The last 8 frames now join the third segment.
    base = load_run_config(["train.frames=24008", "train.eval_frequency=1000", "env.num_envs=16",
                            "ppo.rollouts=24", "ppo.mini_batches=4"])
    made = plan_pbt(PbtOptions(interval=8000), base, slots=2, episode_frames=None, seed=None)
    assert made.generations == 3 and "the last 8 frames join the last segment" in made.note
    assert [made.segment_end(g, 384) for g in range(3)] == [8064, 16128, 24008]
    assert PbtPlan.from_dict(made.as_dict()).generations == 3
    # 2,000,000 frames, interval 499,500, 256 envs x 16 rollouts: 4 segments, not 5.
    base = load_run_config(["train.frames=2000000", "train.eval_frequency=1000",
                            "env.num_envs=256", "ppo.rollouts=16", "ppo.mini_batches=4"])
    made = plan_pbt(PbtOptions(interval=499_500), base, slots=2, episode_frames=None, seed=None)
    assert made.generations == 4 and made.segment_end(2, 4096) < 2_000_000
    # A member that holds more frames than a planned end (an old study's plan) trains on past it.
    assert plan(frames=100_000, interval=20_000).segment_end(4, 384, start=100_096) == 100_097
    # Where what is left after one segment is under one update, there is nothing to exploit.
    with pytest.raises(ConfigError, match="less than one PPO update"):
        plan_pbt(PbtOptions(interval=8000), load_run_config([
            "train.frames=8100", "train.eval_frequency=1000", "env.num_envs=16", "ppo.rollouts=24",
            "ppo.mini_batches=4"]),
            slots=2, episode_frames=None, seed=None)


# ----------------------------------------------------------------------------- next generation
def segment(number: int, member: int, score: float, *, lr: float = 3e-4, generation: int = 0) -> Segment:
    values = {"learning_rate": lr, "entropy_loss_scale": 0.005, "policy_hidden_layer_sizes": [64, 64],
              "torques": -1e-5}
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE if math.isfinite(score) else optuna.trial.TrialState.FAIL,
        value=score if math.isfinite(score) else None, params=SPACE.to_optuna(values),
        distributions=SPACE.distributions(),
        user_attrs={records.PHASE: records.PHASE_PBT, records.MEMBER: member,
                    records.GENERATION: generation, records.PARENT: -1, records.FRAMES_START: 0,
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


def test_a_last_generation_that_failed_leaves_the_winner_of_the_one_before():
    first = [segment(m, m, s) for m, s in enumerate([0.2, 0.9, 0.5, 0.4])]
    failed = [segment(4 + m, m, math.nan, generation=1) for m in range(4)]
    population = Population(plan=plan(population=4), segments=[*first, *failed])
    for s in population.segments:
        population.results.setdefault(s.generation, {})[s.member] = s
    assert population.complete(1) and population.last_complete() == 1
    winner = population.winner()
    assert winner is not None and (winner.generation, winner.member) == (0, 1)
    population.results[0] = {m: segment(m, m, math.nan) for m in range(4)}  # no score anywhere
    assert population.winner() is None


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
