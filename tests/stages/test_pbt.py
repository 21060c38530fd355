"""Population-based training (--search-method pbt) over the stand-in worker, whose runs carry a
"skill" through state.pt: the flags, the segments as trials of one study, the exploit decisions
against the study's own scores, the outputs, the stage's validation, kill -9 and --resume, and two
orchestrators on one PostgreSQL study."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from search_harness import SPACES as SPACES_DIR
from search_harness import (
    choice_names,
    kill_leftovers,
    read_csv,
    rows,
    run_search,
    search_argv,
    skip_reports,
    start_orchestrator,
    trials,
    wait_for,
    write_behaviour,
)

from automl import paths, reasons, tags
from automl.analysis.pbt import MEMBERS_PLOT, PbtView
from automl.paths import StudyPaths
from automl.search.pbt import checkpoints
from automl.search.pbt.decide import next_segment
from automl.search.pbt.plan import PbtPlan
from automl.search.pbt.population import NO_PARENT, Population
from automl.search.space import load_space
from automl.search.study import records
from automl.search.trials.tb_reader import read_scalars

POPULATION = 4
FRAMES, INTERVAL = 60_000, 20_000
"""Three segments per member (train.frames 60k, eval points every 10k)."""
LR_SCORE = {"param": "ppo.learning_rate", "target": 3e-4, "log": True}
"""Skill per frame is highest at lr 3e-4; the space's prior (3e-3) is a decade off it."""
PBT_FLAGS = ["--search-method", "pbt", "--population", str(POPULATION),
             "--pbt-interval", str(INTERVAL)]
START_TIMEOUT_S = 120


def pbt_argv(tmp_path: Path, name: str, *, mode: str = "search", seconds: float = 0.01,
             workers: int = 2, flags: tuple[str, ...] = (), rules: list[dict] | None = None
             ) -> list[str]:
    behaviour = write_behaviour(tmp_path, f"{name}_{seconds}", seconds_per_point=seconds,
                                horizon=FRAMES, score=LR_SCORE, rules=rules or [])
    argv = search_argv(study=name, space="pbt.yaml", behaviour=behaviour, hp_trials=8,
                       workers=workers, budget_hours=0.2, flags=[*PBT_FLAGS, *flags])
    argv[argv.index("search")] = mode
    argv[argv.index("train.frames=100000")] = f"train.frames={FRAMES}"
    return argv


def segments(sp: StudyPaths) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials(sp) if records.in_pbt(t)]


def results_by_slot(sp: StudyPaths) -> Counter:
    """(member, generation) -> how many segments of it ended with a result of their own."""
    return Counter((t.user_attrs[records.MEMBER], t.user_attrs[records.GENERATION])
                   for t in segments(sp)
                   if t.state.is_finished() and not t.user_attrs.get(records.INTERRUPTED)
                   and records.STOP_REASON in t.user_attrs)


def assert_population_complete(sp: StudyPaths, generations: int = FRAMES // INTERVAL) -> None:
    """Every member's every segment ran to one result, none twice, none left RUNNING or queued."""
    expected = {(m, g) for m in range(POPULATION) for g in range(generations)}
    counts = results_by_slot(sp)
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values()), f"a segment ran twice: {counts}"
    states = Counter(t.state for t in segments(sp))
    assert states[TrialState.RUNNING] == states[TrialState.WAITING] == 0, states


# ------------------------------------------------------------------------------ a stage, whole
@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """One PBT stage: the population, its reports, the schedule validated, the policy evaluated."""
    tmp = tmp_path_factory.mktemp("pbt_stage")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stdout(out):
        monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp / "log"))
        code = run_search(pbt_argv(tmp, "pbt_stage", mode="stage"))
    (tmp / STDOUT).write_text(out.getvalue())
    return StudyPaths(tmp / "log" / "automl" / "pbt_stage"), code


STDOUT = "stage_stdout.txt"
"""The stage's console output, next to its log folder."""


