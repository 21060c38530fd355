"""run_jobs, the validation and final stages' runner: a run that ended before the deadline is a
result, never a budget cut."""

from __future__ import annotations

import sys
import time

from search_harness import SHORT_TRIALS, WORKER, write_behaviour

from automl import reasons
from automl.search.trials import runner
from automl.search.trials.launcher import Slot
from automl.search.trials.runner import Job, run_jobs


def test_a_run_that_ended_before_the_deadline_check_is_not_cut(tmp_path, monkeypatch):
    quick = write_behaviour(tmp_path, "quick", seconds_per_point=0.0)
    job = Job(name="only", overrides=list(SHORT_TRIALS), run_dir=tmp_path / "only")
    deadline = time.monotonic() + 30.0
    launched: list = []
    real_launch = runner.launch

    def launch(**kwargs):
        launched.append(real_launch(**kwargs))
        return launched[-1]

    def pause(seconds, forkserver):
        """The run ends, then the clock passes the deadline, all within one pause."""
        while launched[-1].poll() is None:
            time.sleep(0.05)
        monkeypatch.setattr(runner.time, "monotonic", lambda: deadline + 1.0)

    monkeypatch.setattr(runner, "launch", launch)
    monkeypatch.setattr(runner, "pause", pause)
    results, cut = run_jobs([job], worker=[sys.executable, str(WORKER), "--behaviour", str(quick)],
                            slots=[Slot(index=0, threads=1)], deadline=deadline)
    assert cut is None
    [result] = results
    assert result.reason == reasons.COMPLETED and result.score == result.score  # not NaN
