"""`automl.py`: flags and Hydra overrides in, checked and converted once into a typed
`automl.requests.Request`, then handed to the pipeline (search / validate / report).

The main process never imports torch or skrl: trials do.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from typing import Any

import optuna

from automl.envs import isaaclab_agent
from automl.errors import EXIT_BAD_INPUT, EXIT_FAILURE, ConfigError, Interrupted, bad_flag
from automl.requests import (
    DEFAULT_CONFIRM_SEEDS,
    DEFAULT_SEARCH_METHOD,
    Budget,
    PbtOptions,
    Request,
    Resources,
    SearchOptions,
    StudyRequest,
    ValidationOptions,
)
from automl.search.plan import DEFAULT_SPACE
from automl.search.study.loading import PRUNERS, SEARCH_METHODS
from automl.search.study.storage import HEARTBEAT_S, LockTimeout

MODES = ("stage", "search", "validate", "report")


DEFAULT_HP_TRIALS = 8
METHOD_ALIASES = {"tpe": "bayesian"}
"""Other names users give a method (rl-zoo3 and Optuna say `tpe`)."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help with every default: a flag whose help does not already say its default gets
    `(default: X)`; switches and flags whose default is worked out at run time say so in words."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


DESCRIPTION = """\
Search PPO hyperparameters, network size and reward weights jointly, validate the pick against
the starting configuration on fresh seeds, and train it once more.

With no flags it runs a 12-hour stage on the built-in navigation task. For a first result in
minutes:
  automl.py --mode stage --budget-hours 0.2 --hp-trials 6 --space templates/cartpole.yaml env=cartpole
"""


