"""state.pt and train.resume_from: the whole training state is saved and loaded exactly, the next
update after a resume is the one an uninterrupted run makes, a resumed run counts its frames on
from the state's, and a state that does not fit is bad input (exit 2, one message).

Continuation through train_one cannot be bit-identical to an uninterrupted run: the resumed run
builds its env afresh, so its episodes restart. The in-process test below therefore hands the
resumed agent a copy of the uninterrupted run's env, to show that nothing the agent needs for its
next update is missing from the state.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from train_harness import train_one, train_one_here

from automl import tags
from automl.config import load_run_config
from automl.errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError
from automl.paths import RunPaths
from automl.run import state as training_state
from automl.run import train as train_module
from automl.run.train import build_agent, collect_step, next_eval_point, open_run, open_window
from automl.schema import RunConfig
from automl.search.trials.tb_reader import read_scalars

# 8 CartPoles x 24 rollouts (conf/ppo/default.yaml): one PPO update per 192 frames, in 2
# mini-batches of 96 samples, 5 epochs: 10 Adam steps per update.
ENVS, ROLLOUTS, ADAM_STEPS_PER_UPDATE = 8, 24, 10
UPDATE = ENVS * ROLLOUTS
TINY = ["env=cartpole", f"env.num_envs={ENVS}", "ppo.mini_batches=2", "train.threads=1",
        "train.quiet=true", "train.eval_frequency=384"]
# Segment A ends mid-rollout, off the evaluation grid: 125 steps = 5 updates and 5 steps dropped.
A_FRAMES, B_FRAMES, B_LEARNING_RATE = 1000, 1536, 1.0e-4


def explain(process: subprocess.CompletedProcess[str]) -> str:
    return f"exit {process.returncode}\nstdout:\n{process.stdout}\nstderr:\n{process.stderr}"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of nested state_dicts, by dotted path (tensors and plain values alike)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def agent_state(agent: Any) -> dict[str, Any]:
    """What the agent holds that its next update reads, read from the agent itself."""
    return flatten({
        "policy": agent.policy.state_dict(), "value": agent.value.state_dict(),
        "optimizer": agent.optimizer.state_dict()["state"],
        "observation_preprocessor": agent.checkpoint_modules["observation_preprocessor"].state_dict(),
    })


def saved_state(state: training_state.TrainingState) -> dict[str, Any]:
    return flatten({"policy": state.policy, "value": state.value,
                    "optimizer": state.optimizer["state"],
                    "observation_preprocessor": state.observation_preprocessor})


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    assert a.keys() == b.keys()
    return [key for key in a if not (torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor)
                                     else a[key] == b[key])]


# --------------------------------------------------------------------------------------------------
# In process: the agent, its env and the state


@dataclass
class Trainer:
    """A run's env and agent, driven update by update as train() drives them."""

    cfg: RunConfig
    env: Any
    weights: dict[str, float]
    agent: Any
    observations: torch.Tensor

    def updates(self, count: int) -> None:
        window = open_window(self.cfg, self.env)
        finite = torch.ones((), dtype=torch.bool)
        for step in range(count * self.cfg.ppo.rollouts):
            self.observations = collect_step(self.agent, self.env, self.weights, self.observations,
                                             step, 10**9, window, finite)
        assert bool(finite)

    def agent_like(self, root: Path) -> Any:
        """A fresh agent of the same config (fresh weights, optimizer and normalisers)."""
        return build_agent(self.cfg, self.env, RunPaths(root), 10**9)

    def fork(self, agent: Any) -> Trainer:
        """`agent` on a copy of this env, at the same point of the same episodes."""
        return Trainer(self.cfg, copy.deepcopy(self.env), self.weights, agent,
                       self.observations.clone())


@pytest.fixture
def trainer(tmp_path: Path) -> Iterator[Trainer]:
    cfg = load_run_config([*TINY, f"run_dir={tmp_path / 'a'}"])
    env, weights, log, _ = open_run(cfg, RunPaths(tmp_path / "a"))  # seeds torch from train.seed
    log.close()
    agent = build_agent(cfg, env, RunPaths(tmp_path / "a"), 10**9)
    yield Trainer(cfg, env, weights, agent, env.reset(seed=cfg.train.seed))
    env.close()


