"""Population-based training with the real train_one: a shipped template whose composed start lies
outside its space, with segment ends that do not fall on whole environment steps."""

from __future__ import annotations

import math

import pytest
import yaml
from search_harness import REPO, read_csv, trials

from automl import cli, paths
from automl.analysis import cli as analyze
from automl.paths import StudyPaths
from automl.search.study import records

FRAMES, INTERVAL = 3080, 1024
"""ceil(3080 / 1024) = 4 intervals, the last of 8 frames: under one update of 16 envs x 16
rollouts, so the plan has 3 segments and the last ends at train.frames (3,080 is not a multiple of
16 environments: a member steps to 3,088). Before, a fourth segment started past its end and every
member failed it."""


@pytest.mark.slow
def test_a_real_population_on_the_cartpole_template_trains_every_segment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    code = cli.main([
        "--mode", "search", "--quiet", "--budget-hours", "0.25", "--workers", "2",
        "--search-method", "pbt", "--population", "4", "--pbt-interval", str(INTERVAL),
        "--space", str(REPO / "templates" / "cartpole.yaml"), "--study-name", "real_pbt",
        "env=cartpole", f"train.frames={FRAMES}", "train.eval_frequency=512"])
    out = capsys.readouterr().out
    assert code == 0, out
    # rollouts composes to 24, which the template's 16, 32, 64 do not hold: member 0 starts at 32.
    assert "member 0 stays inside the space: `rollouts` starts at 32" in out
    assert "`learning_epochs` starts at 6" in out  # composed 5: off the template's 2, 4, 6, 8
    sp = StudyPaths.for_study("real_pbt")
    segments = [t for t in trials(sp) if records.in_pbt(t)]
    assert len(segments) == 4 * 3
    assert all(t.state.name == "COMPLETE" for t in segments), [t.user_attrs for t in segments]
    last = [t for t in segments if t.user_attrs[records.GENERATION] == 2]
    assert {t.user_attrs[records.FRAMES_END] for t in last} == {FRAMES}
    assert all(FRAMES <= t.user_attrs[records.FRAMES] < FRAMES + 16 for t in last)
    # The answer is the winner's trained policy, evaluated and exported; its schedule is not
    # validated, so it is not exported as the best configuration.
    assert not sp.best_config.exists()
    last_line = out.strip().splitlines()[-1]
    assert last_line.startswith("automl: result: pbt_winner chosen: the winner's trained policy")
    assert "pbt/schedule.yaml) belongs to the lineage's weights and is not validated" in last_line
    assert "answer: the winner's trained policy" in out
    final = yaml.safe_load((sp.root / "pbt" / "final_policy.yaml").read_text())
    assert final["episodes"] > 0 and math.isfinite(final["score"])
    for name in ("policy.onnx", "policy.ts.pt"):  # real exports, checked against torch by train_one
        assert (sp.root / "pbt" / name).stat().st_size > 1_000
    schedule = yaml.safe_load((sp.root / "pbt" / "schedule.yaml").read_text())
    assert schedule["fixed"]["ppo.rollouts"] in (16, 32, 64)  # member 0 moved inside the space
    assert len(read_csv(sp.root / "pbt" / "segments.csv")) == 12
    # A population not validated: every output names its winner (configurations.csv had no row,
    # automl_state.yaml no `best`). experiment_df.csv holds search trials and validation runs
    # (pbt/segments.csv the segments): here none, so it names no other configuration.
    state = yaml.safe_load(sp.state.read_text())
    assert state["best"]["config_id"] == "pbt_winner" and state["best"]["answer"] == "policy"
    assert state["best"]["trial"] == final["trial"]
    first = read_csv(sp.configurations_csv)[0]
    assert (first["config_id"], first["chosen"]) == ("pbt_winner", "1")
    assert yaml.safe_load(sp.importance_yaml.read_text())["chosen"]["config_id"] == "pbt_winner"
    assert read_csv(sp.experiment_df_csv) == []
    assert analyze.main(["--study", "real_pbt"]) == 0
    assert "chosen: pbt_winner" in capsys.readouterr().out
