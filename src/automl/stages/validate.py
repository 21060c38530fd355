"""Validation: the top configurations and the starting configuration re-trained on the same fresh
seeds (no pruning), as a race that adds paired seeds where they decide, and the decision of whether
anything beats the start (automl.stages.selection's rule). Writes validation.csv and
validation_race.json.

The candidates and the starting configuration (the `baseline`): automl.stages.candidates.

The race: every configuration runs the first `--screen-seeds` seeds; then the configurations still
in the race (not clearly worse than the start, none failed) and the start run `step` more paired
seeds per look, up to `--validate-seeds` (fitted to the budget), until one beats the start, every
one is out, or the seeds or the budget end. A run already made for the same job (same overrides)
in an earlier session is kept, so an interrupted race resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from typing import Any

from automl import reasons
from automl.analysis.validation import (
    BASELINE,
    ValidationResult,
    config_id_for,
    read_validation_csv,
    write_validation_csv,
)
from automl.analysis.verdict import read_race
from automl.errors import Interrupted
from automl.paths import RunPaths, atomic_write_text
from automl.requests import SearchOptions, ValidationOptions
from automl.search.study.budget import fit_validation, makespan
from automl.search.study.confirm import Configuration
from automl.search.trials.launcher import Slot
from automl.search.trials.runner import INTERRUPTED, Job, JobResult, run_jobs
from automl.stages import selection
from automl.stages.candidates import Candidate, completed, fresh_seeds, with_baseline
from automl.stages.commands import continue_validation
from automl.stages.context import Stages
from automl.stages.decision import decided, power_statement, race_outcome, rule_text
from automl.summary import load_summary

JOB_FILE = "job.json"
"""A validation run's own record of the overrides it was launched with (in its run folder)."""


# ------------------------------------------------------------------------------- the runs
def earlier_result(job: Job) -> JobResult | None:
    """A run of this very job (same overrides) that completed in an earlier, interrupted session:
    kept, not run again. A folder holding another job's run (other overrides: the study's start
    or a configuration changed) is moved aside, never overwritten."""
    run = RunPaths(job.run_dir)
    if not job.run_dir.exists():
        return None
    try:
        recorded = json.loads((job.run_dir / JOB_FILE).read_text()).get("overrides")
    except FileNotFoundError:  # a run of a version that did not record its job: taken as this one
        recorded = list(job.overrides)
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != list(job.overrides):
        aside = job.run_dir.with_name(f"{job.run_dir.name}.superseded-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(job.run_dir), str(aside))
        return None
    summary = load_summary(run.summary)
    if summary is None or not summary.completed or summary.score is None:
        return None
    return JobResult(job=job, reason=reasons.COMPLETED, score=summary.score, frames=summary.frames,
                     wall_s=summary.wall_s)


def _record_jobs(jobs: list[Job]) -> None:
    """Each run folder says which job it holds (earlier_result keeps only the same job's run)."""
    for job in jobs:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job.run_dir / JOB_FILE, json.dumps({"overrides": job.overrides}) + "\n")


def _job(st: Stages, candidate: Candidate, seed: int) -> Job:
    name = f"{candidate.config_id}_seed{seed}"
    return Job(name=name, overrides=[*candidate.overrides, f"train.seed={seed}"],
               run_dir=st.paths.validation_dir / name)


def validate_command(st: Stages, options: ValidationOptions, storage: str | None, *,
                     deadline: float) -> str:
    """The command that continues an interrupted validation, with the time this one had."""
    return continue_validation(st.paths.name, options, storage,
                               seconds=deadline - time.monotonic())


# ------------------------------------------------------------------------------- the stage
def run_validation(st: Stages, search: SearchOptions, options: ValidationOptions, *,
                   deadline: float, storage: str | None) -> list[ValidationResult]:
    """The top configurations and the start raced on fresh seeds, fitted to the time left;
    validation.csv. Ctrl-C / SIGTERM: the runs that completed are written, then Interrupted."""
    st.log.phase = "validation"
    ranked_configs = completed(st.study, search)
    means = {c.number: c.mean for c in ranked_configs}
    configs = ranked_configs[: options.top]
    if not configs:
        st.note("validation skipped: the search completed no trial")
        return []
    earlier = _earlier_candidates(st, ranked_configs, configs)
    if earlier:
        st.note(f"validation keeps the configurations an earlier validation raced ("
                f"{', '.join(config_id_for(c.number) for c in earlier)}): a re-validation adds "
                "rows, it never drops one")
    configs = [*configs, *earlier]
    top = with_baseline(st, [
        Candidate(config_id_for(c.number), c.number, st.trial_file(c.number)["base_overrides"],
                  c.trial) for c in configs])
    slots = st.trial_slots(configs[0].number)
    fitted = _fit(st, top, options, len(slots), deadline)
    if fitted is None:  # an earlier session's validation, if any, still stands
        return recorded_validation(st)
    top, most = fitted
    return race(st, top, options=options, most=most, slots=slots, deadline=deadline,
                means=means, resume=validate_command(st, options, storage, deadline=deadline))