def save_after_one_update(trainer: Trainer, path: Path) -> training_state.TrainingState:
    trainer.updates(1)
    state = training_state.capture(trainer.agent, trainer.cfg, trainer.env,
                                   weights=trainer.weights, run_dir=path.parent, start=None,
                                   frames=UPDATE, updates=1, dropped_frames=0)
    training_state.save(state, path)
    assert not path.with_name(path.name + ".tmp").exists()
    return state


def test_a_loaded_state_is_exactly_the_saved_one(trainer: Trainer, tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_after_one_update(trainer, path)
    saved = training_state.read(str(path))
    fresh = trainer.agent_like(tmp_path / "b")
    assert not fresh.optimizer.state_dict()["state"]  # Adam has taken no step yet
    fresh_policy = flatten(fresh.policy.state_dict())
    assert differences(fresh_policy, flatten(saved.policy)) == list(fresh_policy)
    scaler = fresh.checkpoint_modules["observation_preprocessor"]
    assert float(scaler.current_count) != float(saved.observation_preprocessor["current_count"])

    training_state.load_into(fresh, saved, ppo=replace(trainer.cfg.ppo, learning_rate=2.5e-4))

    after = agent_state(fresh)
    assert differences(after, saved_state(saved)) == []
    assert differences(after, agent_state(trainer.agent)) == []
    steps = [s["step"] for s in fresh.optimizer.state_dict()["state"].values()]
    assert steps and all(float(step) == ADAM_STEPS_PER_UPDATE for step in steps)
    assert [g["lr"] for g in fresh.optimizer.param_groups] == [2.5e-4]
    # The running mean, variance and count of the observation normaliser, as trained.
    assert set(saved.observation_preprocessor) == {"running_mean", "running_variance",
                                                   "current_count"}
    assert float(scaler.current_count) == UPDATE + 1  # skrl's count starts at 1
    assert saved.value_preprocessor is None  # normalize_values is off for CartPole


def test_the_update_after_a_resume_is_the_uninterrupted_runs(trainer: Trainer,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_after_one_update(trainer, path)
    resumed = trainer.fork(trainer.agent_like(tmp_path / "b"))
    training_state.load_into(resumed.agent, training_state.read(str(path)),
                             ppo=trainer.cfg.ppo)
    from_scratch = trainer.fork(trainer.agent_like(tmp_path / "c"))
    weights_only = trainer.fork(trainer.agent_like(tmp_path / "d"))
    weights_only.agent.policy.load_state_dict(trainer.agent.policy.state_dict())
    weights_only.agent.value.load_state_dict(trainer.agent.value.state_dict())
    weights_only.agent.checkpoint_modules["observation_preprocessor"].load_state_dict(
        trainer.agent.checkpoint_modules["observation_preprocessor"].state_dict())

    # Same episodes, same sampling noise: only what the agent carries can make a difference.
    for run in (trainer, resumed, from_scratch, weights_only):
        torch.manual_seed(7)
        run.updates(1)

    uninterrupted = agent_state(trainer.agent)
    assert differences(agent_state(resumed.agent), uninterrupted) == []
    # The comparison can fail: a fresh agent ends elsewhere, and so do the weights without Adam's
    # moments (the optimizer state is part of what makes the update the same).
    assert differences(flatten(from_scratch.agent.policy.state_dict()),
                       flatten(trainer.agent.policy.state_dict()))
    assert differences(flatten(weights_only.agent.policy.state_dict()),
                       flatten(trainer.agent.policy.state_dict()))


def test_a_state_that_does_not_fit_is_bad_input(trainer: Trainer, tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    state = save_after_one_update(trainer, path)
    state.shape["observation size"] = 5
    other = tmp_path / "other.pt"
    training_state.save(state, other)
    with pytest.raises(ConfigError) as caught:
        training_state.check_fits(training_state.read(str(other)), trainer.cfg, trainer.env,
                                  str(other))
    message = caught.value.message
    assert "`train.resume_from`" in message and str(other) in message
    assert "observation size = 5" in message and "observation size = 4" in message


# --------------------------------------------------------------------------------------------------
# train(): bad input before anything is built or written


@pytest.fixture
def no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_module, "_install_stop_handlers", lambda: {"stop": False})


@pytest.mark.parametrize("case, key, says", [
    ("missing", "train.resume_from", ["there is no such file"]),
    ("not torch", "train.resume_from", ["not a file written by torch.save"]),
    ("not a state", "train.resume_from", ["not a training state of format 1"]),
    ("frames", "train.frames", ["`train.frames` is 192", "already trained 192 frames",
                                "train.frames=576"]),
])
def test_train_refuses_a_state_it_cannot_continue(case: str, key: str, says: list[str],
                                                  trainer: Trainer, tmp_path: Path,
                                                  no_signal_handlers: None) -> None:
    path = tmp_path / "state.pt"
    save_after_one_update(trainer, path)
    if case == "missing":
        path = tmp_path / "nowhere" / "state.pt"
    elif case == "not torch":
        path.write_text("frames: 1000\n")
    elif case == "not a state":
        torch.save({"policy": {}}, path)
    frames = UPDATE if case == "frames" else 2 * UPDATE
    run = RunPaths(tmp_path / "resumed")
    cfg = load_run_config([*TINY, f"train.resume_from={path}", f"train.frames={frames}",
                           f"run_dir={run.root}"])
    with pytest.raises(ConfigError) as caught:
        train_module.train(cfg, run)
    assert caught.value.key == key
    assert str(path) in caught.value.message and "Fix:" in caught.value.message
    for text in says:
        assert text in caught.value.message
    assert not run.root.exists()


def test_next_eval_point_lies_on_the_grid() -> None:
    assert [next_eval_point(f, 384) for f in (0, 383, 384, 1000, 1151, 1152)] == \
        [384, 384, 768, 1152, 1152, 1536]


# --------------------------------------------------------------------------------------------------
# train_one: a segment, and a second one resumed from its state.pt


@dataclass
class Segment:
    root: Path
    process: subprocess.CompletedProcess[str]

    @property
    def files(self) -> RunPaths:
        return RunPaths(self.root)

    def state(self) -> dict[str, Any]:
        return torch.load(self.files.state, map_location="cpu", weights_only=True)

    def summary(self) -> dict[str, Any]:
        return json.loads(self.files.summary.read_text())

    def steps(self, tag: str) -> list[int]:
        return [step for step, _ in read_scalars(self.files.tb)[tag]]


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> tuple[Segment, Segment]:
    folder = tmp_path_factory.mktemp("segments")
    a_root, b_root = folder / "a", folder / "b"
    a = train_one([*TINY, "train.save_state=true", f"train.frames={A_FRAMES}", f"run_dir={a_root}"],
                  log_root=folder / "log")
    assert a.returncode == EXIT_OK, explain(a)
    b = train_one([*TINY, "train.save_state=true", f"train.resume_from={a_root / 'state.pt'}",
                   f"train.frames={B_FRAMES}", f"ppo.learning_rate={B_LEARNING_RATE}",
                   f"run_dir={b_root}"], log_root=folder / "log")
    assert b.returncode == EXIT_OK, explain(b)
    return Segment(a_root, a), Segment(b_root, b)


@pytest.mark.slow
def test_a_segment_saves_its_whole_state(segments: tuple[Segment, Segment]) -> None:
    a, _ = segments
    state = a.state()
    assert state["format"] == training_state.FORMAT
    # 125 steps of 8 envs: 5 updates, and the last 5 steps' unfinished rollout dropped.
    assert (state["frames"], state["updates"], state["dropped_frames"]) == (1000, 5, 5 * ENVS)
    assert state["shape"] == {
        "network.policy_hidden_layer_sizes": [256, 128, 64],
        "network.value_hidden_layer_sizes": [256, 128, 64], "network.activation": "elu",
        "network.shared": False,
        "ppo.normalize_observations": True, "ppo.normalize_values": False,
        "observation size": 4, "action space": "Discrete(2)"}
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {5 * ADAM_STEPS_PER_UPDATE}
    assert state["observation_preprocessor"]["current_count"] == 5 * UPDATE + 1
    [segment] = state["segments"]
    assert (segment["start_frames"], segment["end_frames"]) == (0, A_FRAMES)
    assert segment["run_dir"] == str(a.root) and segment["ppo"]["learning_rate"] == 3.0e-4
    assert segment["reward"] == {"scales": {"env_reward": 1.0}}
    assert segment["network"]["policy_hidden_layer_sizes"] == [256, 128, 64]


@pytest.mark.slow
def test_a_resumed_segment_counts_on_from_the_state(segments: tuple[Segment, Segment]) -> None:
    a, b = segments
    assert b.summary()["frames"] == B_FRAMES
    assert "resumed from" in b.files.stdout_log.read_text()
    # TensorBoard steps continue past the offset, on the grid of an uninterrupted run (multiples
    # of train.eval_frequency); segment A's last point is its end, as any run's is.
    for tag in (tags.EPISODES, tags.FRAMES_PER_SECOND):
        assert a.steps(tag) == [384, 768, A_FRAMES], tag
        assert b.steps(tag) == [1152, 1536], tag
    # skrl's losses stand at the points after an update: B's first comes at 1000 + 192 frames.
    assert b.steps("Loss / Policy loss") == [1536]
    state = b.state()
    # 67 steps: 2 updates, 19 steps dropped; Adam's step counts go on from A's.
    assert (state["frames"], state["updates"], state["dropped_frames"]) == (B_FRAMES, 7, 19 * ENVS)
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == \
        {7 * ADAM_STEPS_PER_UPDATE}
    assert state["observation_preprocessor"]["current_count"] == 7 * UPDATE + 1
    # The new learning rate is the one in the optimizer, and each segment's is on record.
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [B_LEARNING_RATE]
    assert [(s["start_frames"], s["end_frames"], s["ppo"]["learning_rate"])
            for s in state["segments"]] == [(0, A_FRAMES, 3.0e-4), (A_FRAMES, B_FRAMES, 1.0e-4)]


@pytest.mark.slow
def test_a_network_that_does_not_fit_exits_2_and_overwrites_nothing(
        segments: tuple[Segment, Segment], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = segments
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in a.root.rglob("*") if p.is_file()}
    # Into segment A's own run dir: a refused resume must leave it as it was.
    code, out, err = train_one_here([*TINY, f"train.resume_from={a.files.state}", "train.frames=2000",
                                     "network.policy_hidden_layer_sizes=[64,64]", f"run_dir={a.root}"],
                                    log_root=tmp_path / "log", monkeypatch=monkeypatch, capsys=capsys)
    assert code == EXIT_BAD_INPUT, out + err
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("train_one: error:")]
    assert len(errors) == 1, err
    for text in ("`train.resume_from`", str(a.files.state), "network.policy_hidden_layer_sizes",
                 "[256,128,64]", "[64,64]", "fixed per member", "Fix:"):
        assert text in errors[0]
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in a.root.rglob("*") if p.is_file()}
    assert after == before


