"""After the search: validation (the top configurations and the starting configuration re-trained
on the same fresh seeds, no pruning) and the final run of the chosen configuration, each fitted to
what is left of the budget, and the StageLog that records what each stage did (including budgets
too small for it).

The starting configuration (the `baseline`) is the space's priors, with the composed defaults where a
parameter has no prior: what the user would have trained without a search. Its values and overrides
are written to configs/baseline.json, next to the search trials' configs.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import yaml

from automl import reasons
from automl.config import load_run_config
from automl.errors import ConfigError, Interrupted
from automl.paths import RunPaths, StudyPaths, atomic_write_text, trial_name
from automl.requests import Request, Resources, SearchOptions
from automl.search.plan import slots_for, worker_command
from automl.search.space import thaw
from automl.search.study import records, reports
from automl.search.study.budget import fit_validation, seconds_for
from automl.search.study.confirm import Configuration, ranked, study_seeds
from automl.search.trials.forkserver import ForkServer
from automl.search.trials.launcher import Slot
from automl.search.trials.runner import INTERRUPTED, Job, JobResult, run_jobs
from automl.summary import load_summary

VALIDATION_SEED_BASE = 1000
"""Validation seeds start here, skipping any seed a search trial used."""


@dataclass
class StageLog:
    """What each stage did, including budgets too small for it: shown in the summary and the state."""

    notes: list[str] = field(default_factory=list)
    phase: str = ""

    def note(self, paths: StudyPaths, text: str) -> None:
        """Print a stage note, keep it for the summary and write it to the state file."""
        print(f"automl: {text}")
        self.notes.append(text)
        self.write(paths)

    def write(self, paths: StudyPaths, **extra: Any) -> None:
        """Write the phase, the notes and `extra` into automl_state.yaml (other keys kept)."""
        state: dict[str, Any] = {}
        if paths.state.exists():
            state = yaml.safe_load(paths.state.read_text()) or {}
        state.update({"phase": self.phase, "stage_notes": self.notes, **extra,
                      "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        reports.write_state(paths, state)


# -------------------------------------------------------------------------------------- validation
def trial_file(study_paths: StudyPaths, number: int) -> dict[str, Any]:
    """The config file a search trial was launched with (its overrides, user overrides, values)."""
    return config_record(study_paths, trial_name(number))


def config_record(study_paths: StudyPaths, config_id: str) -> dict[str, Any]:
    """configs/<config_id>.json: a search trial's config file, or the baseline's."""
    return json.loads(study_paths.config_file(config_id).read_text())


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


def starting_configuration(study_paths: StudyPaths, study: optuna.Study) -> dict[str, Any]:
    """The baseline's record (configs/baseline.json): the space's fixed values and priors, the
    composed default of every parameter without a prior, the study's command-line overrides, and
    the first search trial that ran exactly this (the all-priors trial 0, when every parameter has a
    prior, or any trial that sampled exactly these values). Raises ConfigError when the study's
    space cannot be read."""
    from omegaconf import OmegaConf

    from automl.analysis.folder import load_study_space
    from automl.analysis.validation import NO_TRIAL
    from automl.config import compose

    trials = [t for t in study.get_trials(deepcopy=False) if records.in_search(t)]
    space = load_study_space(study_paths, trials)
    if space is None:
        raise ConfigError(file=str(study_paths.search_space), key="search_space.yaml", value=None,
                          rule="the study's search space cannot be read, so its starting "
                          "configuration cannot be rebuilt", fix="restore search_space.yaml")
    user: list[str] = next((trial_file(study_paths, t.number).get("user_overrides", []) for t in trials
                 if study_paths.trial_config(t.number).exists()), [])
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
    overrides = [*space.fixed_overrides(), *searched, *user]
    ran = [t for t in trials if records.CONFIRMS not in t.user_attrs
           and _plain(t.user_attrs.get(records.CONFIG_VALUES)) == _plain(values)]
    ran.sort(key=lambda t: (t.state != optuna.trial.TrialState.COMPLETE, t.number))
    source = ran[0].number if ran else NO_TRIAL
    return {"config_id": "baseline", "source_trial": source, "params": priors,
            "config_values": values, "base_overrides": overrides, "user_overrides": user}


def _plain(values: Any) -> Any:
    """Values as JSON gives them back (tuples as lists), to compare a record with a trial's."""
    return json.loads(json.dumps(values))