def test_every_output_names_the_validated_choice(stage, monkeypatch, capsys):
    sp, _ = stage
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(sp.root.parents[1]))
    names = choice_names(sp, (sp.root.parents[2] / STDOUT).read_text(), capsys)
    assert set(names.values()) == {"pbt_winner"}, names  # the replay beat the start (next test)
    rows = read_csv(sp.experiment_df_csv)
    runs = [r for r in rows if r["configuration"] == "pbt_winner"]
    assert rows[:len(runs)] == runs and {r["state"] for r in runs} == {"validation"}
    assert len(runs) == int(read_csv(sp.configurations_csv)[0]["validated_seeds"])


def test_every_segment_is_a_trial_with_its_member_generation_parent_and_frames(stage):
    sp, code = stage
    assert code == 0
    assert_population_complete(sp)
    by_number = {t.number: t for t in segments(sp)}
    for t in by_number.values():
        attrs = t.user_attrs
        start, end = attrs[records.FRAMES_START], attrs[records.FRAMES_END]
        assert end > start
        config = json.loads(sp.trial_config(t.number).read_text())
        overrides = config["base_overrides"]
        assert f"train.frames={end}" in overrides and "train.save_state=true" in overrides
        if attrs[records.GENERATION] == 0:
            assert attrs[records.PARENT] == NO_PARENT and start == 0
            assert not any(o.startswith("train.resume_from=") for o in overrides)
            continue
        parent = by_number[attrs[records.PARENT]]
        # It continues its parent's state: the generation before, at the frames that state holds.
        assert parent.user_attrs[records.GENERATION] == attrs[records.GENERATION] - 1
        assert start == parent.user_attrs[records.FRAMES] == parent.user_attrs[records.FRAMES_END]
        assert f"train.resume_from={sp.trial_run(parent.number).state}" in overrides
        donor = attrs.get(records.DONOR)
        assert parent.user_attrs[records.MEMBER] == (attrs[records.MEMBER] if donor is None else donor)


def test_generations_follow_the_exploit_and_explore_rules_on_the_studys_own_scores(stage):
    """Each segment's parent and values are what the decisions make of the results it was ranked
    among (`pbt_compared`: each member's latest result at its generation or before, no barrier):
    the study alone rebuilds the population."""
    sp, _ = stage
    study = optuna.load_study(study_name=sp.name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sp.journal))))
    plan = PbtPlan.from_dict(study.user_attrs[records.PBT_PLAN])
    assert not plan.barrier
    space = load_space(sp.search_space, reward_terms=["torques"])
    population = Population.of(study, plan, space)
    decided = 0
    for generation in range(1, plan.generations):
        for member, ran in population.results[generation].items():
            compared = {int(m): g for m, g in ran.attr(records.COMPARED).items()}
            assert compared[member] == generation - 1 and max(compared.values()) <= generation - 1
            assert 2 * len(compared) > plan.population or ran.donor is None
            pool = {m: population.results[g][m] for m, g in compared.items()}
            spec = next_segment(plan, space, pool, member, allowed=lambda values: True,
                                update_frames=lambda values: 1)
            assert spec is not None
            assert ran.parent == spec.parent
            assert ran.donor == (spec.exploit.donor if spec.exploit else None)
            assert ran.values == spec.values
            decided += 1
    assert decided == POPULATION * (plan.generations - 1)


