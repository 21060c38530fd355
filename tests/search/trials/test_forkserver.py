"""The fork server under the real trial worker: Ctrl-C in a terminal (SIGINT to the whole process
group) stops the search cleanly, and a dead server does not hang the orchestrator."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from search_harness import REPO, start_orchestrator, wait_for

from automl.search.trials import forkserver
from automl.search.trials.forkserver import ForkedProcess, ForkServer
from automl.search.trials.launcher import Slot, trial_env


def _descendants(root: int) -> set[int]:
    """Live (not zombie) processes below `root`: the fork server and the trials it forked."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if (Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]) != "Z":
                alive.add(pid)
        except (OSError, IndexError):
            continue
    return alive


@pytest.mark.slow
def test_ctrl_c_stops_a_real_search_with_the_fork_server_and_leaves_nothing(tmp_path):
    log_root = tmp_path / "log"
    study = f"ctrlc_{os.getpid()}"
    proc = start_orchestrator([
        "--mode", "search", "--quiet", "--budget-hours", "1", "--hp-trials", "2", "--workers", "2",
        "--space", str(REPO / "templates" / "cartpole.yaml"), "--study-name", study,
        "env=cartpole", "train.frames=2000000", "train.eval_frequency=1000", "env.num_envs=8",
        "ppo.mini_batches=2"], log_root, tmp_path)
    trial_log = log_root / "automl" / study / "trials" / "trial_0000" / "stdout.log"
    try:
        wait_for(lambda: trial_log.exists() and "frames" in trial_log.read_text(), timeout=180,
                 what="the first real trial to train")
        below = _descendants(proc.pid)
        assert len(below) >= 2  # the fork server and at least one trial
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = (tmp_path / "stderr.txt").read_text()
    assert code == 1, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert f"--resume --study-name {study} --budget-hours" in err
    wait_for(lambda: not _alive(below), timeout=10, what="the fork server and its trials to exit")


def test_a_dead_server_does_not_hang_its_trials_handles(tmp_path):
    server = ForkServer(env=trial_env(Slot(index=0, threads=1)))
    try:
        server.wait_ready()
        pid = server.spawn(argv=["train_one.py", "env=cartpole", "train.frames=100000000",
                                 f"run_dir={tmp_path / 'run'}", "train.quiet=true"],
                           env=trial_env(Slot(index=0, threads=1)), cwd=str(REPO),
                           stderr=str(tmp_path / "stderr.log"))
        handle = ForkedProcess(server, pid)
        assert handle.poll() is None
        server.process.kill()  # the server dies: its trial hears of it (PR_SET_PDEATHSIG) and ends
        server.process.wait()
        start = time.monotonic()
        code = handle.wait(timeout=30)
        assert time.monotonic() - start < 30
        assert code != 0
        assert not server.alive()
    finally:
        if server.process.poll() is None:
            server.process.kill()


def test_the_server_ignores_ctrl_c_and_a_trials_end_wakes_its_pump(tmp_path, monkeypatch):
    # Its own exit when stdin closes is under test, not its speed: a loaded machine may take
    # longer than the usual grace to unload torch.
    monkeypatch.setattr(forkserver, "CLOSE_GRACE_S", 120.0)
    server = ForkServer(env=trial_env(Slot(index=0, threads=1)))
    try:
        server.wait_ready()
        server.process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert server.alive()
        pid = server.spawn(argv=["train_one.py", "env=cartpole", "train.frames=16", "env.num_envs=8",
                                 "train.eval_frequency=8", f"run_dir={tmp_path / 'run'}",
                                 "train.quiet=true"],
                           env=trial_env(Slot(index=0, threads=1)), cwd=str(REPO),
                           stderr=str(tmp_path / "stderr.log"))
        # The search loop sleeps in pump(timeout) between passes; a trial's end must wake it.
        start = time.monotonic()
        while pid not in server.exits and time.monotonic() - start < 120:
            server.pump(timeout=600)
        assert server.exits.get(pid) == 0, (tmp_path / "stderr.log").read_text()
        assert time.monotonic() - start < 120  # woken by the exit, not by the 600 s timeout
        server.pump(timeout=0)  # nothing more to collect: returns at once
        assert ForkedProcess(server, pid).wait(timeout=1) == 0
    finally:
        server.close()
    assert server.process.returncode == 0  # it stopped when its stdin closed


def test_a_server_that_sees_a_gpu_initialises_no_warp_runtime_nor_cuda_before_a_trial_forks():
    # On a GPU machine warp.init() initialises the CUDA driver, and a trial forked after it could
    # not use CUDA (nor choose its GPU by CUDA_VISIBLE_DEVICES). Proved on a CPU by telling the
    # server a GPU is visible: it must leave Warp uninitialised (each trial initialises it).
    env = {**trial_env(Slot(index=0, threads=1)), "CUDA_VISIBLE_DEVICES": "0"}
    with ForkServer(env=env, isaaclab=True) as server:
        server.wait_ready()
        assert server.device_state == {"warp_initialised": False, "torch_cuda_initialised": False}