def _earlier_candidates(st: Stages, ranked_configs: list[Configuration],
                        chosen: list[Configuration]) -> list[Configuration]:
    """The search configurations an earlier validation of the study raced (validation_race.json)
    that are not among `chosen`: raced again (their runs kept), so that no row is dropped."""
    race_record = read_race(st.paths)
    ids = [c for c in race_record.get("candidates", []) if isinstance(c, str)]
    taken = {config_id_for(c.number) for c in chosen}
    by_id = {config_id_for(c.number): c for c in ranked_configs}
    return [by_id[c] for c in ids if c in by_id and c not in taken]


def _fit(st: Stages, top: list[Candidate], options: ValidationOptions, slots: int,
         deadline: float) -> tuple[list[Candidate], int] | None:
    """The configurations, and the most seeds each may get, that fit before the deadline if every
    one stayed in the race (the notes say what was cut); None when nothing fits."""
    estimates = [st.rerun_seconds(c.rate) for c in top]
    if any(e is None for e in estimates):  # a trial without a recorded rate: validate it all
        return top, options.seeds
    # A tenth kept in hand: the estimates are rates the search measured (under its own load), and a
    # plan that fills the time left to the second is refused by its first round a moment later.
    left = (deadline - time.monotonic()) * FIT_SHARE
    fit = fit_validation([float(e) for e in estimates if e is not None],
                         seeds=options.seeds, slots=slots, time_left=left)
    if fit is None:
        st.note(f"validation skipped: budget too small (the top configuration trains in "
                f"~{estimates[0]:.0f} s, {max(left, 0):.0f} s left for validation); raise "
                "--budget-hours or the validate share")
        return None
    if fit.note:
        st.note(fit.note)
    return top[:fit.configs], fit.seeds


FIT_SHARE = 0.9
"""The share of the time left that validation is fitted to."""


@dataclass
class _Runs:
    """The race's runs so far, by (config_id, seed), and what each job it made runs."""

    scores: dict[tuple[str, int], float] = dataclasses.field(default_factory=dict)
    keys: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    """Job name -> (config_id, seed)."""

    def job(self, st: Stages, candidate: Candidate, seed: int) -> Job:
        made = _job(st, candidate, seed)
        self.keys[made.name] = (candidate.config_id, seed)
        return made

    def add(self, results: list[JobResult]) -> None:
        for r in results:
            if r.reason == reasons.BUDGET:
                continue  # cut by the deadline: says nothing of its configuration
            self.scores[self.keys[r.job.name]] = r.score if r.reason == reasons.COMPLETED else math.nan

    def rows(self, top: list[Candidate], seeds: list[int]) -> list[tuple[str, int, int, float]]:
        return [(c.config_id, c.source_trial, seed, self.scores[(c.config_id, seed)])
                for seed in seeds for c in top if (c.config_id, seed) in self.scores]


def race_plan(st: Stages, top: list[Candidate], options: ValidationOptions,
              most: int) -> selection.RacePlan | None:
    """The race's plan: validation_race.json's where an earlier session raced the same
    configurations (so the looks and their levels are the ones fixed before any score was seen),
    else a new one; None where there is no baseline or fewer than 2 seeds fit."""
    candidates = [c.config_id for c in top if c.config_id != BASELINE]
    if len(candidates) == len(top) or not candidates or most < 2:
        return None
    try:
        stored = json.loads(st.paths.validation_race.read_text())
        if stored.get("candidates") == candidates and not stored.get("finished", True):
            return selection.RacePlan(**stored["plan"])  # an interrupted race goes on
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return selection.RacePlan(candidates=len(candidates), first=min(options.first, most), most=most)


def race(st: Stages, top: list[Candidate], *, options: ValidationOptions, most: int,
         slots: list[Slot], deadline: float, means: dict[int, float],
         resume: str) -> list[ValidationResult]:
    """Race `top` (the start among them) on fresh seeds, look by look; validation.csv and
    validation_race.json. Without a baseline (or a race), every configuration runs `most` seeds and
    the highest validated mean is chosen."""
    plan = race_plan(st, top, options, most)
    looks = plan.looks() if plan is not None else [most]
    seeds = fresh_seeds(st, looks[-1])
    runs, done, cut = _Runs(), 0, None
    active = list(top)
    print(f"automl: validating {len(top)} configuration(s) on up to {looks[-1]} fresh seed(s) "
          f"in {len(slots)} slot(s)" + (f", looks at {', '.join(map(str, looks))} seeds" if plan else ""))
    st.log.write(st.paths, validation={"configs": [c.config_id for c in top], "seeds": seeds,
                                       "looks": looks})
    for n in looks:
        jobs = [runs.job(st, c, seed) for seed in seeds[done:n] for c in active]  # seed-major
        cut = _run_round(st, jobs, runs, slots=slots, deadline=deadline, active=active)
        if cut == INTERRUPTED:
            _write(st, top, seeds, runs, plan, done, means, finished=False)
            st.log.phase = "interrupted"
            st.log.write(st.paths)
            raise Interrupted("validation", resume)
        if cut:
            break
        done = n
        if plan is None:
            continue
        outcome = race_outcome(_candidates(top), seeds, runs.scores, plan, done)
        if selection.race_finished(outcome, plan).all():
            break
        out = {c for c, gone in zip(_candidates(top), outcome.dropped, strict=True) if gone}
        active = [c for c in active if c.config_id not in out]
        st.note(f"validation look at {n} seeds: " + _look_text(top, outcome, plan))
    return _write(st, top, seeds, runs, plan, done, means)