def test_the_reports_say_who_copied_whom_and_the_winners_schedule(stage):
    sp, _ = stage
    folder = sp.root / "pbt"
    rows = list(csv.DictReader((folder / "segments.csv").open()))
    assert len(rows) == len(segments(sp))
    lineage = yaml.safe_load((folder / "lineage.yaml").read_text())
    steps = {(t.user_attrs[records.MEMBER], t.user_attrs[records.GENERATION]) for t in segments(sp)
             if t.user_attrs.get(records.DONOR) is not None}  # a retry repeats its step
    assert {(x["member"], x["generation"]) for x in lineage["exploit_steps"]} == steps
    assert len(lineage["exploit_steps"]) == len(steps)
    for step in lineage["exploit_steps"]:
        assert step["donor_score"] - step["replaced_score"] > step["margin"]
    winner = lineage["winner"]
    finals = [t for t in segments(sp) if t.user_attrs[records.GENERATION] == FRAMES // INTERVAL - 1]
    assert winner["score"] == max(t.value for t in finals)
    chain = winner["lineage"]
    assert [c["generation"] for c in chain] == list(range(FRAMES // INTERVAL))
    assert chain[-1]["trial"] == winner["trial"]
    schedule = yaml.safe_load((folder / "schedule.yaml").read_text())
    assert [s["trial"] for s in schedule["segments"]] == [c["trial"] for c in chain]
    assert schedule["segments"][-1]["until"] == FRAMES
    assert "network.policy_hidden_layer_sizes" in schedule["fixed"]  # fixed per member
    assert all("network.policy_hidden_layer_sizes" not in s["values"] for s in schedule["segments"])
    assert json.loads((folder / "model.pt").read_text())["skill"] == pytest.approx(
        json.loads(sp.trial_run(winner["trial"]).model.read_text())["skill"])
    assert (sp.plots_dir / MEMBERS_PLOT).stat().st_size > 10_000
    # One TensorBoard run per member across its segments, values and exploit steps beside.
    for member in range(POPULATION):
        last = {t.user_attrs[records.GENERATION]: t for t in sorted(segments(sp), key=lambda t: t.number)
                if t.user_attrs[records.MEMBER] == member}  # a retried step: its last segment
        own = [last[g] for g in sorted(last)]
        series = read_scalars(folder / "tb" / f"member_{member}")
        frames = [step for step, _ in series[tags.SCORE]]
        assert frames == sorted(frames) and frames[-1] == max(t.user_attrs[records.FRAMES] for t in own)
        assert len(series["PBT / exploit"]) == len(own)
        copied = [t for t in own if t.user_attrs.get(records.DONOR) is not None]
        assert [v for _, v in series.get("PBT / donor", [])] == [t.user_attrs[records.DONOR] for t in copied]
        rates = dict(series["PBT / ppo.learning_rate"])
        assert all(rates[t.user_attrs[records.FRAMES_START]] == pytest.approx(t.params["learning_rate"])
                   for t in own)
    importance = yaml.safe_load(sp.importance_yaml.read_text())
    assert importance["method"] == "pbt" and importance["importance"].startswith("not computed")
    assert importance["winner"]["trial"] == winner["trial"]
    meta = yaml.safe_load(sp.meta.read_text())["sessions"][-1]
    assert meta["pbt"]["population"] == POPULATION and meta["pbt"]["generations"] == 3


def test_the_stage_replays_the_schedule_from_scratch_next_to_the_start_on_the_same_seeds(stage):
    sp, _ = stage
    rows = {r["config_id"]: r for r in csv.DictReader(sp.validation_csv.open())}
    assert set(rows) == {"pbt_winner", "baseline"}
    assert rows["pbt_winner"]["seeds"] == rows["baseline"]["seeds"]
    assert int(rows["pbt_winner"]["paired_seeds"]) == 3
    # The stand-in scores a schedule step by step as it scored the lineage's segments (no noise):
    # the replay from scratch reaches exactly the winner's score, the start its own.
    winner = yaml.safe_load((sp.root / "pbt" / "lineage.yaml").read_text())["winner"]
    assert float(rows["pbt_winner"]["mean"]) == pytest.approx(winner["score"], rel=1e-9)
    assert float(rows["baseline"]["mean"]) < float(rows["pbt_winner"]["mean"])
    seed = rows["pbt_winner"]["seeds"].split(";")[0]
    replay = yaml.safe_load((sp.validation_dir / f"pbt_winner_seed{seed}" / "config.yaml").read_text())
    # The stand-in reads Hydra's flow syntax loosely; the steps' ends are in it all the same.
    best = yaml.safe_load(sp.best_config.read_text())
    assert replay["train"]["frames"] == FRAMES
    for step in best["train"]["schedule"]:
        assert f"until:{step['until']}" in str(replay["train"]["schedule"])
    assert "resume_from" not in replay["train"]  # from scratch
    start = yaml.safe_load((sp.validation_dir / f"baseline_seed{seed}" / "config.yaml").read_text())
    assert start["ppo"]["learning_rate"] == 3e-3  # the space's prior: the starting configuration
    assert best["train"]["schedule"][-1]["until"] == FRAMES
    final = yaml.safe_load((sp.root / "pbt" / "final_policy.yaml").read_text())
    assert final["score"] == pytest.approx(yaml.safe_load(
        (sp.root / "pbt" / "lineage.yaml").read_text())["winner"]["score"], abs=0.05)
    assert int(final["seed"]) not in {int(s) for s in rows["baseline"]["seeds"].split(";")}
    for name in ("policy.onnx", "policy.ts.pt"):  # the policy, exported (the stand-in copies it)
        assert (sp.root / "pbt" / name).read_text() == (sp.root / "pbt" / "model.pt").read_text()


def test_analyze_shows_the_members_and_refuses_to_compare_segments(stage, monkeypatch, capsys):
    from automl.analysis.cli import main as analyze

    sp, _ = stage
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(sp.root.parent.parent))
    assert analyze(["--study", sp.name]) == 0
    out = capsys.readouterr().out
    winner = yaml.safe_load((sp.root / "pbt" / "lineage.yaml").read_text())["winner"]
    assert f"winner: member {winner['member']} (trial {winner['trial']})" in out
    assert analyze(["--study", sp.name, "--compare", "1", "2"]) == 2
    assert "not configurations to compare" in capsys.readouterr().err


# ------------------------------------------------------------------------------ bad input
BAD = [
    (["--population", "1"], "--population"),
    (["--pbt-fraction", "0.6"], "--pbt-fraction"),
    (["--pbt-fraction", "0"], "--pbt-fraction"),
    (["--pbt-interval", "5000"], "under one evaluation point"),
    (["--pbt-factors", "0.9,1.2"], "--pbt-factors"),
    (["--pbt-resample", "1.5"], "--pbt-resample"),
    (["--pbt-init", "random"], "--pbt-init"),
]


@pytest.mark.parametrize(("flags", "named"), BAD)
def test_bad_pbt_flags_exit_2_before_anything_is_written(tmp_path, monkeypatch, capsys, flags, named):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    argv = pbt_argv(tmp_path, "bad")
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv[argv.index("--search-method"):argv.index("--search-method")] = [flag, value]
    assert run_search(argv) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "log" / "automl" / "bad").exists()


def test_pbt_flags_without_pbt_and_a_space_with_nothing_mutable_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    argv = pbt_argv(tmp_path, "bad")
    argv[argv.index("pbt")] = "random"
    assert run_search(argv) == 2
    assert "only applies to --search-method pbt" in capsys.readouterr().err
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text("search_space_id: fixed\nppo_params:\n"
                     "  rollouts: {type: choice, values: [24, 48]}\n")
    argv = pbt_argv(tmp_path, "fixed")
    argv[argv.index("--space") + 1] = str(fixed)
    assert run_search(argv) == 2
    assert "fixed per member" in capsys.readouterr().err
    assert not (tmp_path / "log" / "automl" / "fixed").exists()


# ------------------------------------------------------------------------- kill -9, --resume
def test_kill_9_mid_generation_then_resume_loses_no_member_and_runs_no_segment_twice(
        tmp_path, monkeypatch):
    log = tmp_path / "log"
    sp = StudyPaths(log / "automl" / "killed_pbt")
    proc = start_orchestrator(pbt_argv(tmp_path, "killed_pbt", seconds=0.15), log, tmp_path)
    try:
        def second_generation_running() -> bool:
            return sp.journal.exists() and any(
                t.state == TrialState.RUNNING and t.user_attrs.get(records.GENERATION) == 1
                for t in segments(sp))
        wait_for(second_generation_running, timeout=START_TIMEOUT_S,
                 what="a segment of generation 1 to run")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_leftovers(str(sp.root))
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(log))
    argv = pbt_argv(tmp_path, "killed_pbt")
    argv[argv.index("--space"):argv.index("--space") + 2] = []  # the study's own copy
    assert run_search([*argv, "--resume"]) == 0
    assert_population_complete(sp)
    retried = [t for t in segments(sp) if t.user_attrs.get(records.RETRY_OF) is not None]
    assert retried, "the killed orchestrator's running segments ran again"
    for t in retried:
        first = next(x for x in segments(sp) if x.number == t.user_attrs[records.RETRY_OF])
        for key in (records.MEMBER, records.GENERATION, records.PARENT, records.FRAMES_START):
            assert t.user_attrs[key] == first.user_attrs[key]
        # Killed between the ask and its suggests (or between two of them), a segment has only
        # some of its values: its retry runs all of its queued ones, none sampled afresh.
        queued = first.system_attrs.get("fixed_params") or {}
        assert queued and t.params == {**queued, **first.params} == queued


