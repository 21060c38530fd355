"""What one `automl.py` command asks for: the flags, checked and converted once by cli.py into a
frozen, typed request. Nothing below the command line sees argparse; each stage takes the parts it
needs (the study, the resources, the budget, the search, validation and final-run options).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_CONFIRM_SEEDS = 2
"""--confirm-seeds of a new study that is not given one."""
DEFAULT_SEARCH_METHOD = "bayesian"
"""--search-method when none is given: multivariate TPE."""


@dataclass(frozen=True)
class StudyRequest:
    """Which study, where it is stored and what its trials start from."""

    name: str | None
    """--study-name; None: `<search_space_id>_<time>` for a new study."""
    storage: str | None
    """--storage: an Optuna storage URL; None: the journal file in the study folder."""
    resume: bool
    """--resume: continue (or join) an existing study instead of creating one."""
    space: str | None
    """--space: the search-space file; None: the study's own copy on resume, else the default."""
    overrides: tuple[str, ...]
    """Hydra overrides (key=value) given to every trial, as typed on the command line."""
    seed: int | None
    """--seed: the sampler's seed."""
    artifact_store: str | None = None
    """--artifact-store: where a population's segment states go (a folder or s3://BUCKET); None:
    the study's recorded one, else its folder's artifacts/."""


@dataclass(frozen=True)
class Resources:
    """Where and how trials run."""

    workers: int | None
    """--workers: trials at once; None: as many as the machine holds."""
    threads_per_trial: int
    """--threads-per-trial: torch CPU threads of one trial on CPU."""
    gpu_fraction: float
    """--gpu-fraction: the share of one GPU a trial gets."""
    heartbeat_interval: int
    """--heartbeat-interval: seconds between heartbeats of running trials on a database storage."""
    worker: str | None
    """The trial command (tests' stand-in worker); None: train_one (python -P -m automl.run.train_one)."""
    fork_server: bool
    """Fork trials from a warm server (not with a stand-in worker or --no-fork-server)."""


@dataclass(frozen=True)
class Budget:
    """The wall clock and the limits that stop trials or the search."""

    hours: float
    """--budget-hours: the whole run (stage mode splits it by `shares`)."""
    shares: tuple[float, float, float]
    """--stage-shares: the budget's shares of search, validation and the final run."""
    trial_timeout: float
    """--trial-timeout: seconds a trial may stay silent before it is killed."""
    max_failure_rate: float
    """--max-failure-rate: the search stops when a larger share of its trials fail."""

    @property
    def seconds(self) -> float:
        """The whole budget in seconds."""
        return self.hours * 3600.0


@dataclass(frozen=True)
class PbtOptions:
    """Population-based training (--search-method pbt): the flags, as given (automl.search.pbt.plan
    settles the defaults that depend on the config and the slots)."""

    population: int | None = None
    """--population: members; None: the slots available, at least 4."""
    interval: int | None = None
    """--pbt-interval: frames between two exploit steps; None: at least 10 per member, each at
    least one time limit of every env."""
    fraction: float = 0.25
    """--pbt-fraction: the share of members replaced each round (and the share that donates)."""
    factors: tuple[float, float] | None = None
    """--pbt-factors: a perturbed value is multiplied or divided by a factor from U(low, high);
    None: the space's `pbt.factors`, else (1.1, 1.5)."""
    resample_probability: float | None = None
    """--pbt-resample: probability that a changed value is drawn afresh instead of perturbed; None:
    the space's `pbt.resample_probability`, else 0.25."""
    mutation_probability: float | None = None
    """--pbt-mutate: probability that each mutable parameter changes when a member is copied; None:
    the space's `pbt.mutation_probability`, else 0.25."""
    exploit_after: int = 0
    """--pbt-exploit-after: frames every member trains before the first exploit step (0: the first
    segment's end)."""
    barrier: bool = False
    """--pbt-barrier: decide a member's next segment only once its whole generation ended."""
    init: str = "start"
    """--pbt-init: `start` (every member the starting configuration, members after the first
    perturbed once) or `sample` (members after the first sampled from the space)."""


@dataclass(frozen=True)
class SearchOptions:
    """How the search samples and prunes."""

    method: str
    """--search-method: bayesian (multivariate TPE), random, grid, cmaes or pbt."""
    pruner: str
    """--pruner: hyperband, median, successive_halving or none."""
    hp_trials: int
    """--hp-trials: search trials to train (also sizes the pruning plan)."""
    grace_frames: int | None
    """--grace-frames: frames before a trial may be pruned; None: 10% of train.frames."""
    target_score: float | None
    """--target-score: log threshold_hits.csv when a trial reaches it."""
    confirm_seeds: int | None = None
    """--confirm-seeds: seeds a new best is trained on in the search (automl.search.study.confirm);
    None: not given (a new study takes DEFAULT_CONFIRM_SEEDS, a resumed one its own)."""
    pbt: PbtOptions = field(default_factory=PbtOptions)
    """--search-method pbt's options."""

    @property
    def seeds(self) -> int:
        """Seeds a new study confirms a configuration on: --confirm-seeds or its default; 1 for
        grid search (it trains each point once)."""
        if self.method == "grid":
            return 1
        return DEFAULT_CONFIRM_SEEDS if self.confirm_seeds is None else self.confirm_seeds


@dataclass(frozen=True)
class ValidationOptions:
    """Validation: the top configurations re-trained on fresh seeds."""

    top: int
    """--validate-top: configurations re-run."""
    seeds: int
    """--validate-seeds: fresh seeds a configuration gets at most (the race's last look)."""
    first: int = 3
    """--screen-seeds: fresh seeds of the race's first look, for every configuration."""


@dataclass(frozen=True)
class Request:
    """One checked `automl.py` command."""

    mode: str
    """stage, search, validate or report."""
    study: StudyRequest
    resources: Resources
    budget: Budget
    search: SearchOptions
    validation: ValidationOptions
    final_frames_multiplier: float
    """--final-frames-multiplier: the final run trains train.frames x this."""
    quiet: bool
    """--quiet: one line per finished trial instead of the live table."""
    argv: tuple[str, ...]
    """The command line as given (written to meta.yaml)."""
