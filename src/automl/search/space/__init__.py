"""The search space: a space file read and checked, one class per parameter kind, the names a file
may use, its constraints, and which sampled configurations train_one would run.

Imports nothing else of `automl.search`: every search method samples from it.
"""

from automl.search.space.constraints import Constraint
from automl.search.space.feasibility import Feasibility, nothing_runs, refuse_space
from automl.search.space.names import MODEL_KEYS, REWARD_PREFIX, RUN_KEYS
from automl.search.space.params import Param, hydra_value, override_key, thaw
from automl.search.space.search_space import SearchSpace, load_space, parse_space

__all__ = [
    "MODEL_KEYS",
    "REWARD_PREFIX",
    "RUN_KEYS",
    "Constraint",
    "Feasibility",
    "Param",
    "SearchSpace",
    "hydra_value",
    "load_space",
    "nothing_runs",
    "override_key",
    "parse_space",
    "refuse_space",
    "thaw",
]