# ----------------------------------------------------------------- PostgreSQL, two orchestrators
def test_two_orchestrators_with_their_own_folders_train_one_population_on_postgresql(
        postgres, s3_bucket, tmp_path):
    """Two machines, each with its own study folder, one PostgreSQL study and one S3 bucket as the
    artifact store: every segment's parent state travels through the bucket, none fails.

    Ordered by events, not seconds: the first machine trains generation 0 alone, then segments of
    generation 1 (on either machine) hold their last point until the second machine has taken
    one; every segment of generation 1 continues a state of the first machine, so the one the
    second takes crossed machines."""
    url = postgres.create_database("pbt_two")
    folders = [tmp_path / "a", tmp_path / "b"]
    gate = tmp_path / "second_machine_took_a_segment"
    seed = 3  # the plan's segment seeds (PbtPlan.seed_of) name generation 1's segments
    plan = PbtPlan(population=POPULATION, frames=FRAMES, interval=INTERVAL, fraction=0.25,
                   factors=(1.1, 1.5), resample_probability=0.25, init="start", floor=0.0, seed=seed)
    hold = [{"when": {"train.seed": plan.seed_of(m, 1)}, "hold_until": str(gate)}
            for m in range(POPULATION)]
    argv = [*pbt_argv(tmp_path, "pbt_two", seconds=0.05, workers=1, rules=hold,
                      flags=("--seed", str(seed))),
            "--storage", url, "--artifact-store", s3_bucket.url]
    procs = [start_orchestrator(argv, folders[0], tmp_path)]

    def in_generation(generation: int, state: TrialState) -> int:
        return sum(1 for t in optuna.load_study(study_name="pbt_two", storage=url).get_trials()
                   if records.in_pbt(t) and t.state == state
                   and t.user_attrs[records.GENERATION] == generation)

    try:
        wait_for(lambda: "pbt_two" in optuna.get_all_study_names(url), timeout=START_TIMEOUT_S,
                 what="the first orchestrator to create the study")
        wait_for(lambda: in_generation(0, TrialState.COMPLETE) == POPULATION, timeout=180,
                 what="the first orchestrator to train generation 0")
        procs.append(start_orchestrator([*argv, "--resume"], folders[1], tmp_path))
        wait_for(lambda: in_generation(1, TrialState.RUNNING) == 2, timeout=START_TIMEOUT_S,
                 what="a segment of generation 1 running on each machine")
        gate.touch()
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        gate.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for folder in folders:
            kill_leftovers(str(folder))
    assert codes == [0, 0], (tmp_path / "stderr.txt").read_text()[-3000:]
    study = optuna.load_study(study_name="pbt_two", storage=url)
    assert study.user_attrs[checkpoints.STORE_ATTR] == s3_bucket.url
    ran = [t for t in study.get_trials() if records.in_pbt(t)]
    expected = {(m, g) for m in range(POPULATION) for g in range(FRAMES // INTERVAL)}
    done = Counter((t.user_attrs[records.MEMBER], t.user_attrs[records.GENERATION]) for t in ran
                   if t.state == TrialState.COMPLETE)
    assert set(done) == expected and set(done.values()) == {1}
    assert not [t for t in ran if t.state != TrialState.COMPLETE]  # no failed segment
    owners = {t.user_attrs[records.OWNER][records.PID] for t in ran}
    assert len(owners) == 2, "both orchestrators trained segments"
    assert not [t for t in study.get_trials() if t.state == TrialState.FAIL
                and t.user_attrs.get(records.PHASE) != records.PHASE_UNUSED]
    # Where a segment ran on the other machine than its parent, the parent's state came from the
    # store into the segment's own run folder; each machine's folder holds only its own runs.
    paths = [StudyPaths(f / "automl" / "pbt_two") for f in folders]
    where = {t.number: next(i for i, sp in enumerate(paths) if sp.trial_run(t.number).summary.exists())
             for t in ran}
    crossed = [t for t in ran if t.user_attrs[records.PARENT] != NO_PARENT
               and where[t.user_attrs[records.PARENT]] != where[t.number]]
    assert crossed, "no segment continued a state from the other machine"
    for t in crossed:
        fetched = paths[where[t.number]].trial_run(t.number).root / checkpoints.PARENT_STATE
        assert fetched.exists()
        assert f"train.resume_from={fetched}" in json.loads(
            paths[where[t.number]].trial_config(t.number).read_text())["overrides"]
    # Retention: the store keeps the winner's lineage and each member's last two states.
    view = PbtView.read(paths[0], study)
    assert view is not None and view.winner() is not None and math.isfinite(view.winner().score)
    keep = checkpoints.kept(view.population, winner=view.winner())
    stored = s3_bucket.keys()
    states = {t.number: t.user_attrs[checkpoints.STATE_ARTIFACT] for t in ran}
    assert {n for n, a in states.items() if a in stored} == keep
    assert len(keep) < len(ran)
    # The winner's policy reached both machines, and each evaluated it on fresh episodes.
    for sp in paths:
        assert sp.trial_run(view.winner().number).model.exists()
        final = yaml.safe_load((sp.root / "pbt" / "final_policy.yaml").read_text())
        assert final["trial"] == view.winner().number


def test_an_s3_store_it_cannot_use_exits_2_before_the_study_exists(s3_bucket, tmp_path, monkeypatch,
                                                                   capsys):
    """A mistyped bucket is refused before the study is created: the same command, corrected,
    starts the study (it is not refused as one that exists), and no joiner is sent to the typo."""
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    argv = [*pbt_argv(tmp_path, "pbt_typo"), "--artifact-store", s3_bucket.url + "-typo"]
    assert run_search(argv) == 2
    err = capsys.readouterr().err
    assert "--artifact-store" in err and "cannot be written to and removed" in err
    assert not StudyPaths.for_study("pbt_typo").root.exists()


def test_resuming_a_population_with_another_search_method_exits_2(stage, monkeypatch, capsys):
    sp, _ = stage
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(sp.root.parent.parent))
    before = sp.journal.stat().st_size
    argv = pbt_argv(sp.root.parent.parent, "pbt_stage")
    argv[argv.index("pbt")] = "random"
    for flag in ("--population", "--pbt-interval"):
        argv[argv.index(flag):argv.index(flag) + 2] = []
    assert run_search([*argv, "--resume"]) == 2
    assert "population-based training study" in capsys.readouterr().err
    assert sp.journal.stat().st_size == before


def test_a_winner_of_an_earlier_generation_replays_the_frames_it_trained(stage, tmp_path):
    """A stage whose budget ended the population early: the winner comes from the last complete
    generation, and its replay (and the start next to it) train the frames its lineage did."""
    import shutil

    from automl.config import load_run_config
    from automl.run import schedule
    from automl.stages.context import StageLog, Stages
    from automl.stages.pbt import configuration_records

    sp, _ = stage
    copy = StudyPaths(tmp_path / sp.name)
    shutil.copytree(sp.root, copy.root)
    study = optuna.load_study(study_name=sp.name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(copy.journal))))
    view = PbtView.read(copy, study)
    earlier = max(view.population.results[1].values(), key=lambda s: s.score)
    st = Stages(paths=copy, study=study, log=StageLog(), resources=None)  # type: ignore[arg-type]
    chosen, start = configuration_records(st, view, earlier)
    end = earlier.frames_end
    assert end < FRAMES
    assert chosen["config_values"]["train.frames"] == start["config_values"]["train.frames"] == end
    cfg = load_run_config([o for o in chosen["base_overrides"]])
    assert cfg.train.frames == end and schedule.steps(cfg)[-1][0] == end  # it runs