def _run_round(st: Stages, jobs: list[Job], runs: _Runs, *, slots: list[Slot], deadline: float,
               active: list[Candidate]) -> str | None:
    """One look's runs (those an earlier session made kept); why it was cut, if it was."""
    earlier = [r for r in map(earlier_result, jobs) if r is not None]
    runs.add(earlier)
    if earlier:
        st.note(f"validation: {len(earlier)} run(s) completed in an earlier session are kept")
    pending = [j for j in jobs if j.name not in {r.job.name for r in earlier}]
    if not pending:
        return None
    estimates = [st.rerun_seconds(c.rate) for c in active]
    if all(e is not None for e in estimates):
        per = {c.config_id: float(e) for c, e in zip(active, estimates, strict=True) if e is not None}
        need = makespan([per[runs.keys[j.name][0]] for j in pending], len(slots))
        left = deadline - time.monotonic()
        if need > left:
            st.note(f"validation stopped before {len(pending)} more run(s): they need ~{need:.0f} s, "
                    f"{max(left, 0):.0f} s left")
            return "budget"
    _record_jobs(pending)
    results, cut = run_jobs(pending, worker=st.worker(), slots=slots, deadline=deadline,
                            forkserver=st.forkserver,
                            on_done=lambda r: print(f"automl: validation {r.job.name}: {r.reason}, "
                                                    f"score {r.score:.4g}"))
    runs.add(results)
    if cut:
        done = len(earlier) + sum(r.reason == reasons.COMPLETED for r in results)
        failed = sum(r.reason not in (reasons.COMPLETED, reasons.BUDGET) for r in results)
        stopped = sum(r.reason == reasons.BUDGET for r in results)
        how = "interrupted" if cut == INTERRUPTED else "cut by the budget"
        st.note(f"validation {how}: of this look's {len(jobs)} runs {done} completed, {failed} "
                f"failed, {stopped} stopped unfinished, {len(pending) - len(results)} not started")
    return cut


def _candidates(top: list[Candidate]) -> list[str]:
    return [c.config_id for c in top if c.config_id != BASELINE]


def _look_text(top: list[Candidate], outcome: selection.RaceOutcome, plan: selection.RacePlan) -> str:
    parts = []
    for k, config_id in enumerate(_candidates(top)):
        state = "beats the start" if outcome.beats[k] else ("out" if outcome.dropped[k] else "racing")
        parts.append(f"{config_id} p={outcome.p[k]:.3g} (level {outcome.levels[k]:.3g}) {state}")
    return "; ".join(parts)


def _write(st: Stages, top: list[Candidate], seeds: list[int], runs: _Runs,
           plan: selection.RacePlan | None, done: int, means: dict[int, float], *,
           finished: bool = True) -> list[ValidationResult]:
    """validation.csv and validation_race.json from the runs made, with the decision; `finished`:
    False for a race an interrupt cut short (a later session goes on with its plan)."""
    rows = runs.rows(top, seeds)
    results = decided(rows, plan, looked_at=done, search_scores=means)
    write_validation_csv(st.paths, rows, results)
    record: dict[str, Any] = {"candidates": _candidates(top), "seeds": seeds, "looked_at": done,
                              "runs": len(rows), "finished": finished}
    if plan is not None:
        record.update({"plan": plan.as_dict(), "rule": rule_text(plan),
                       "power": power_statement(results, plan)})
    atomic_write_text(st.paths.validation_race, json.dumps(record, indent=2) + "\n")
    return results


def recorded_validation(st: Stages) -> list[ValidationResult]:
    """validation.csv's results, each with the rule's decision (a file written before decisions
    were recorded is decided now and written back: `redecide`)."""
    results = read_validation_csv(st.paths)
    if any(r.n for r in results) and not any(r.decision for r in results):
        return redecide(st, results)
    return results


def redecide(st: Stages, results: list[ValidationResult]) -> list[ValidationResult]:
    """A validation.csv written before decisions were recorded, decided now by the rule (one look
    at the seeds every configuration ran) and written back with its decision; no row is dropped."""
    rows = [(r.config_id, r.source_trial, seed, score) for r in results
            for seed, score in zip(r.seeds, r.scores, strict=True)]
    candidates = [r for r in results if not r.is_baseline]
    seeds = min((len(r.seeds) for r in results), default=0)
    plan = (selection.RacePlan(candidates=len(candidates), first=seeds, most=seeds)
            if candidates and seeds >= 2 and len(candidates) < len(results) else None)
    out = decided(rows, plan, looked_at=seeds,
                  search_scores={r.source_trial: r.search_score for r in results})
    write_validation_csv(st.paths, rows, out)
    st.note(f"validation.csv predates recorded decisions: decided now by the rule over its {seeds} "
            "seed(s)")
    return out