def with_baseline(study_paths: StudyPaths, study: optuna.Study, top: list[Candidate],
                  log: StageLog) -> list[Candidate]:
    """The top configurations with the starting configuration among them, second (a budget cut
    keeps the best and the baseline longest; first where the best is the start itself); a top
    configuration with the start's very values is the baseline, not run again. Writes
    configs/baseline.json, or keeps the one an earlier session wrote (its runs are kept too)."""
    from automl.analysis.validation import BASELINE

    try:  # an earlier session's record stands: its runs are kept, and must be of the same start
        start = config_record(study_paths, BASELINE)
    except (OSError, ValueError):
        try:
            start = starting_configuration(study_paths, study)
        except ConfigError as err:
            log.note(study_paths, f"no baseline in validation: {err.message}")
            return top
        atomic_write_text(study_paths.config_file(BASELINE), json.dumps(start, indent=2) + "\n")
    values = _plain(start["config_values"])
    same = [c for c in top if _plain(c.rate.user_attrs.get(records.CONFIG_VALUES)) == values]
    rest = [c for c in top if c not in same]
    source = int(start["source_trial"])
    ran = next((t for t in study.get_trials(deepcopy=False) if t.number == source), None)
    rate = ran if ran is not None and _has_rate(ran) else top[0].rate
    baseline = Candidate(BASELINE, source, start["base_overrides"], rate)
    at = 0 if same and same[0] is top[0] else 1
    return [*rest[:at], baseline, *rest[at:]]


