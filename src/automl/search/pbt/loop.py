"""The population-based training loop: segments queued in the study, run in the slots, recorded like
any trial; as each segment ends its member's next one is decided (decide.py) and queued.

Every segment is an Optuna trial: queued with its values and its member, generation, parent and
frames (`study.enqueue_trial`), taken by whichever orchestrator has a free slot (`study.ask` pops
the queue atomically on every storage), trained by train_one from its parent's state.pt
(`train.resume_from`, warm fork server), recorded by the same TrialRecorder as the Optuna search's
trials (trial_final.csv, heartbeat, stop reasons). A member's next segment is queued once, under
the study's lock, by the first orchestrator that sees its segment end (under a barrier plan: its
whole generation). A dead orchestrator's segments are failed and queued again
(study/recovery.py), as an interrupted one is on --resume.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from automl import reasons
from automl.errors import ConfigError
from automl.paths import RunPaths, StudyPaths, atomic_write_text
from automl.schema import RunConfig
from automl.search.pbt.checkpoints import CheckpointMissing, Checkpoints
from automl.search.pbt.decide import first_generation, next_segment, starting_values
from automl.search.pbt.plan import PbtPlan, update_frames
from automl.search.pbt.population import NO_PARENT, Population, Segment, SegmentSpec
from automl.search.pbt.reporting import segment_line, state_payload
from automl.search.space import Feasibility, SearchSpace, override_key
from automl.search.study import records, reports
from automl.search.study.recovery import Recovery, enqueue_retry, queued_values
from automl.search.study.shared import Outcome, SharedStudy, guarded
from automl.search.study.storage import LockTimeout
from automl.search.study.trial_record import Tally, TrialRecorder
from automl.search.trials.forkserver import ForkServer
from automl.search.trials.gpus import visible_gpus
from automl.search.trials.launcher import Slot, launch, pause, run_overrides
from automl.search.trials.stoppers import StopperSet
from automl.search.trials.tb_reader import EventTail
from automl.search.trials.watch import Running, WatchRules, ending, settle, watch
from automl.summary import load_summary

POLL_S = 0.1
STATE_EVERY_S = 5.0
LOOK_EVERY_S = 1.0
"""Seconds between two reads of the study while no segment of this process ended (free slots wait
for a generation to complete, or for another orchestrator's queue)."""
SEGMENT_KEYS = ("train.frames", "train.seed", "train.save_state", "train.resume_from")
"""Run settings each segment gets from the loop (the command line's and the space's are replaced)."""


@dataclass
class PbtSettings:
    """What the loop is given, decided before the first segment starts."""

    plan: PbtPlan
    space: SearchSpace
    worker: list[str]
    user_overrides: list[str]
    base: RunConfig
    budget_s: float
    slots: list[Slot]
    trial_timeout: float
    forkserver: ForkServer | None = None
    recovery: Recovery | None = None
    checkpoints: Checkpoints | None = None
    """The study's artifact store (None: parents' states from this machine's folder alone)."""


class PbtLoop:
    """Runs the population's segments in the slots until every member trained its frames, the
    deadline, Ctrl-C, or a population none of whose members can go on."""

    def __init__(self, study: optuna.Study, study_paths: StudyPaths, settings: PbtSettings,
                 console: Any) -> None:
        self.study, self.paths, self.s, self.console = study, study_paths, settings, console
        self.start = time.monotonic()
        self.deadline = self.start + settings.budget_s
        self.running: dict[int, Running] = {}
        self.free: list[Slot] = list(settings.slots)
        self.tally = Tally()
        self.recorder = TrialRecorder(study, study_paths, settings.space, console, self.tally,
                                      ranks=False)
        heartbeat = self.recorder.heartbeat
        self.shared = SharedStudy(study, settings.recovery, mine=self.recorder.asked,
                                  every_s=heartbeat.interval_s if heartbeat is not None else None)
        self.rules = WatchRules(eval_frequency=settings.base.train.eval_frequency,
                                trial_timeout=settings.trial_timeout)
        self.feasibility = Feasibility.compose(settings.space, settings.user_overrides)
        self.interrupted = False
        self.next_state = 0.0
        self.population: Population | None = None
        self.waiting: set[tuple[int, int]] = set()
        """(member, generation) decided to wait at the last look: it failed and no member has a
        score to copy (decided again once a segment more has a result: `seen`)."""
        self.seen = -1
        self.announced = -1
        """The last complete generation the console was told of."""

    # -------------------------------------------------------------------------------- main loop
    def run(self) -> Outcome:
        """Train the population until it is done or stopped."""
        stopped_by, message = guarded(self._loop, on_signal=self._on_signal, abort=self._abort,
                                      close=self.recorder.close)
        self.write_state("search finished")
        return Outcome(finished=dict(self.tally.finished), stopped_by=stopped_by, message=message)

    def _loop(self) -> tuple[str, str]:
        refresh, next_look = True, 0.0
        while True:
            ended = self._poll_all()
            now = time.monotonic()
            if self.interrupted or now >= self.deadline:
                self._stop_all(reasons.BUDGET)
                return ("interrupted" if self.interrupted else "budget"), ""
            if self.shared.recover(now):
                refresh = True
            if now >= self.next_state:
                self.write_state("search")
                self.next_state = now + STATE_EVERY_S
            if ended or refresh or (self.free and now >= next_look):
                refresh, next_look = False, now + LOOK_EVERY_S
                stop = self._step()
                if stop is not None:
                    return stop
            pause(POLL_S, self.s.forkserver)

    def _step(self) -> tuple[str, str] | None:
        """Queue what is due, fill the free slots; why the loop ends (None: it goes on)."""
        self._advance()
        self._fill_slots()
        if self.running:
            return None
        population = self._read()
        if population.finished():
            return "population", ""
        if not population.running_or_queued() and set(population.due()) <= self.waiting:
            stuck = ", ".join(str(m) for m, _ in sorted(self.waiting))
            return "failures", ("no segment of the population is queued or running and none can "
                                + (f"start: member(s) {stuck} failed and no member has a score to "
                                   "copy" if stuck else "start") + "; see trial_final.csv")
        return None

    def _read(self) -> Population:
        self.population = Population.of(self.study, self.s.plan, self.s.space)
        return self.population

    # --------------------------------------------------------------------------- generations
    def _advance(self) -> None:
        """Queue what the population needs (if anything), under the study's lock, so that another
        orchestrator that queued it first is seen here and nothing is queued twice: the interrupted
        segments again (their orchestrator stopped or died), and each member's next segment that
        is due (decide.py)."""
        population = self._read()
        due = set(population.due())
        if population.with_result() == self.seen:
            due -= self.waiting
        if not due and not population.orphans():  # the common case: no lock
            return
        lock = self.s.recovery.locked(self.study) if self.s.recovery else contextlib.nullcontext()
        try:
            self._advance_locked(lock)
        except LockTimeout as err:  # another orchestrator holds the study's lock: the next look
            self.console.message(f"automl: the population waits: {err}")

    def _advance_locked(self, lock: Any) -> None:
        """_advance's work, under `lock`."""
        lines = []
        with lock:
            population = self._read()
            for segment in population.orphans():
                params = queued_values(segment.trial)
                if params and enqueue_retry(self.study, segment.trial, params):
                    self.console.message(f"automl: segment {segment.number} (member "
                                         f"{segment.member}, generation {segment.generation}) "
                                         "was interrupted; it runs again")
            due = population.due()
            self.waiting, self.seen = set(), population.with_result()
            specs = self._first(due) if due and due[0][1] == 0 else []
            for member, generation in (() if specs else due):
                spec = next_segment(self.s.plan, self.s.space, population.pool(generation - 1),
                                    member, allowed=self._allowed, update_frames=self._update_frames)
                if spec is None:
                    self.waiting.add((member, generation))
                else:
                    specs.append(spec)
            for spec in specs:
                params, attrs = spec.queued(self.s.space)
                self.study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
                lines.append(segment_line(spec))
            if specs and self.s.checkpoints is not None:  # with the new segments' parents
                self.s.checkpoints.retain(self._read())
        lines = [line for line in lines if line] + self._generation_lines(population)
        for line in lines:
            self.console.message(line)

    def _first(self, due: list[tuple[int, int]]) -> list[SegmentSpec]:
        """Generation 0's segments of the members in `due` (all of them, but where a crash cut
        its queueing short): the same on every machine."""
        start, _ = starting_values(self.s.space, self.feasibility.base)  # notes: the plan's lines
        members = {m for m, _ in due}
        return [s for s in first_generation(self.s.plan, self.s.space, start, allowed=self._allowed,
                                            update_frames=self._update_frames)
                if s.member in members]

    def _generation_lines(self, population: Population) -> list[str]:
        """A line for each generation that became complete since the last (its scores)."""
        lines = []
        done = population.last_complete()
        for generation in range(self.announced + 1, -1 if done is None else done + 1):
            if not population.complete(generation):
                break
            scores = {m: s.score for m, s in population.results[generation].items()}
            shown = ", ".join(f"{m}: {score:.4g}" for m, score in sorted(scores.items()))
            lines.append(f"automl: pbt generation {generation} done (scores {shown})")
            self.announced = generation
        return lines

    def _allowed(self, values: dict[str, Any]) -> bool:
        """Whether native `values` meet the space's constraints and train_one would run them."""
        return not self.s.space.check(values, self.s.user_overrides) and \
            self.feasibility.problem(values) is None

    def _update_frames(self, values: dict[str, Any]) -> int:
        """Frames of one PPO update of a member with `values` (rollouts x num_envs)."""
        try:
            cfg = self.feasibility.run_config(values)
        except ConfigError:
            cfg = self.s.base
        return update_frames(cfg, gpus=len(visible_gpus()))

    # ------------------------------------------------------------------------------ segments
    def _fill_slots(self) -> None:
        """Take queued segments into free slots (only while the study has one queued: an ask of an
        empty queue would sample a trial of its own, which is given up)."""
        while self.free and self._queued():
            trial = self.study.ask()
            self.recorder.own(trial)
            if not records.in_pbt(self._frozen(trial)):
                self.recorder.give_up(trial)  # another orchestrator took the last queued one
                return
            try:
                self.running[trial.number] = self._launch(trial, self.free.pop(0))
            except CheckpointMissing as err:  # not the member's fault, but nothing to start from
                self.free.sort(key=lambda s: s.index)
                self.console.message(f"automl: segment {trial.number} cannot start: {err}")
                self.recorder.record(trial, {}, reasons.ERROR, frames=0, wall=0.0, score=math.nan,
                                     error_tail=f"its parent's state is missing: {err}")

    def _queued(self) -> bool:
        return bool(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))

    def _frozen(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
        return self.study._storage.get_trial(trial._trial_id)

    def _launch(self, trial: optuna.Trial, slot: Slot) -> Running:
        """Start a taken segment in `slot` (the slot goes back to the free ones where its parent's
        state cannot be had: CheckpointMissing)."""
        frozen = self._frozen(trial)
        segment = Segment.of(frozen, self.s.space)
        values = self.s.space.suggest(trial)  # the queued values
        space = self.s.space
        trial.set_user_attr(records.CONFIG_VALUES, space.config_values(values))
        run = self.paths.trial_run(trial.number)
        trial.set_user_attr(records.RUN_DIR, str(run.root.relative_to(self.paths.root)))
        keep = [o for o in [*space.fixed_overrides(), *space.overrides(values), *self.s.user_overrides]
                if override_key(o) not in SEGMENT_KEYS]
        ours = [f"train.frames={segment.frames_end}", f"train.seed={segment.attr(records.SEGMENT_SEED)}",
                "train.save_state=true"]
        if segment.parent != NO_PARENT:
            ours.append(f"train.resume_from={self._parent_state(segment, run, slot)}")
        base = [*keep, *ours]
        overrides = [*base, *run_overrides(run.root, slot)]
        self._write_config(trial.number, segment, values, base, overrides)
        proc = launch(number=trial.number, command=[*self.s.worker, *overrides], run=run, slot=slot,
                      forkserver=self.s.forkserver)
        return Running(trial=trial, proc=proc, values=values, tail=EventTail(run.tb),
                       stoppers=StopperSet(plateau=None, drop=None))

    def _parent_state(self, segment: Segment, run: RunPaths, slot: Slot) -> Path:
        """Where the segment's parent state is on this machine (from the store if need be)."""
        local = self.paths.trial_run(segment.parent).state
        if self.s.checkpoints is None:
            return local
        parent = Segment.of(self.study._storage.get_trial(
            self.study._storage.get_trial_id_from_study_id_trial_number(
                self.study._study_id, segment.parent)), self.s.space)
        try:
            return self.s.checkpoints.state_of(parent, run)
        except CheckpointMissing:
            self.free.append(slot)
            raise

    def _write_config(self, number: int, segment: Segment, values: dict[str, Any],
                      base: list[str], overrides: list[str]) -> None:
        """configs/trial_NNNN.json: the segment's values, place in the population and command."""
        payload = {"trial": number, "search_space_id": self.s.space.space_id, "params": values,
                   "config_values": self.s.space.config_values(values),
                   "pbt": {k.removeprefix("pbt_"): v for k, v in segment.trial.user_attrs.items()
                           if k in records.PBT_ATTRS},
                   "base_overrides": base, "user_overrides": self.s.user_overrides,
                   "overrides": overrides, "command": [*self.s.worker, *overrides]}
        atomic_write_text(self.paths.trial_config(number), json.dumps(payload, indent=2) + "\n")

    def _poll_all(self) -> int:
        """Watch the running segments; returns how many ended."""
        ended = 0
        for r in list(self.running.values()):
            code = r.proc.poll()
            if code is not None:
                self._finish(r, code)
                ended += 1
            elif watch(r, self.rules, should_prune=self._store(r), on_target=_ignore,
                       now=time.monotonic()):
                r.proc.terminate()
        return ended

    def _store(self, r: Running) -> Any:
        store = self.recorder.reporter(r.trial)

        def keep(step: int, value: float) -> bool:
            store(step, value)
            return False  # a segment is never pruned: its member needs its state
        return keep

    def _finish(self, r: Running, code: int) -> None:
        del self.running[r.trial.number]
        self.free.append(r.proc.slot)
        self.free.sort(key=lambda s: s.index)
        settle(r, self.rules, report=self.recorder.reporter(r.trial), on_target=_ignore)
        end = ending(r, code, load_summary(r.proc.run.summary), now=time.monotonic())
        reason, tail = end.reason, end.error_tail
        if reason == reasons.COMPLETED and not r.proc.run.state.exists():
            reason, tail = reasons.ERROR, "the segment ended without writing state.pt"
        if reason == reasons.COMPLETED and self.s.checkpoints is not None:
            try:  # stored before the trial is told: no decision names a parent not in the store
                self.s.checkpoints.upload(r.trial, r.proc.run)
            except Exception as err:  # noqa: BLE001 - any store error fails this segment alone
                reason, tail = reasons.ERROR, (f"its state could not be stored in "
                                               f"{self.s.checkpoints.url}: {type(err).__name__}: {err}")
                self.console.message(f"automl: segment {r.trial.number}: {tail}")
        self.recorder.record(r.trial, r.values, reason, frames=end.frames, wall=end.wall_s,
                             score=end.score, error_tail=tail, metrics=end.metrics)

    # ------------------------------------------------------------------------------- stopping
    def _on_signal(self, signum: int, frame: object) -> None:
        self.interrupted = True

    def _stop_all(self, reason: str) -> None:
        for r in list(self.running.values()):
            if r.reason is None:
                r.reason = reason
            r.proc.terminate()
        for r in list(self.running.values()):
            self._finish(r, r.proc.wait_gone())

    def _abort(self, err: BaseException) -> None:
        """The loop raised: stop this process's segments and record each as interrupted (they run
        again on --resume), as far as the storage allows; then the error goes on."""
        self.recorder.aborting = True
        why = f"the orchestrator stopped: {type(err).__name__}: {err}"
        print(f"automl: {why}", file=sys.stderr)
        for r in self.running.values():
            if r.reason is None:
                r.reason, r.error = reasons.ERROR, why
        try:
            self._stop_all(reasons.ERROR)
        except Exception:  # noqa: BLE001 - the original error is the one to raise
            pass
        for trial in list(self.recorder.asked.values()):
            self.recorder.record(trial, {}, reasons.ERROR, frames=0, wall=0.0, score=math.nan,
                                 error_tail=why)

    # ------------------------------------------------------------------------------- the state
    def write_state(self, phase: str) -> None:
        """automl_state.yaml: the running segments, the members' latest scores, the budget."""
        now = time.monotonic()
        reports.write_state(self.paths, state_payload(
            phase=phase, study=self.paths.name, running=self.running, population=self.population,
            generations=self.s.plan.generations, finished=self.tally.total(),
            budget=(self.s.budget_s, now - self.start, max(0.0, self.deadline - now))))


def _ignore(frames: int, score: float) -> None:
    """Segments note no --target-score."""