class _Version(argparse.Action):
    """--version: the installed package's version, read only when asked (importlib.metadata
    costs every orchestrator's start 40 ms)."""

    def __init__(self, option_strings: list[str], dest: str, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show automl's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from automl import __version__

        print(f"automl {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """automl.py's flags, in groups (docs/guide/commands.md lists them)."""
    p = argparse.ArgumentParser(
        prog="automl.py", usage="%(prog)s [flags] [key=value ...]", description=DESCRIPTION,
        formatter_class=_HelpFormatter, allow_abbrev=False,  # a flag is named in full
        epilog="Anything of the form key=value is a Hydra override passed to every trial, "
               "e.g. env=cartpole train.frames=200000.")
    a = p.add_argument
    a("--version", action=_Version)
    a("--mode", default="stage", help="stage (search, validate, final run), search, validate "
      "(an existing study's top configurations) or report")
    a("overrides", nargs="*", help="Hydra overrides for every trial (key=value)")
    _add_budget_flags(p)
    _add_search_flags(p)
    _add_pbt_flags(p)
    _add_validation_flags(p)
    _add_storage_flags(p)
    _add_machine_flags(p)
    return p


def _add_budget_flags(p: argparse.ArgumentParser) -> None:
    """What a run may spend."""
    g = p.add_argument_group("budget").add_argument
    g("--budget-hours", type=float, default=12.0, help="wall-clock budget of the whole run, "
      "every stage included")
    g("--hp-trials", type=int, default=None, help="search trials to train (default: "
      f"{DEFAULT_HP_TRIALS}; with --resume, the count in the study folder's meta.yaml)")
    g("--stage-shares", default="0.7,0.2,0.1", help="budget shares of search,validate,final")
    g("--trial-timeout", type=float, default=600.0, help="kill a trial silent this long (s)")
    g("--max-failure-rate", type=float, default=0.5, help="stop when a larger share of trials "
      "fails")


def _add_search_flags(p: argparse.ArgumentParser) -> None:
    """How the search samples, prunes and ranks."""
    g = p.add_argument_group("search").add_argument
    g("--space", default=None, help=f"search-space file (default: {DEFAULT_SPACE})")
    g("--search-method", default=DEFAULT_SEARCH_METHOD, help="bayesian or tpe (multivariate TPE), random, "
      "grid, cmaes, or pbt (population-based training)")
    g("--pruner", default="hyperband", help="hyperband, median, successive_halving, none")
    g("--grace-frames", type=int, default=None, help="frames before a trial may be pruned "
      "(the first rung is also after one time limit of every env; default: 10%% of train.frames)")
    g("--confirm-seeds", type=int, default=None, help="seeds a new best of the search is trained "
      f"on, its mean over them ranking it (default: {DEFAULT_CONFIRM_SEEDS}; 1: one run each)")
    g("--seed", type=int, default=None, help="seed of the sampler (default: a random one)")
    g("--target-score", type=float, default=None, help="log threshold_hits.csv at this score "
      "(default: none)")


def _add_validation_flags(p: argparse.ArgumentParser) -> None:
    """Validation against the starting configuration, and the final run."""
    g = p.add_argument_group("validation and final run").add_argument
    g("--validate-top", type=int, default=3, help="configurations raced against the start")
    g("--screen-seeds", type=int, default=3, help="fresh seeds of validation's first look, for "
      "every configuration (at least 2)")
    g("--validate-seeds", type=int, default=10, help="fresh seeds a validated configuration gets "
      "at most (fitted to the budget): the race adds paired seeds for those still in it up to this")
    g("--final-frames-multiplier", type=float, default=2.0, help="final run's frames x this")


def _add_storage_flags(p: argparse.ArgumentParser) -> None:
    """Where the study lives, and joining or continuing one."""
    g = p.add_argument_group("study and storage").add_argument
    g("--study-name", default=None, help="study name (default: <search_space_id>_<time>)")
    g("--resume", action="store_true", help="continue an existing study (or join one that "
      "other machines run)")
    g("--storage", default=None, help="Optuna storage URL, e.g. postgresql://USER@HOST/DB for "
      "several machines on one study (default: a journal file in the study folder)")
    g("--artifact-store", default=None, help="where population-based training stores segment "
      "states for every machine: a folder or s3://BUCKET (default: the study's recorded one, "
      "else the study folder's artifacts/)")
    g("--heartbeat-interval", type=int, default=HEARTBEAT_S, help="with --storage: seconds "
      "between heartbeats of running trials; a trial silent for 3 intervals is failed and run "
      "again")


def _add_machine_flags(p: argparse.ArgumentParser) -> None:
    """How trials share the machine, and what the console shows."""
    g = p.add_argument_group("machine and console").add_argument
    g("--workers", type=int, default=None, help="trials at once (default: as many as fit)")
    g("--threads-per-trial", type=int, default=1, help="torch CPU threads per trial on CPU")
    g("--gpu-fraction", type=float, default=0.25,
      help="share of one GPU per trial: round(1/fraction) trials run on each GPU, and each caps "
           "torch's allocations at that share of the GPU's memory (the simulator's own memory, "
           "e.g. Warp's, is not torch's and is not capped)")
    g("--quiet", action="store_true", help="one line per finished trial, no live table")
    g("--no-fork-server", action="store_true",
      help="start every trial as a cold Python process instead of forking it from a warm server")
    g("--worker", default=None, help=argparse.SUPPRESS)  # tests: a stand-in trial worker


def _add_pbt_flags(p: argparse.ArgumentParser) -> None:
    """The flags of population-based training, a group of their own in --help."""
    g = p.add_argument_group("population-based training (--search-method pbt)").add_argument
    g("--population", type=int, default=None, help="members (default: the slots, at least 4)")
    g("--pbt-interval", type=int, default=None, help="frames between exploit steps (default: "
      "10 or more per member, each at least one time limit of every env)")
    g("--pbt-fraction", type=float, default=None, help="share of members replaced each round "
      "by a copy of a top member (default: 0.25)")
    g("--pbt-mutate", type=float, default=None, help="probability that each mutable parameter "
      "changes when a member is copied (default: the space's pbt.mutation_probability, else 0.25)")
    g("--pbt-factors", default=None, help="a perturbed value is multiplied or divided by a "
      "factor from U(low, high) (default: the space's pbt.factors, else 1.1,1.5)")
    g("--pbt-resample", type=float, default=None, help="probability that a changed value is "
      "drawn afresh instead of perturbed (default: the space's pbt.resample_probability, else 0.25)")
    g("--pbt-exploit-after", type=int, default=None, help="frames every member trains before "
      "the first exploit step (default: 0, from the first segment's end)")
    g("--pbt-barrier", action="store_const", const=True, default=None, help="decide a member's "
      "next segment only once every member ended the same segment (reproducible decisions; "
      "default: as soon as its own segment ends, ranked among the others' latest scores)")
    g("--pbt-init", default=None, help="start (every member the starting configuration, all "
      "but the first perturbed once; default) or sample (all but the first sampled)")


def resumed_hp_trials(args: argparse.Namespace) -> int | None:
    """The trial count a resumed study last ran with: on a shared storage what the study recorded
    (its latest session ran on any machine), else this folder's meta.yaml."""
    if not (args.resume and args.study_name):
        return None
    from automl.paths import StudyPaths
    from automl.search.study import records
    from automl.search.study.reports import recorded
    from automl.search.study.storage import open_storage

    sp = StudyPaths.for_study(args.study_name)
    value = None
    if args.storage:
        storage = open_storage(sp, args.storage)  # an unusable URL: its ConfigError, exit 2
        try:
            value = optuna.load_study(study_name=sp.name, storage=storage).user_attrs.get(
                records.STUDY_HP_TRIALS)
        except KeyError:
            return None  # no such study: opening it says so
        finally:
            storage.engine.dispose()  # type: ignore[attr-defined]  # an RDBStorage: a URL
    if value is None:  # the journal file's study, or one stored before the count was recorded
        value = recorded(sp, "hp_trials")
    return value if isinstance(value, int) and value > 0 else None


def check_flags(args: argparse.Namespace) -> None:
    """Every flag rule, before anything is written; last, a resume without --hp-trials reads the
    count the study ran with (on a shared storage, from it)."""
    args.search_method = METHOD_ALIASES.get(args.search_method, args.search_method)
    choices = {"--mode": (args.mode, MODES), "--search-method": (args.search_method, SEARCH_METHODS),
               "--pruner": (args.pruner, PRUNERS)}
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            raise bad_flag(flag, value, f"it must be one of {', '.join(allowed)}",
                            f"use {flag} {allowed[0]}")
    hp_trials = 1 if args.hp_trials is None else args.hp_trials  # None: the study's, read below
    positive = {"--budget-hours": args.budget_hours, "--hp-trials": hp_trials,
                "--threads-per-trial": args.threads_per_trial, "--trial-timeout": args.trial_timeout,
                "--validate-top": args.validate_top, "--validate-seeds": args.validate_seeds,
                "--final-frames-multiplier": args.final_frames_multiplier,
                "--heartbeat-interval": args.heartbeat_interval}
    for flag, value in positive.items():
        if not value > 0:
            raise bad_flag(flag, value, "it must be > 0", f"give {flag} a positive value")
    if args.screen_seeds < 2:
        raise bad_flag("--screen-seeds", args.screen_seeds, "it must be >= 2 (a paired test needs "
                       "two seeds)", "drop it for 3")
    if args.confirm_seeds is not None and args.confirm_seeds <= 0:
        raise bad_flag("--confirm-seeds", args.confirm_seeds, "it must be >= 1",
                        f"drop it for {DEFAULT_CONFIRM_SEEDS}, or give 1 to train each "
                        "configuration once")
    if args.grace_frames is not None and args.grace_frames <= 0:
        raise bad_flag("--grace-frames", args.grace_frames, "it must be > 0",
                        "drop it for 10% of train.frames")
    if args.workers is not None and args.workers <= 0:
        raise bad_flag("--workers", args.workers, "it must be >= 1", "drop it to fill the machine")
    if not 0 < args.gpu_fraction <= 1:
        raise bad_flag("--gpu-fraction", args.gpu_fraction, "it must lie in (0, 1]",
                        "use --gpu-fraction 0.25 for 4 trials per GPU")
    if not 0 <= args.max_failure_rate <= 1:
        raise bad_flag("--max-failure-rate", args.max_failure_rate, "it must lie in [0, 1]",
                        "use --max-failure-rate 0.5")
    stage_shares(args.stage_shares)
    pbt_options(args)
    for item in args.overrides:
        if "=" not in item:
            raise bad_flag("overrides", item, "a Hydra override has the form key=value",
                            "e.g. env=cartpole or train.frames=200000")
    if args.hp_trials is None:
        args.hp_trials = resumed_hp_trials(args) or DEFAULT_HP_TRIALS


def stage_shares(text: str) -> tuple[float, float, float]:
    """--stage-shares "0.7,0.2,0.1" as three shares summing to 1 (exit 2 otherwise)."""
    try:
        shares = tuple(float(x) for x in text.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or any(s < 0 for s in shares) or not 0.99 <= sum(shares) <= 1.01:
        raise bad_flag("--stage-shares", text, "it must be three non-negative shares summing to 1",
                        "use --stage-shares 0.7,0.2,0.1")
    return shares[0], shares[1], shares[2]


PBT_FLAGS = {"--population": "population", "--pbt-interval": "pbt_interval",
             "--pbt-fraction": "pbt_fraction", "--pbt-factors": "pbt_factors",
             "--pbt-resample": "pbt_resample", "--pbt-mutate": "pbt_mutate",
             "--pbt-exploit-after": "pbt_exploit_after", "--pbt-init": "pbt_init",
             "--pbt-barrier": "pbt_barrier", "--artifact-store": "artifact_store"}


def pbt_options(args: argparse.Namespace) -> PbtOptions:
    """The --search-method pbt flags, checked (exit 2: a population under 2, an interval under 1,
    a fraction outside (0, 0.5], factors not 1 < low <= high, a probability outside [0, 1]).
    Given with another search method they are refused: they would change nothing."""
    given = [flag for flag, attr in PBT_FLAGS.items() if getattr(args, attr) is not None]
    if given and args.search_method != "pbt":
        raise bad_flag(given[0], getattr(args, PBT_FLAGS[given[0]]),
                       f"it only applies to --search-method pbt (not {args.search_method})",
                       "add --search-method pbt, or drop the flag")
    defaults = PbtOptions()
    if args.population is not None and args.population < 2:
        raise bad_flag("--population", args.population, "a population needs at least 2 members "
                       "(a member can only copy another)", "give --population 4 or more")
    if args.pbt_interval is not None and args.pbt_interval <= 0:
        raise bad_flag("--pbt-interval", args.pbt_interval, "it must be a positive number of frames",
                       "drop it for the default")
    fraction = defaults.fraction if args.pbt_fraction is None else args.pbt_fraction
    if not 0 < fraction <= 0.5:
        raise bad_flag("--pbt-fraction", fraction, "it must lie in (0, 0.5]: the members replaced "
                       "and the members they copy must not overlap", "use --pbt-fraction 0.25")
    factors = None
    if args.pbt_factors is not None:
        try:
            low, high = (float(x) for x in args.pbt_factors.split(","))
        except ValueError:
            low, high = math.nan, math.nan
        if not (1.0 < low <= high and math.isfinite(high)):
            raise bad_flag("--pbt-factors", args.pbt_factors, "it must be two factors low,high with "
                           "1 < low <= high", "use --pbt-factors 1.1,1.5")
        factors = (low, high)
    for flag, value in (("--pbt-resample", args.pbt_resample), ("--pbt-mutate", args.pbt_mutate)):
        if value is not None and not 0 <= value <= 1:
            raise bad_flag(flag, value, "it must lie in [0, 1]", f"use {flag} 0.25")
    after = args.pbt_exploit_after
    if after is not None and after < 0:
        raise bad_flag("--pbt-exploit-after", after, "it must be a number of frames, 0 or more",
                       "drop it to exploit from the first segment's end")
    init = args.pbt_init or defaults.init
    if init not in ("start", "sample"):
        raise bad_flag("--pbt-init", init, "it must be start or sample", "use --pbt-init start")
    return PbtOptions(population=args.population, interval=args.pbt_interval, fraction=fraction,
                      factors=factors, resample_probability=args.pbt_resample,
                      mutation_probability=args.pbt_mutate, exploit_after=after or 0, init=init,
                      barrier=bool(args.pbt_barrier))


def to_request(args: argparse.Namespace, argv: list[str]) -> Request:
    """The checked flags as the typed request the pipeline runs (check_flags first)."""
    return Request(
        mode=args.mode,
        study=StudyRequest(name=args.study_name, storage=args.storage, resume=args.resume,
                           artifact_store=args.artifact_store,
                           space=args.space, overrides=tuple(args.overrides), seed=args.seed),
        resources=Resources(workers=args.workers, threads_per_trial=args.threads_per_trial,
                            gpu_fraction=args.gpu_fraction, heartbeat_interval=args.heartbeat_interval,
                            worker=args.worker, fork_server=not (args.worker or args.no_fork_server)),
        budget=Budget(hours=args.budget_hours, shares=stage_shares(args.stage_shares),
                      trial_timeout=args.trial_timeout, max_failure_rate=args.max_failure_rate),
        search=SearchOptions(method=args.search_method, pruner=args.pruner, hp_trials=args.hp_trials,
                             grace_frames=args.grace_frames, target_score=args.target_score,
                             confirm_seeds=args.confirm_seeds, pbt=pbt_options(args)),
        validation=ValidationOptions(top=args.validate_top, seeds=args.validate_seeds,
                                      first=args.screen_seeds),
        final_frames_multiplier=args.final_frames_multiplier, quiet=args.quiet, argv=tuple(argv))


def main(argv: list[str] | None = None) -> int:
    """automl.py: parse, check, run the mode; returns the exit code (2: bad input)."""
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    reader = isaaclab_agent.read_in_subprocess()  # this process never imports Isaac Lab (nor torch)
    # SIGTERM as Ctrl-C: between stages either one stops the pipeline the same way (each stage's
    # loop installs its own handler to stop its trials first).
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        check_flags(args)
        request = to_request(args, sys.argv[1:] if argv is None else argv)
        from automl.stages.modes import run_mode

        return run_mode(request)
    except ConfigError as err:
        print(f"automl: error: {err.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LockTimeout as err:  # another orchestrator held the study's lock all along
        print(f"automl: error: {err}; run the command again once it is done (or stopped)",
              file=sys.stderr)
        return EXIT_FAILURE
    except Interrupted as stop:
        print(f"automl: {stop.stage} interrupted; continue with: {stop.resume}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("automl: interrupted between stages; see automl_state.yaml in the study folder",
              file=sys.stderr)
        return EXIT_FAILURE
    finally:
        signal.signal(signal.SIGTERM, previous)
        isaaclab_agent.read_in_subprocess(reader)  # as it was, for a caller in the same process
