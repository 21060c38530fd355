"""A study's checked inputs and its opening: the composed base config, the search space, the
pruning plan, the study itself (created or resumed), the slots and the trial command, all decided
before the first trial starts. cli.py parses and checks the flags into a Request; the pipeline
uses this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from automl import paths
from automl.config import compose, compose_with_choices, to_run_config
from automl.envs import isaaclab_agent
from automl.errors import EXIT_BAD_INPUT, ConfigError, bad_flag
from automl.paths import StudyPaths
from automl.requests import Request, Resources, SearchOptions, StudyRequest
from automl.schema import RunConfig
from automl.search.optuna_loop.pruning import PruningPlan, episode_frames, make_pruner, plan_pruning
from automl.search.optuna_loop.sampling import StartupTPESampler
from automl.search.optuna_loop.sizing import PlanSizing, StoredPlan, plan_inputs
from automl.search.space import Feasibility, SearchSpace, load_space, nothing_runs, refuse_space
from automl.search.study import records
from automl.search.study.loading import fetch_space_file, study_exists
from automl.search.study.recovery import Recovery, enqueue_retry, queued_values
from automl.search.study.resume import check_resumed_space, resumed_overrides, stored_plan_inputs
from automl.search.study.storage import check_storage, open_storage
from automl.search.trials.gpus import visible_gpus
from automl.search.trials.launcher import Slot, default_worker, plan_slots, trial_env

if TYPE_CHECKING:
    from automl.search.trials.forkserver import ForkServer

DEFAULT_SPACE = "templates/ppo_search_space.yaml"


@dataclass
class Plan:
    """The checked inputs of a study."""

    base: RunConfig
    """The run config every trial starts from (fixed values and command-line overrides applied;
    where the mini-batch size then is too small, at the first searched mini-batch values that run:
    Feasibility.base_config)."""
    space: SearchSpace
    study_paths: StudyPaths
    storage_url: str | None
    overrides: tuple[str, ...]
    """The Hydra overrides every trial gets: the command line's, or on --resume the study's own."""
    frames: int
    grace_frames: int
    pruning: PruningPlan
    """Rungs, brackets and sampler start-up, sized to the study (printed, stored in meta.yaml)."""
    episode_frames: int | None = None
    """Frames of one time limit of every environment (no rung before it)."""
    settled: bool = False
    """The pruning plan was settled on the budget in an earlier session (--resume keeps it)."""

    def pruning_for(self, trials: int) -> PruningPlan:
        """The pruning plan of this study had it `trials` trials."""
        return plan_pruning(self.pruning.pruner, trials=trials, frames=self.frames,
                            eval_frequency=self.base.train.eval_frequency, grace=self.grace_frames,
                            episode_frames=self.episode_frames)


def _space_path(request: StudyRequest, study_paths: StudyPaths | None) -> Path:
    if request.space:
        return Path(request.space)
    if request.resume and study_paths is not None and study_paths.search_space.exists():
        return study_paths.search_space
    return paths.repo_root() / DEFAULT_SPACE


def reward_terms(cfg: RunConfig) -> list[str]:
    """The reward terms a space may weigh: `reward.scales`, or an Isaac Lab task's own terms under the
    physics, presets and settings the run chose (read by a short subprocess, so that this process
    never imports Isaac Lab or torch: the one that read the task's start, where composing the run
    read it so), against which a scale given on the command line is checked here, before any trial."""
    if cfg.env.kind != "isaaclab":
        return list(cfg.reward.scales)
    assert cfg.env.task is not None  # checked by EnvConfig.check
    terms = isaaclab_agent.terms_read_with_start(cfg.env.task, {
        "device": cfg.env.device, "params": cfg.env.params, "overrides": cfg.env.cfg})
    if terms is None:  # not read with the start (read in-process, under other settings, or failed)
        terms = _read_terms(cfg)
    for term, scale in cfg.reward.scales.items():
        if term not in terms:
            raise ConfigError(file="conf/reward or the command line", key=f"reward.scales.{term}",
                              value=scale, rule=f"{cfg.env.task} has no reward term `{term}`; its terms: "
                                                f"{', '.join(terms)}",
                              fix="remove the scale or name one of those terms")
    return terms


def _read_terms(cfg: RunConfig) -> list[str]:
    """The Isaac Lab task's reward terms, read by a short subprocess under the run's settings."""
    assert cfg.env.task is not None
    device = cfg.env.device if cfg.env.device != "auto" else ("cuda" if visible_gpus() else "cpu")
    options = {"device": device, "params": cfg.env.params, "overrides": cfg.env.cfg}
    process = subprocess.run([sys.executable, "-P", "-m", "automl.envs.isaaclab_cfg", cfg.env.task,
                              json.dumps(options)],
                             capture_output=True, text=True, check=False, env=trial_env(Slot(index=0, threads=1)))
    if process.returncode == EXIT_BAD_INPUT:  # the error's parts, as JSON on its last line
        raise ConfigError(**json.loads(process.stderr.strip().splitlines()[-1]))
    if process.returncode != 0:
        raise RuntimeError(f"reading the reward terms of {cfg.env.task} failed:\n{process.stderr[-2000:]}")
    return list(json.loads(process.stdout.strip().splitlines()[-1]))


def make_plan(request: StudyRequest, search: SearchOptions) -> Plan:
    """Compose, load the space, check a sample composes, settle the study's name and place."""
    check_storage(request.storage)
    named = StudyPaths.for_study(request.name) if request.name else None
    started_with, stored_plan = None, None
    if named is not None and request.resume:
        started_with, stored_plan = _stored_settings(request.storage, named,
                                                     fetch_space=not request.space)
    overrides = list(request.overrides)
    if request.resume and named is not None:
        overrides = resumed_overrides(named, overrides, stored=started_with)
    first_cfg, first_choices = compose_with_choices(overrides)
    # The space's fixed and sampled values may still change the mini-batch size: checked below.
    first = to_run_config(first_cfg, choices=first_choices, mini_batch_rule=False)
    space_file = _space_path(request, named)
    if not space_file.exists():
        raise ConfigError(file=str(space_file), key="--space", value=str(space_file),
                          rule="the file does not exist",
                          fix=f"give an existing file, e.g. --space {DEFAULT_SPACE}")
    space = load_space(space_file, reward_terms=reward_terms(first))
    if request.resume and named is not None:
        check_resumed_space(named, space_file, space.text)
    for text in space.inert_constraints(overrides):
        print(f"automl: warning: {space_file}: the constraint {text!r} can never fire with these "
              "ranges, fixed values and overrides (it skips nothing); check it", file=sys.stderr)
    if search.method == "grid":
        space.grid()
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sample = space.suggest(probe)
    base_cfg, base_choices = compose_with_choices([*space.fixed_overrides(), *overrides])
    feasibility = Feasibility(space, base_cfg, base_choices, user_overrides=overrides)
    base = feasibility.base_config()
    compose([*space.fixed_overrides(), *space.overrides(sample), *overrides])  # its keys exist
    _check_feasible(feasibility)
    name = request.name or f"{space.space_id}_{time.strftime('%Y%m%d-%H%M%S')}"
    study_paths = StudyPaths.for_study(name)
    if base.env.device == "cuda" and not visible_gpus():
        raise ConfigError(file="command line", key="env.device", value="cuda",
                          rule="no NVIDIA GPU is visible", fix="use env.device=auto or cpu")
    plan_trials, grace_flag, settled = search.hp_trials, search.grace_frames, False
    if request.resume and named is not None:
        stored = stored_plan or StoredPlan(*stored_plan_inputs(named))
        plan_trials, grace_flag = stored.trials or plan_trials, stored.grace_frames or grace_flag
        settled = stored.settled
    grace = grace_flag or max(base.train.eval_frequency, base.train.frames // 10)
    if grace >= base.train.frames:
        raise bad_flag("--grace-frames", grace, f"it must be below train.frames "
                        f"({base.train.frames})", "lower --grace-frames or raise train.frames")
    episode = episode_frames(base.env, gpus=len(visible_gpus()))
    pruning = plan_pruning(search.pruner, trials=plan_trials, frames=base.train.frames,
                           eval_frequency=base.train.eval_frequency, grace=grace,
                           episode_frames=episode)
    return Plan(base=base, space=space, study_paths=study_paths, storage_url=request.storage,
                overrides=tuple(overrides), frames=base.train.frames, grace_frames=grace,
                pruning=pruning, episode_frames=episode, settled=settled)


def _check_feasible(feasibility: Feasibility) -> None:
    """Warn of each choice or range end of the space that train_one refuses whatever the other
    values (its samples are refused before launch, like a constraint violation); refuse a space
    with a parameter none of whose values can run."""
    never = feasibility.never_runs()
    source = feasibility.space.source
    stuck = nothing_runs(never)
    if stuck is not None:
        raise refuse_space(stuck, source)
    for item in never:
        print(f"automl: warning: {source}: {item.describe()}; such samples are refused before "
              "launch", file=sys.stderr)


def plan_sizing(request: Request, plan: Plan, *, slots: int, budget_s: float) -> PlanSizing | None:
    """What settles the study's pruning plan on the budget once a rate is known (None where an
    earlier session settled it: a resumed study keeps its plan)."""
    if plan.settled:
        return None
    method, seed = request.search.method, request.study.seed
    new_sampler = None
    if method == "bayesian":
        def new_sampler(startup: int) -> optuna.samplers.BaseSampler:
            """TPE with `startup`; a seed derived from the first sampler's, whose draws it would
            replay (not seed + 1: that is another study's first seed, whose draws it would share)."""
            return make_sampler(method, plan.space, None if seed is None else derived_seed(seed),
                                startup)
    # The plan in force was sized to --hp-trials (a resumed study's: its first session's); the
    # budget only ever sizes it down.
    return PlanSizing(plan=plan.pruning, plan_for=plan.pruning_for, hp_trials=plan.pruning.trials,
                      budget_s=budget_s, slots=slots, grace_frames=plan.grace_frames,
                      study_paths=plan.study_paths, new_sampler=new_sampler)


def derived_seed(seed: int) -> int:
    """A second sampler seed for a study seeded `seed`, unrelated to any other study's seed."""
    return random.Random(seed).randrange(2**31)


def make_sampler(method: str, space: SearchSpace, seed: int | None,
                 startup: int) -> optuna.samplers.BaseSampler:
    """The --search-method sampler; `startup`: TPE's random trials (per Hyperband bracket)."""
    if method in ("random", "pbt"):  # pbt: every segment is queued with its values
        return optuna.samplers.RandomSampler(seed=seed)
    if method == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if method == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return StartupTPESampler(startup=startup, seed=seed)


def _stored_settings(url: str | None, sp: StudyPaths, *,
                     fetch_space: bool) -> tuple[list[str] | None, StoredPlan | None]:
    """What a study records of itself for --resume: the overrides it started with and its pruning
    plan's inputs (None where not recorded). On a shared storage (`url`), a machine joining a study
    another one started also takes its search space from it (unless `fetch_space` is False)."""
    if not url and not sp.journal.exists():
        return None, None  # open_study says that there is no study to resume
    try:
        study = optuna.load_study(study_name=sp.name, storage=open_storage(sp, url))
    except KeyError:
        return None, None  # open_study says that the study does not exist
    if url and fetch_space:
        fetch_space_file(study, sp)
    stored = study.user_attrs.get(records.STUDY_OVERRIDES)
    return ([str(o) for o in stored] if isinstance(stored, list) else None,
            StoredPlan.from_attr(study.user_attrs.get(records.PLAN_INPUTS)))


def open_study(request: Request, plan: Plan, on_stale: Recovery | None = None) -> optuna.Study:
    """Create the study (refusing an existing one without --resume), or load it to resume.

    On a database storage the trials keep heartbeats; `on_stale` recovers those gone stale."""
    sp, resume, method = plan.study_paths, request.study.resume, request.search.method
    folder_had_study = sp.journal.exists() or sp.meta.exists()
    if resume and not folder_had_study and not plan.storage_url:
        raise _no_study_to_resume(sp)  # before open_storage creates the folder
    storage = open_storage(sp, plan.storage_url, heartbeat_s=request.resources.heartbeat_interval,
                           on_stale=on_stale)
    exists = folder_had_study or study_exists(storage, sp.name)
    if exists and not resume:
        raise ConfigError(file=str(sp.root), key="--study-name", value=sp.name,
                          rule="a study of this name exists already",
                          fix="add --resume to continue it, or choose another --study-name")
    if resume and not exists:
        raise _no_study_to_resume(sp)
    kind = "pbt" if method == "pbt" else "optuna"
    if exists:
        with contextlib.suppress(KeyError):  # a folder whose study is not stored: created below
            _check_same_method(optuna.load_study(study_name=sp.name, storage=storage), kind, method)
    study = optuna.create_study(
        study_name=sp.name, storage=storage, direction="maximize", load_if_exists=resume,
        sampler=make_sampler(method, plan.space, request.study.seed, plan.pruning.startup_trials),
        pruner=make_pruner(plan.pruning))
    if exists:  # joined from a folder of its own: the reports read the study's space here
        fetch_space_file(study, sp)
    else:
        study.set_user_attr(records.SEARCH_METHOD, kind)
        plan.space.dump(sp.search_space)
        study.set_user_attr(records.SEARCH_SPACE_TEXT, plan.space.text)
        study.set_user_attr(records.STUDY_OVERRIDES, list(plan.overrides))
        study.set_user_attr(records.STUDY_CONFIRM_SEEDS, request.search.seeds)
        study.set_user_attr(records.PLAN_INPUTS, plan_inputs(plan.pruning.trials, plan.grace_frames,
                                                             settled=False))
        # Grid search visits every combination anyway: an enqueued prior would repeat one; a
        # population starts from the priors by itself (automl.search.pbt).
        if plan.space.prior_params() and method not in ("grid", "pbt"):
            study.enqueue_trial(plan.space.prior_params(), user_attrs={"prior": True})
    study.set_user_attr(records.STUDY_HP_TRIALS, request.search.hp_trials)  # this session's, opened
    return study


def _check_same_method(study: optuna.Study, kind: str, method: str) -> None:
    """--resume keeps the study's kind of search: a population's segments are not search trials,
    and search trials are no population (exit 2 before anything is written)."""
    attrs = study.user_attrs
    stored = attrs.get(records.SEARCH_METHOD) or ("pbt" if records.PBT_PLAN in attrs else "optuna")
    if stored != kind:
        raise ConfigError(
            file="command line", key="--search-method", value=method,
            rule=f"study {study.study_name} is a "
                 + ("population-based training study" if stored == "pbt" else "study of the Optuna "
                    "search (bayesian, random, grid or cmaes)") + ", and --resume keeps its method",
            fix="resume it with --search-method pbt" if stored == "pbt" else
                "resume it with its own --search-method (bayesian, random, grid or cmaes)")


def _no_study_to_resume(sp: StudyPaths) -> ConfigError:
    return ConfigError(file=str(sp.root), key="--study-name", value=sp.name,
                       rule="--resume needs an existing study", fix="drop --resume")


def recover_trials(study: optuna.Study, recovery: Recovery) -> list[int]:
    """--resume: fail RUNNING trials of dead orchestrators and run every interrupted one again;
    returns the trials this process queued. Under the study's lock: machines that resume at the
    same moment would each see a trial not yet retried, and each queue it."""
    with recovery.locked(study):
        again = recovery.run(study)
        retried = {t.user_attrs.get(records.RETRY_OF) for t in study.get_trials(deepcopy=False)}
        for t in study.get_trials(deepcopy=False):
            attrs = t.user_attrs
            if not records.retried(t) or t.number in retried:
                continue
            params = queued_values(t)  # stopped before or between its suggests: its queued values
            if (attrs.get(records.INTERRUPTED) and t.state.is_finished() and params
                    and enqueue_retry(study, t, params)):
                again.append(t.number)
    return sorted(set(again))


@contextlib.contextmanager
def trial_forkserver(resources: Resources, *, isaaclab: bool = False) -> Iterator[ForkServer | None]:
    """A warm fork server for the real worker (None for a stand-in worker or --no-fork-server),
    shared by the search, validation and the final run, and closed when the block ends; with
    `isaaclab` it has imported Isaac Lab too."""
    if not resources.fork_server:
        yield None
        return
    from automl.search.trials.forkserver import ForkServer

    print("automl: starting the trial fork server (imports torch once for all trials)")
    with ForkServer(env=trial_env(Slot(index=0, threads=1)), isaaclab=isaaclab) as server:
        yield server


def worker_command(resources: Resources) -> list[str]:
    """The trial command: the stand-in worker's, or train_one.py's."""
    return shlex.split(resources.worker) if resources.worker else default_worker()


def slots_for(resources: Resources, device: str) -> list[Slot]:
    """The slots for trials of `env.device` (GPU shares when it is not cpu and a GPU is visible)."""
    gpus = visible_gpus()
    return plan_slots(workers=resources.workers, use_gpu=device != "cpu" and bool(gpus), gpus=gpus,
                      gpu_fraction=resources.gpu_fraction,
                      threads_per_trial=resources.threads_per_trial, cpus=os.cpu_count() or 1)


