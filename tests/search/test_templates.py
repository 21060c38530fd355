"""Every shipped template, loaded with the environment its header's command names: no constraint
that can never fire, and a population starts from it under both --pbt-init modes (a composed
default the space does not hold, such as cartpole's rollouts 24 among 16, 32, 64, moves member 0
to the nearest value the space holds; it never stops the run)."""

from __future__ import annotations

import re

import pytest
from search_harness import REPO

from automl.config import load_run_config
from automl.requests import PbtOptions
from automl.search.pbt.decide import first_generation, starting_values
from automl.search.pbt.explore import check_mutable
from automl.search.pbt.plan import largest_update, plan_pbt
from automl.search.plan import reward_terms
from automl.search.space import Feasibility, load_space

TEMPLATES = sorted(p.name for p in (REPO / "templates").glob("*.yaml"))


def header_overrides(name: str) -> list[str]:
    """The Hydra overrides of the command in a template's header (env=...)."""
    text = (REPO / "templates" / name).read_text()
    command = re.search(r"automl\.py --space templates/\S+(.*)", text)
    assert command, name
    return [w for w in command.group(1).split() if "=" in w and not w.startswith("-")]


@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_has_live_constraints_and_starts_a_population(name):
    overrides = header_overrides(name)
    assert [o for o in overrides if o.startswith("env=")], name
    space = load_space(REPO / "templates" / name, reward_terms=reward_terms(load_run_config(overrides)))
    assert space.inert_constraints() == []
    feasibility = Feasibility.compose(space, overrides)
    check_mutable(space)
    start, moved = starting_values(space, feasibility.base)
    assert all(p.holds(start[p.name]) for p in space.params), moved
    for init in ("start", "sample"):
        plan = plan_pbt(PbtOptions(init=init), feasibility.base, slots=2, episode_frames=None,
                        seed=1, most_update=largest_update(space, feasibility.base, gpus=0))
        assert plan.generations >= 2
        specs = first_generation(plan, space, start, allowed=lambda v: feasibility.problem(v) is None,
                                 update_frames=lambda v: 1)
        assert specs[0].values == start
        for spec in specs:
            assert all(p.holds(spec.values[p.name]) for p in space.params), (name, init)
            assert feasibility.problem(spec.values) is None
