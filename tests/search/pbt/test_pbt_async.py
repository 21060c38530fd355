"""A member's next segment decided as its own segment ends (no generation barrier): the pool it is
ranked in, DexPBT's wait for over half of the population, a failed member that waits for a donor,
a copy of a donor at fewer frames, and the barrier plan that waits for the whole generation."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from search_harness import SPACES

from automl.errors import ConfigError
from automl.search.pbt.decide import Wait, choose, next_segment
from automl.search.pbt.exploit import exploit, exploit_one
from automl.search.pbt.plan import PbtPlan
from automl.search.pbt.population import Population, Segment
from automl.search.space import load_space
from automl.search.study import records

SPACE = load_space(SPACES / "pbt.yaml", reward_terms=["torques"])
INTERVAL = 20_000


def plan(**changes: object) -> PbtPlan:
    fields = {"population": 4, "frames": 100_000, "interval": INTERVAL, "fraction": 0.25,
              "factors": (1.1, 1.5), "resample_probability": 0.25, "init": "start", "floor": 0.0,
              "seed": 3, "mutation_probability": 0.25, "barrier": False}
    return PbtPlan(**{**fields, **changes})  # type: ignore[arg-type]


def segment(number: int, member: int, score: float | None, *, generation: int = 0,
            lr: float = 3e-4) -> Segment:
    """A segment of `member` ending generation `generation` at its boundary (None: still running)."""
    values = {"learning_rate": lr, "entropy_loss_scale": 0.005, "policy_hidden_layer_sizes": [64, 64],
              "torques": -1e-5}
    attrs = {records.PHASE: records.PHASE_PBT, records.MEMBER: member,
             records.GENERATION: generation, records.PARENT: -1,
             records.FRAMES_START: generation * INTERVAL, records.FRAMES_END: (generation + 1) * INTERVAL}
    if score is None:
        state, value = optuna.trial.TrialState.RUNNING, None
    else:
        state = optuna.trial.TrialState.COMPLETE if math.isfinite(score) else optuna.trial.TrialState.FAIL
        value = score if math.isfinite(score) else None
        attrs.update({records.FRAMES: (generation + 1) * INTERVAL,
                      records.STOP_REASON: "completed" if math.isfinite(score) else "error"})
    trial = optuna.trial.create_trial(state=state, value=value, params=SPACE.to_optuna(values),
                                      distributions=SPACE.distributions(), user_attrs=attrs)
    trial.number = number
    return Segment.of(trial, SPACE)


def population(made: PbtPlan, *segments: Segment) -> Population:
    return Population.from_segments(made, list(segments))


def decide(made: PbtPlan, pool: dict[int, Segment], member: int) -> object:
    return next_segment(made, SPACE, pool, member, allowed=lambda v: True,
                        update_frames=lambda v: 1024)


def test_a_member_is_due_as_its_own_segment_ends_and_ranked_among_the_latest_at_or_before_it():
    # Member 0 ended generation 1 first; 1 and 2 are at generation 0; 3's first segment runs.
    view = population(plan(), segment(0, 0, 0.3), segment(1, 1, 0.5), segment(2, 2, 0.1),
                      segment(3, 3, None), segment(4, 0, 0.2, generation=1),
                      segment(5, 1, None, generation=1))
    assert view.due() == [(0, 2), (2, 1)]
    pool = view.pool(1)
    assert {m: s.number for m, s in pool.items()} == {0: 4, 1: 1, 2: 2}  # 3 has no result yet
    spec = decide(plan(), pool, 0)
    assert spec.compared == {0: 1, 1: 0, 2: 0}
    assert spec.generation == 2 and spec.seed == plan().seed_of(0, 2)
    # Under a barrier nothing is due until generation 0 is complete.
    assert population(plan(barrier=True), *view.segments).due() == []


def test_no_exploit_until_over_half_of_the_population_has_a_result():
    made = plan(population=8)
    small = {0: segment(0, 0, 0.0), 1: segment(1, 1, 0.9), 2: segment(2, 2, 0.8), 3: segment(3, 3, 0.7)}
    kept = decide(made, small, 0)
    assert kept.exploit is None and kept.parent == 0 and kept.frames_start == INTERVAL
    larger = {**small, 4: segment(4, 4, 0.6)}  # 5 of 8: the worst (member 0, k = 1) is replaced
    spec = decide(made, larger, 0)
    assert spec.exploit is not None and spec.exploit.donor == 1 and spec.parent == 1


def test_a_replaced_member_starts_from_the_donors_state_at_the_frames_it_holds():
    # Member 3 ended generation 2; its donor's latest result is generation 1 (fewer frames).
    pool = {0: segment(10, 0, 0.9, generation=1), 1: segment(11, 1, 0.5, generation=2),
            2: segment(12, 2, 0.6, generation=2), 3: segment(13, 3, 0.1, generation=2)}
    spec = decide(plan(), pool, 3)
    assert spec.exploit is not None and spec.exploit.donor == 0
    assert spec.parent == 10 and spec.frames_start == 2 * INTERVAL
    assert spec.frames_end == plan().segment_end(3, 1024, start=2 * INTERVAL) == 79 * 1024  # 80k, rounded up
    assert spec.generation == 3 and spec.compared == {0: 1, 1: 2, 2: 2, 3: 2}


def test_a_failed_member_waits_for_a_donor_then_copies_one_whatever_the_pool_size():
    alone = {2: segment(2, 2, math.nan)}
    assert decide(plan(population=8), alone, 2) is None  # nothing to copy yet: it waits
    assert choose(plan(population=8), alone, 2, rng=random.Random(0)) is Wait.WAIT
    with_one = {**alone, 5: segment(5, 5, 0.4)}  # 2 of 8 members: too few to rank, one to copy
    spec = decide(plan(population=8), with_one, 2)
    assert spec.exploit is not None and spec.exploit.donor == 5 and spec.parent == 5
    assert math.isnan(spec.exploit.margin) and math.isnan(spec.exploit.replaced_score)


def test_exploit_waits_for_the_members_own_frames_not_the_populations():
    pool = {0: segment(0, 0, 0.0, generation=1), 1: segment(1, 1, 0.9), 2: segment(2, 2, 0.8),
            3: segment(3, 3, 0.7)}
    assert decide(plan(exploit_after=2 * INTERVAL), pool, 0).exploit is not None  # 0 holds 40k
    assert decide(plan(exploit_after=2 * INTERVAL + 1), pool, 0).exploit is None


def test_one_members_decision_is_the_population_rule_restricted_to_it():
    """`exploit` of a whole population and `exploit_one` per member, worst first, from one
    generator, replace the same members by the same donors."""
    for seed in range(200):
        rng = random.Random(seed)
        n = rng.randint(2, 12)
        members = [(m, rng.choice([math.nan, rng.random(), rng.random()])) for m in range(n)]
        whole = exploit(members, rng=random.Random(seed), fraction=0.25)
        one_rng = random.Random(seed)
        order = sorted(members, key=lambda m: (not math.isfinite(m[1]),
                                               -m[1] if math.isfinite(m[1]) else 0.0, m[0]))
        k = max(1, min(math.ceil(0.25 * n - 1e-9), n // 2))
        each = [exploit_one(members, m, rng=one_rng, fraction=0.25) for m, _ in reversed(order[-k:])]
        assert whole == [d for d in each if d is not None]
        assert all(exploit_one(members, m, rng=random.Random(0), fraction=0.25) is None
                   for m, _ in order[:-k])  # outside the bottom group: kept, nothing drawn


def test_the_barrier_is_a_flag_and_plans_stored_before_it_keep_theirs():
    from automl.cli import build_parser, pbt_options
    from automl.config import load_run_config
    from automl.search.pbt.plan import plan_pbt

    base = load_run_config(["train.frames=200000", "train.eval_frequency=10000"])
    for flags, barrier in (([], False), (["--pbt-barrier"], True)):
        args = build_parser().parse_args(["--search-method", "pbt", *flags])
        made = plan_pbt(pbt_options(args), base, slots=2, episode_frames=None, seed=None)
        assert made.barrier is barrier and ("each generation" in made.describe()) is barrier
        assert PbtPlan.from_dict(made.as_dict()).barrier is barrier
    stored = {k: v for k, v in made.as_dict().items() if k != "barrier"}  # a plan of before
    assert PbtPlan.from_dict(stored).barrier is True


def test_the_artifact_store_flag_is_refused_without_pbt():
    from automl.cli import build_parser, pbt_options

    args = build_parser().parse_args(["--search-method", "random", "--artifact-store", "/x"])
    with pytest.raises(ConfigError, match="only applies to --search-method pbt"):
        pbt_options(args)
