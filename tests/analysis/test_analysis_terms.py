"""Reward-term shares: the best trials' shaped return is made of one term, the worst trials' of
another; the table, the YAML entry, the plot and `analyze.py --terms` show it, and a study whose
events hold no reward terms gets a one-line note."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import pytest
import yaml
from fake_study import FakeTrial, fake_space, lr_driven_trials, make_study, random_params
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from automl import paths, tags
from automl.analysis import terms as term_module
from automl.analysis.cli import main
from automl.analysis.folder import open_view
from automl.analysis.importance import read_importance
from automl.analysis.plots import TERM_SHARES
from automl.analysis.reports import write_reports
from automl.analysis.terms import end_value, term_shares, trial_weights
from automl.errors import EXIT_BAD_INPUT
from automl.paths import RunPaths, StudyPaths
from automl.search.study import records

PNG = b"\x89PNG\r\n\x1a\n"
TERMS = ("position_tracking", "termination", "torques")
POSITION_WEIGHT = 2.0
"""position_tracking is not searched: config.yaml lists it with the task's default weight."""
POINTS = 20
"""Logged points per term: the end of training is the mean of the last 2 (10%)."""


@pytest.fixture
def log_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path))
    return tmp_path


def write_terms(run: RunPaths, series: dict[str, list[float]]) -> None:
    """A second event file in tb/ holding `Reward / <term>` series, as train.py's write_point."""
    writer = EventFileWriter(str(run.tb))
    try:
        for tag, values in series.items():
            for i, value in enumerate(values):
                summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
                writer.add_event(Event(summary=summary, step=(i + 1) * 1000, wall_time=time.time()))
    finally:
        writer.close()


def raw_series(contribution: float, weight: float, *, spread: float = 0.0) -> list[float]:
    """A raw term whose |weight x mean of the last two points| is `contribution`; its early points
    are 100 times larger (training had not settled) and the last two are +-spread around the mean."""
    end = contribution / abs(weight)
    return [100 * end] * (POINTS - 2) + [end * (1 - spread), end * (1 + spread)]


def add_terms(study: StudyPaths, number: int, contributions: dict[str, float]) -> None:
    """Give trial `number` the task's default weight in config.yaml and scripted term series."""
    run = study.trial_run(number)
    config = yaml.safe_load(run.config.read_text())
    scales = config["reward"]["scales"]
    scales["position_tracking"] = POSITION_WEIGHT
    run.config.write_text(yaml.safe_dump(config))
    series = {tags.reward_term_tag(t): raw_series(c, scales[t], spread=0.5 if t == TERMS[0] else 0.0)
              for t, c in contributions.items()}
    series["Reward / Total reward (mean)"] = [1e6] * POINTS  # skrl's own tag, not a term
    write_terms(run, series)


TOP = {"position_tracking": 6.0, "termination": 1.0, "torques": 1.0}
BOTTOM = {"position_tracking": 1.0, "termination": 6.0, "torques": 1.0}
MIDDLE = {"position_tracking": 1.0, "termination": 1.0, "torques": 1.0}


def term_study(name: str = "terms") -> StudyPaths:
    """Nine completed trials scored 9..1 (the best has no reward terms), one pruned: the two best
    with terms lean on position_tracking, the two worst on termination."""
    rng = random.Random(1)
    space = fake_space()
    trials = [FakeTrial(random_params(space, rng), score=float(s)) for s in range(9, 0, -1)]
    trials.append(FakeTrial(random_params(space, rng), score=5.5, state="pruned", points=2))
    study = make_study(name, trials)
    plan = {1: TOP, 2: TOP, 3: MIDDLE, 4: MIDDLE, 5: MIDDLE, 6: MIDDLE, 7: BOTTOM, 8: BOTTOM,
            9: TOP}  # the pruned trial: not scored, so in neither group
    for number, contributions in plan.items():
        add_terms(study, number, contributions)
    return study


def test_end_value_is_the_mean_of_the_last_tenth() -> None:
    assert end_value([]) is None
    assert end_value([(1, math.nan)]) is None
    assert end_value([(1, 3.0)]) == 3.0
    assert end_value([(i, float(i)) for i in range(9)]) == 8.0
    assert end_value([(i, float(i)) for i in range(20)]) == pytest.approx(18.5)
    assert end_value([(i, float(i)) for i in range(21)]) == pytest.approx(19.0)
    assert end_value([(1, 1.0), (2, math.inf), (3, 3.0)]) == 3.0