def _has_rate(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial recorded the frames and seconds it trained (its rate estimates a rerun)."""
    frames, wall = trial.user_attrs.get(records.FRAMES), trial.user_attrs.get(records.WALL_S)
    return isinstance(frames, int) and frames > 0 and isinstance(wall, (int, float)) and wall > 0


def completed(study: optuna.Study, search: SearchOptions) -> list[Configuration]:
    """The study's configurations whose first trial completed, best first: confirmed on the
    study's --confirm-seeds by their mean, then the others (automl.search.study.confirm)."""
    return ranked(study, study_seeds(study, search, source=f"study {study.study_name}"))


def _run_seconds(study_paths: StudyPaths, trial: optuna.trial.FrozenTrial, *,
                 multiplier: float = 1.0) -> float | None:
    """Expected time of one more run of this trial's configuration (train.frames x `multiplier`),
    at the rate its own search run trained."""
    try:
        frames = load_run_config(trial_file(study_paths, trial.number)["base_overrides"]).train.frames
    except (OSError, ValueError):  # its config file is on another machine of a shared study
        return None
    trained, wall = trial.user_attrs.get(records.FRAMES), trial.user_attrs.get(records.WALL_S)
    if not isinstance(trained, int) or not isinstance(wall, (int, float)):
        return None
    return seconds_for(int(frames * multiplier), trained_frames=trained, wall_s=float(wall))


def fresh_seeds(study_paths: StudyPaths, study: optuna.Study, count: int) -> list[int]:
    """`count` seeds from VALIDATION_SEED_BASE on that no trial of the study trained with."""
    used = set()
    for t in study.get_trials(deepcopy=False):
        try:
            base = trial_file(study_paths, t.number).get("base_overrides", [])
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


def trial_slots(resources: Resources, study_paths: StudyPaths, trial: int) -> list[Slot]:
    """Slots for re-running a trial's configuration (its own env.device)."""
    base = load_run_config(trial_file(study_paths, trial)["base_overrides"])
    return slots_for(resources, base.env.device)


def earlier_result(job: Job) -> JobResult | None:
    """A validation run that completed in an earlier, interrupted session: kept, not run again."""
    summary = load_summary(RunPaths(job.run_dir).summary)
    if summary is None or not summary.completed or summary.score is None:
        return None
    return JobResult(job=job, reason=reasons.COMPLETED, score=summary.score, frames=summary.frames,
                     wall_s=summary.wall_s)


def _validate_command(request: Request, study_paths: StudyPaths) -> str:
    """The command that continues an interrupted validation (runs that completed are kept)."""
    options = request.validation
    words = ["uv", "run", "automl.py", "--mode", "validate", "--study-name", study_paths.name,
             "--validate-top", str(options.top), "--validate-seeds", str(options.seeds)]
    if request.study.storage:
        words += ["--storage", request.study.storage]
    return shlex.join(words)


def _fit_validation(seed_count: int, study_paths: StudyPaths, top: list[Candidate], slots: int,
                    deadline: float, log: StageLog) -> tuple[list[Candidate], int] | None:
    """The configurations and seed count that fit before the deadline, each run expected to take
    what its search trial took (the notes say what was cut); None when nothing fits."""
    estimates = [_run_seconds(study_paths, c.rate) for c in top]
    if any(e is None for e in estimates):  # a trial without a recorded rate: validate it all
        return top, seed_count
    left = deadline - time.monotonic()
    fit = fit_validation([float(e) for e in estimates if e is not None],
                         seeds=seed_count, slots=slots, time_left=left)
    if fit is None:
        log.note(study_paths, f"validation skipped: budget too small (the top configuration "
                 f"trains in ~{estimates[0]:.0f} s, {max(left, 0):.0f} s left for validation); "
                 "raise --budget-hours or the validate share")
        return None
    if fit.note:
        log.note(study_paths, fit.note)
    return top[:fit.configs], fit.seeds


def run_validation(request: Request, study_paths: StudyPaths, study: optuna.Study,
                   deadline: float, log: StageLog, forkserver: ForkServer | None) -> list[Any]:
    """Top K configurations and the starting configuration x M fresh seeds (the same seeds for
    all), full frames, no pruning; writes validation.csv.

    Ctrl-C / SIGTERM: the runs that completed are written, then Interrupted is raised."""
    from automl.analysis.validation import config_id_for

    log.phase = "validation"
    ranked_configs = completed(study, request.search)
    means = {c.number: c.mean for c in ranked_configs}
    configs = ranked_configs[: request.validation.top]
    if not configs:
        log.note(study_paths, "validation skipped: the search completed no trial")
        return []
    top = with_baseline(study_paths, study, [
        Candidate(config_id_for(c.number), c.number, trial_file(study_paths, c.number)["base_overrides"],
                  c.trial) for c in configs], log)
    slots = trial_slots(request.resources, study_paths, configs[0].number)
    fitted = _fit_validation(request.validation.seeds, study_paths, top, len(slots), deadline, log)
    if fitted is None:  # an earlier session's validation, if any, still stands
        from automl.analysis.validation import read_validation_csv

        return read_validation_csv(study_paths)
    top, seed_count = fitted
    return validate_candidates(request, study_paths, study, top, seed_count=seed_count, slots=slots,
                               deadline=deadline, log=log, forkserver=forkserver, means=means)


def validate_candidates(request: Request, study_paths: StudyPaths, study: optuna.Study,
                        top: list[Candidate], *, seed_count: int, slots: list[Slot], deadline: float,
                        log: StageLog, forkserver: ForkServer | None,
                        means: dict[int, float]) -> list[Any]:
    """Every candidate x the same `seed_count` fresh seeds (runs completed in an earlier session
    kept), then validation.csv; `means`: the search scores by source trial.

    Ctrl-C / SIGTERM: the runs that completed are written, then Interrupted is raised."""
    seeds = fresh_seeds(study_paths, study, seed_count)
    jobs = [Job(name=f"{c.config_id}_seed{seed}", overrides=[*c.overrides, f"train.seed={seed}"],
                run_dir=study_paths.validation_dir / f"{c.config_id}_seed{seed}")
            for seed in seeds for c in top]  # seed-major: a cut leaves every config some seeds
    earlier = [r for r in map(earlier_result, jobs) if r is not None]
    if earlier:
        log.note(study_paths, f"validation: {len(earlier)} run(s) completed in an earlier session "
                 "are kept")
    pending = [j for j in jobs if j.name not in {r.job.name for r in earlier}]
    log.write(study_paths, validation={"configs": [c.config_id for c in top],
                                       "seeds": seeds, "runs": len(jobs)})
    print(f"automl: validating {len(top)} configuration(s) x {len(seeds)} fresh seed(s) "
          f"in {len(slots)} slot(s)")
    results, cut = run_jobs(pending, worker=worker_command(request.resources), slots=slots,
                            deadline=deadline, forkserver=forkserver,
                            on_done=lambda r: print(f"automl: validation {r.job.name}: {r.reason}, "
                                                    f"score {r.score:.4g}"))
    results = earlier + results
    done = [r for r in results if r.reason != reasons.BUDGET]
    if cut == INTERRUPTED:
        log.note(study_paths, f"validation interrupted after {len(done)} of {len(jobs)} runs")
    elif cut:
        log.note(study_paths, f"validation cut by the budget after {len(results)} of {len(jobs)} runs")
    summary = summarize_runs(study_paths, top, seeds, done, log, means)
    if cut == INTERRUPTED:
        log.phase = "interrupted"
        log.write(study_paths)
        raise Interrupted("validation", _validate_command(request, study_paths))
    return summary


def summarize_runs(study_paths: StudyPaths, top: list[Candidate], seeds: list[int],
                   done: list[JobResult], log: StageLog, search_means: dict[int, float]) -> list[Any]:
    """validation.csv from the runs that finished, every configuration over an equal number of
    seeds; runs cut by the deadline (or the interrupt) say nothing of their configuration."""
    from automl.analysis.validation import equal_seeds, summarize_validation, write_validation_csv

    by_name = {r.job.name: r for r in done}
    names = [(c.config_id, c.source_trial, seed) for seed in seeds for c in top]
    rows = [(c, n, seed, by_name[f"{c}_seed{seed}"].score) for c, n, seed in names
            if f"{c}_seed{seed}" in by_name]
    rows, dropped = equal_seeds(rows)
    if dropped:
        log.note(study_paths, f"validation compares every configuration over the {dropped} "
                 "seed(s) each of them ran: the others did not finish")
    summary = summarize_validation(rows, search_scores=search_means)
    write_validation_csv(study_paths, rows, summary)
    return summary


# ------------------------------------------------------------------------------------------- final
def _validated_seconds(study_paths: StudyPaths, config_id: str, frames: int) -> float | None:
    """Expected time of `frames` at the rate the configuration's own validation runs trained."""
    estimates = []
    for run_dir in sorted(study_paths.validation_dir.glob(f"{config_id}_seed*")):
        summary = load_summary(RunPaths(run_dir).summary)
        if summary is not None and summary.frames > 0:
            estimates.append(seconds_for(frames, trained_frames=summary.frames, wall_s=summary.wall_s))
    known = [e for e in estimates if e is not None]
    return max(known) if known else None


def run_final(request: Request, study_paths: StudyPaths, study: optuna.Study, config_id: str,
              deadline: float, log: StageLog, forkserver: ForkServer | None) -> JobResult | None:
    """Train the chosen configuration (`trial_NNNN` or `baseline`) once more, frames x
    --final-frames-multiplier."""
    log.phase = "final"
    multiplier = request.final_frames_multiplier
    config = config_record(study_paths, config_id)
    frames = load_run_config(config["base_overrides"]).train.frames
    final_frames = int(frames * multiplier)
    duration = _validated_seconds(study_paths, config_id, final_frames)
    trial = config.get("trial", config.get("source_trial"))
    if duration is None and isinstance(trial, int):
        chosen = next((t for t in study.get_trials(deepcopy=False) if t.number == trial), None)
        duration = None if chosen is None else _run_seconds(study_paths, chosen, multiplier=multiplier)
    left = deadline - time.monotonic()
    if duration is not None and duration > left:
        log.note(study_paths, f"final run skipped: budget too small (needs ~{duration:.0f} s at the "
                 f"rate {config_id} trained, {max(left, 0):.0f} s left)")
        return None
    run_dir = study_paths.root / "final"
    job = Job(name="final", overrides=[*config["base_overrides"], f"train.frames={final_frames}"],
              run_dir=run_dir)
    print(f"automl: final run of {config_id}'s configuration, {final_frames:,} frames")
    slots = slots_for(request.resources, load_run_config(config["base_overrides"]).env.device)
    results, cut = run_jobs([job], worker=worker_command(request.resources), slots=slots[:1],
                            deadline=deadline, forkserver=forkserver)
    result = results[0]
    if cut == INTERRUPTED:
        log.note(study_paths, f"final run interrupted at {result.frames:,} of {final_frames:,} frames")
        log.phase = "interrupted"
        log.write(study_paths)
        again = shlex.join(["uv", "run", "train_one.py", *job.overrides, f"run_dir={run_dir}"])
        raise Interrupted("final run", again)
    log.note(study_paths, f"final run: {result.reason}, score {result.score:.4g}, "
             f"checkpoint {run_dir / 'model.pt'}")
    return result