def test_a_generation_queued_in_part_is_completed_and_interrupted_segments_run_again():
    """The population as the study holds it: a crash while a generation was being queued leaves
    it due; a segment whose orchestrator stopped is an orphan until it is queued again."""
    from automl.search.pbt.decide import first_generation
    from automl.search.study.recovery import enqueue_retry

    space = load_space(SPACES_DIR / "pbt.yaml", reward_terms=["torques"])
    plan = PbtPlan(population=4, frames=FRAMES, interval=INTERVAL, fraction=0.25, factors=(1.1, 1.5),
                   resample_probability=0.25, init="start", floor=0.0, seed=0)
    specs = first_generation(plan, space, space.from_optuna(space.prior_params()),
                             allowed=lambda v: True, update_frames=lambda v: 1)
    study = optuna.create_study()
    for spec in specs[:2]:
        study.enqueue_trial(*spec.queued(space))
    assert Population.of(study, plan, space).due() == [(2, 0), (3, 0)]  # two members still missing
    for spec in specs[2:]:
        study.enqueue_trial(*spec.queued(space))
    population = Population.of(study, plan, space)
    assert population.due() == [] and not population.orphans()
    trial = study.ask()  # taken, then its orchestrator stops it
    trial.set_user_attr(records.STOP_REASON, reasons.BUDGET)
    trial.set_user_attr(records.INTERRUPTED, True)
    study.tell(trial, state=TrialState.PRUNED)
    (orphan,) = Population.of(study, plan, space).orphans()
    assert orphan.number == trial.number
    frozen = study.trials[trial.number]
    assert enqueue_retry(study, frozen, frozen.params or frozen.system_attrs["fixed_params"])
    population = Population.of(study, plan, space)
    assert not population.orphans() and population.running_or_queued() == 4
    retry = [t for t in study.trials if t.user_attrs.get(records.RETRY_OF) == trial.number]
    assert retry[0].user_attrs[records.MEMBER] == frozen.user_attrs[records.MEMBER]
    assert records.in_pbt(retry[0])


