"""The watcher of one running trial, without a study or a process: a scripted event tail, a fake
pruner (a callable), and the stop reason it returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from automl import reasons, tags
from automl.search.trials.stoppers import StopperSet
from automl.search.trials.watch import Running, TrialGone, WatchRules, ending, make_stoppers, settle, watch
from automl.summary import RunSummary

EVAL = 1000
RULES = WatchRules(eval_frequency=EVAL, trial_timeout=30.0, target_score=None)


@dataclass
class ScriptedTail:
    """Each poll returns the next batch of score points (frames, score); nothing once they ran out."""

    batches: list[list[tuple[int, float]]]

    def poll(self) -> dict[str, list[tuple[int, float]]]:
        batch = self.batches.pop(0) if self.batches else []
        return {tags.SCORE: batch} if batch else {}  # as EventTail: only tags with new points


@dataclass
class FakeProcess:
    started: float = 0.0
    stderr: str = ""

    def stderr_tail(self) -> str:
        return self.stderr


@dataclass
class FakePruner:
    """Prunes at `prune_at` steps and later; remembers every (step, value) it was asked about."""

    prune_at: int = 10**9
    asked: list[tuple[int, float]] = field(default_factory=list)

    def __call__(self, step: int, value: float) -> bool:
        self.asked.append((step, value))
        return step >= self.prune_at


def running(*batches: list[tuple[int, float]], stoppers: StopperSet | None = None) -> Running:
    return Running(trial=None, proc=FakeProcess(), values={},  # type: ignore[arg-type]
                   tail=ScriptedTail(list(batches)),  # type: ignore[arg-type]
                   stoppers=stoppers or StopperSet(), last_progress=0.0)


def no_target(frames: int, score: float) -> None:
    raise AssertionError("no target score was set")


def test_each_new_step_goes_to_the_pruner_once_and_its_prune_stops_the_trial():
    r = running([(1010, 0.1), (1500, 0.2), (2030, 0.3)], [(3040, 0.4), (4050, 0.5)])
    pruner = FakePruner(prune_at=3000)
    assert watch(r, RULES, should_prune=pruner, on_target=no_target, now=1.0) is None
    # 1500 frames is still step 1000: a step already reported is not reported again.
    assert pruner.asked == [(1000, 0.1), (2000, 0.3)]
    assert (r.frames, r.score, r.last_step) == (2030, 0.3, 2000)
    assert watch(r, RULES, should_prune=pruner, on_target=no_target, now=2.0) == reasons.PRUNED
    assert pruner.asked[-1] == (3000, 0.4), "the point after the prune was taken"
    assert r.reason == reasons.PRUNED and r.score == 0.4
    # Decided once: the next poll reads the tail but returns no new decision.
    r.tail.batches.append([(5000, 0.9)])  # type: ignore[attr-defined]
    assert watch(r, RULES, should_prune=pruner, on_target=no_target, now=3.0) is None
    assert len(pruner.asked) == 2 + 1 and r.reason == reasons.PRUNED


def test_a_nan_score_is_an_error_the_pruner_never_sees():
    r = running([(1000, 0.5), (2000, math.nan), (3000, 0.7)])
    pruner = FakePruner()
    assert watch(r, RULES, should_prune=pruner, on_target=no_target, now=1.0) == reasons.ERROR
    assert pruner.asked == [(1000, 0.5)]
    assert r.error == "score is nan at 2000 frames" and r.score == 0.5


def test_a_trial_failed_elsewhere_is_an_error():
    def gone(step: int, value: float) -> bool:
        raise TrialGone("finished")

    r = running([(1000, 0.5)])
    assert watch(r, RULES, should_prune=gone, on_target=no_target, now=1.0) == reasons.ERROR
    assert r.error == "failed meanwhile by another orchestrator"


def test_silence_longer_than_the_trial_timeout_times_it_out():
    r = running([(1000, 0.5)], [], [])
    pruner = FakePruner()
    assert watch(r, RULES, should_prune=pruner, on_target=no_target, now=10.0) is None
    assert watch(r, RULES, should_prune=pruner, on_target=no_target, now=40.0) is None  # 30 s
    assert watch(r, RULES, should_prune=pruner, on_target=no_target, now=40.1) == reasons.TIMEOUT


def test_the_stoppers_decide_when_the_pruner_lets_the_trial_run():
    stoppers = make_stoppers(plateau_patience=2, plateau_min_delta=0.0, drop=0.0, grace_reports=1)
    r = running([(k * EVAL, 0.5) for k in range(1, 6)], stoppers=stoppers)
    pruner = FakePruner()
    assert watch(r, RULES, should_prune=pruner, on_target=no_target, now=1.0) == reasons.PLATEAU
    assert len(pruner.asked) < 5


def test_the_target_hook_fires_once_at_the_first_crossing():
    hits: list[tuple[int, float]] = []
    rules = WatchRules(eval_frequency=EVAL, trial_timeout=30.0, target_score=0.8)
    r = running([(1000, 0.5), (2000, 0.85)], [(3000, 0.9)])
    for now in (1.0, 2.0):
        watch(r, rules, should_prune=FakePruner(), on_target=lambda f, s: hits.append((f, s)),
              now=now)
    assert hits == [(2000, 0.85)]


def test_points_written_before_exit_are_reported_but_decide_nothing():
    stoppers = make_stoppers(plateau_patience=1, plateau_min_delta=0.0, drop=0.0, grace_reports=1)
    r = running([(1000, 0.5), (2000, 0.5), (3000, 0.5)], stoppers=stoppers)
    reported: list[tuple[int, float]] = []
    settle(r, RULES, report=lambda step, value: reported.append((step, value)),
           on_target=no_target)
    assert reported == [(1000, 0.5), (2000, 0.5), (3000, 0.5)]
    assert r.reason is None and (r.frames, r.score) == (3000, 0.5)


def summary(status: str, score: float | None, frames: int = 5000, message: str = "") -> RunSummary:
    return RunSummary(status=status, score=score, frames=frames, wall_s=1.0, seed=0, git_sha=None,
                      metrics={"success_rate": 1.0}, message=message)


def test_a_pruned_trial_that_trained_all_its_frames_anyway_completed():
    r = running()
    r.reason, r.score, r.frames = reasons.PRUNED, 0.4, 4000
    end = ending(r, 0, summary("completed", 0.9), now=12.0)
    assert (end.reason, end.score, end.frames, end.wall_s) == (reasons.COMPLETED, 0.9, 5000, 12.0)
    assert end.metrics == {"success_rate": 1.0} and end.error_tail == ""
    # A stopper's verdict stands, with the score it stopped at.
    r.reason = reasons.PLATEAU
    end = ending(r, 0, summary("completed", 0.9), now=12.0)
    assert (end.reason, end.score) == (reasons.PLATEAU, 0.4)


def test_a_crash_is_an_error_with_the_summary_message_exit_code_and_stderr():
    r = running()
    r.score, r.frames = 0.3, 2000
    r.proc.stderr = "Traceback ...\nValueError: boom"  # type: ignore[attr-defined]
    end = ending(r, 1, summary("error", None, frames=0, message="boom"), now=3.0)
    assert end.reason == reasons.ERROR and end.frames == 2000 and end.score == 0.3
    assert end.error_tail == "boom\nexit code 1\nTraceback ...\nValueError: boom"
    end = ending(r, -9, None, now=3.0)  # killed before it wrote a summary
    assert end.reason == reasons.ERROR and end.metrics == {}
    assert end.error_tail.startswith("exit code -9\n")