def test_best_trials_lean_on_one_term_and_the_worst_on_another(log_root: Path) -> None:
    shares = term_shares(open_view(term_study()))
    assert shares.note is None
    assert shares.group == "quarter"
    assert shares.top == [1, 2] and shares.bottom == [7, 8]
    assert shares.left_out == 1
    assert [r.term for r in shares.rows] == ["position_tracking", "torques", "termination"]
    by_term = {r.term: r for r in shares.rows}
    assert by_term["position_tracking"].share_top == pytest.approx(0.75)
    assert by_term["position_tracking"].share_bottom == pytest.approx(0.125)
    assert by_term["termination"].share_top == pytest.approx(0.125)
    assert by_term["termination"].share_bottom == pytest.approx(0.75)
    assert by_term["torques"].difference == pytest.approx(0.0, abs=1e-6)  # float32 events
    assert by_term["position_tracking"].difference == pytest.approx(0.625)
    assert sum(r.share_top for r in shares.rows) == pytest.approx(1.0)
    assert by_term["position_tracking"].weights_top == (POSITION_WEIGHT, POSITION_WEIGHT)
    low, high = by_term["termination"].weights_bottom or (0, 0)
    assert low <= high < 0
    assert "2 best" in shares.basis and "2 worst" in shares.basis and "1 completed" in shares.basis


def test_weights_fall_back_to_the_trials_config_values(log_root: Path) -> None:
    study = term_study("fallback")
    view = open_view(study)
    trial = view.trials[1]
    assert set(trial_weights(view, trial)) == set(TERMS)
    study.trial_run(1).config.unlink()
    values = trial.user_attrs[records.CONFIG_VALUES]
    assert trial_weights(view, trial) == {"torques": values["reward.scales.torques"],
                                          "termination": values["reward.scales.termination"]}


def test_fewer_than_four_trials_compare_halves(log_root: Path) -> None:
    rng = random.Random(2)
    trials = [FakeTrial(random_params(fake_space(), rng), score=float(s)) for s in (3, 2, 1)]
    study = make_study("halves", trials)
    for number, contributions in enumerate((TOP, MIDDLE, BOTTOM)):
        add_terms(study, number, contributions)
    shares = term_shares(open_view(study))
    assert shares.group == "half" and shares.top == [0] and shares.bottom == [2]
    assert shares.rows[0].term == "position_tracking" and shares.rows[-1].term == "termination"


def test_write_reports_puts_the_table_in_the_yaml_and_plots_it(log_root: Path) -> None:
    study = term_study()
    written = write_reports(study)
    assert study.plots_dir / TERM_SHARES in written
    assert (study.plots_dir / TERM_SHARES).read_bytes()[:8] == PNG
    entry = (read_importance(study) or {})[term_module.REPORT_KEY]
    assert entry["top_trials"] == ["trial_0001", "trial_0002"]
    assert entry["bottom_trials"] == ["trial_0007", "trial_0008"]
    assert "2 best" in entry["basis"] and "share" in entry["basis"]
    rows = entry["terms"]
    assert [r["term"] for r in rows] == ["position_tracking", "torques", "termination"]
    assert rows[0]["share_top"] == 0.75 and rows[0]["share_bottom"] == 0.125
    assert rows[0]["difference"] == 0.625 and rows[0]["weight_top"] == [2.0, 2.0]


def test_cli_prints_the_table_and_writes_the_plot(log_root: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    study = term_study()
    assert main(["--study", "terms", "--terms"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "reward-term shares" in out and "best quarter (2 trials)" in out
    lines = [line for line in out.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in lines] == ["position_tracking", "torques",
                                                               "termination"]
    assert "+0.625" in lines[0] and "-0.625" in lines[-1] and "0.75" in lines[0]
    png = study.plots_dir / TERM_SHARES
    assert str(png) in out
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 15_000


def test_cli_importance_keeps_the_terms_in_the_yaml(log_root: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    study = term_study()
    assert main(["--study", "terms", "--importance"]) == 0
    entry = (read_importance(study) or {})[term_module.REPORT_KEY]
    assert entry["terms"][0]["term"] == "position_tracking"


def test_study_without_reward_terms_gets_a_note(log_root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    study = make_study("noterms", lr_driven_trials(5))
    shares = term_shares(open_view(study))
    assert shares.rows == [] and shares.note is not None
    assert "none of the 5 completed trials" in shares.note
    assert main(["--study", "noterms", "--terms"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "Traceback" not in out
    assert out.splitlines()[0] == shares.note
    assert (study.plots_dir / TERM_SHARES).read_bytes()[:8] == PNG
    write_reports(study)
    assert (read_importance(study) or {})[term_module.REPORT_KEY] == {"note": shares.note}


def test_study_without_completed_trials_is_bad_input(log_root: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    make_study("unfinished", [FakeTrial(lr_driven_trials(1)[0].params, score=0.1,
                                        state="running", points=1)])
    assert main(["--study", "unfinished", "--terms"]) == EXIT_BAD_INPUT
    _, err = capsys.readouterr()
    assert err.startswith("analyze.py: ") and "none complete" in err and len(err.splitlines()) == 1
    shares = term_shares(open_view(StudyPaths.for_study("unfinished")))
    assert shares.note is not None and "no completed trial" in shares.note
