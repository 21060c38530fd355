"""summary.json read back as a RunSummary: what the trial wrote, and empty values where it did not."""

from __future__ import annotations

import json
import math

from automl.summary import RunSummary, load_summary, write_summary


def test_a_written_summary_reads_back_equal(tmp_path):
    path = tmp_path / "summary.json"
    summary = RunSummary(status="completed", score=0.75, frames=4096, wall_s=12.5, seed=3,
                         git_sha="abc", metrics={"success_rate": 0.5}, message="",
                         started_at=1.0, first_step_at=2.0)
    write_summary(summary, path)
    loaded = load_summary(path)
    assert loaded == summary
    assert loaded is not None and loaded.completed


def test_nan_score_missing_keys_and_wrong_types_read_as_empty_values(tmp_path):
    path = tmp_path / "summary.json"
    write_summary(RunSummary(status="diverged", score=math.nan, frames=10, wall_s=1.0, seed=0,
                             git_sha=None, message="score is nan"), path)
    loaded = load_summary(path)
    assert loaded is not None and loaded.score is None and not loaded.completed
    assert loaded.message == "score is nan"
    path.write_text(json.dumps({"status": "completed", "score": "high", "frames": None,
                                "metrics": [1, 2]}))
    loaded = load_summary(path)
    assert loaded == RunSummary(status="completed", score=None, frames=0, wall_s=0.0, seed=0,
                                git_sha=None)


def test_a_missing_or_half_written_summary_is_none(tmp_path):
    path = tmp_path / "summary.json"
    assert load_summary(path) is None
    path.write_text('{"status": "compl')
    assert load_summary(path) is None
    path.write_text("[1, 2]")
    assert load_summary(path) is None