def test_a_segment_whose_parent_state_is_gone_is_an_error_and_the_population_stops(
        tmp_path, monkeypatch, capsys):
    """Every parent's state is lost from this folder and the store (as a store that dropped its
    files): each next segment is recorded as an error naming the missing state, never started
    from scratch in silence, and the population stops on failures instead of retrying until the
    budget runs out."""
    monkeypatch.setenv(paths.LOG_ROOT_ENV, str(tmp_path / "log"))
    skip_reports(monkeypatch)

    def lost(self, parent, run):
        raise checkpoints.CheckpointMissing(f"segment {parent.number}'s state file is not in the "
                                            "store")

    monkeypatch.setattr(checkpoints.Checkpoints, "state_of", lost)
    behaviour = write_behaviour(tmp_path, "plain", seconds_per_point=0.01, horizon=FRAMES,
                                score=LR_SCORE)
    argv = search_argv(study="stateless", space="pbt.yaml", behaviour=behaviour, hp_trials=8,
                       workers=2, budget_hours=0.05,
                       flags=["--search-method", "pbt", "--population", "2",
                              "--pbt-interval", str(INTERVAL)])
    argv[argv.index("train.frames=100000")] = f"train.frames={FRAMES}"
    started = time.monotonic()
    assert run_search(argv) == 1
    assert time.monotonic() - started < 60
    out = capsys.readouterr().out
    sp = StudyPaths.for_study("stateless")
    table = rows(sp)
    errors = [r for r in table if r["stop_reason"] == reasons.ERROR]
    assert sum(r["stop_reason"] == "completed" for r in table) == 2  # generation 0, from scratch
    assert errors and all("its parent's state is missing" in r["error_tail"] for r in errors)
    assert all(r["frames"] == "0" for r in errors)  # never started
    assert re.search(r"segment \d+ cannot start: segment \d+'s state file is not in the store", out)