def test_a_resume_refits_the_critic_where_the_reward_changed_and_only_there(
        trainer: Trainer, tmp_path: Path) -> None:
    """train()'s resume step (`resume_agent`): the state goes in, and with ppo.value_refit_updates
    a changed weight starts the critic's refit (value-only updates), an unchanged one does not."""
    from automl.run import refit
    from automl.run.train import resume_agent

    state = save_after_one_update(trainer, tmp_path / "state.pt")
    cfg = replace(trainer.cfg, ppo=replace(trainer.cfg.ppo, value_refit_updates=2))
    out = io.StringIO()
    agent = trainer.agent_like(tmp_path / "same")
    assert resume_agent(agent, cfg, state, dict(trainer.weights), out) is refit.IDLE
    assert differences(agent_state(agent), agent_state(trainer.agent)) == []  # the state went in
    changed = {name: 2.0 * w for name, w in trainer.weights.items()}
    agent = trainer.agent_like(tmp_path / "changed")
    fit = resume_agent(agent, cfg, state, changed, out)
    assert isinstance(fit, refit.ValueRefit) and fit.active
    assert "fit the critic alone" in out.getvalue() and "reward.scales." in out.getvalue()
    assert resume_agent(trainer.agent_like(tmp_path / "off"), trainer.cfg, state, changed,
                        io.StringIO()) is refit.IDLE  # value_refit_updates 0: off
    fit.end()
