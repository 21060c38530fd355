"""A fork server for trials: one process imports torch, skrl, Hydra and the trainer once, then forks
a fresh process per trial, so a trial starts in a fraction of a second instead of a cold Python
start. Isolation is kept: every trial is still its own process (own memory, own crash).

Protocol (JSON lines): the orchestrator writes {"argv": [...], "env": {...}, "cwd": ..., "stderr":
path} on the server's stdin; the server answers {"pid": N} at once and {"exit": N, "code": C} when
trial N ends (C is negative for a signal, as with subprocess). The server never touches CUDA, so
each forked trial initialises its own CUDA context on the GPU its CUDA_VISIBLE_DEVICES names: with
Isaac Lab it initialises Warp only where no GPU is visible, and its first message, {"ready": true,
...}, says whether Warp's runtime or torch's CUDA is initialised (`device_state`).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

CLOSE_GRACE_S = 5.0
"""Seconds the server has to exit by itself once its stdin closes, before it is killed."""
PRELOAD = ("torch", "torch._dynamo", "skrl.agents.torch.ppo", "skrl.memories.torch",
           "skrl.models.torch", "skrl.resources.preprocessors.torch", "gymnasium", "hydra",
           "omegaconf", "tensorboard.summary.writer.event_file_writer", "automl.run.train",
           "automl.run.train_one", "automl.run.evaluate", "automl.envs.navigation", "automl.envs.gym_adapter",
           "automl.run.models")
ISAACLAB_FLAG = "--isaaclab"
"""Server argument: also import Isaac Lab (its task registry, Newton, Warp), for Isaac Lab trials."""


def _preload_isaaclab() -> None:
    """Isaac Lab reads its asset root at import, so the root is set first (as each trial sets it).
    Warp is initialised here only where no GPU is visible: on a GPU machine `warp.init()` initialises
    the CUDA driver, and a process forked after that cannot use CUDA (nor would the trial's own
    CUDA_VISIBLE_DEVICES, set after the fork, choose its GPU). Each trial initialises Warp itself
    there, after its device is chosen."""
    from automl.envs.isaaclab_assets import use_asset_root
    from automl.search.trials.gpus import visible_gpus

    use_asset_root()
    import isaaclab_newton.physics  # noqa: F401
    import isaaclab_tasks  # noqa: F401
    import warp

    if not visible_gpus():
        warp.init()  # CPU only: safe to fork after (a forked trial builds and steps its task)


def device_state() -> dict[str, bool]:
    """Whether this process has initialised Warp's runtime or torch's CUDA (the fork server reports
    it when ready: neither may be, where a GPU is visible, before a trial chose its device)."""
    contexts = [sys.modules.get(name) for name in ("warp._src.context", "warp.context")]  # 1.17, older
    torch = sys.modules.get("torch")
    return {"warp_initialised": any(getattr(c, "runtime", None) is not None for c in contexts),
            "torch_cuda_initialised": bool(torch is not None and torch.cuda.is_initialized())}


def _prctl_death_signal() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _child(request: dict[str, Any]) -> None:
    """In the forked trial: become a fresh session, take the request's stdio, env and argv, run."""
    code = 1
    try:
        os.setsid()
        _prctl_death_signal()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = list(request["argv"])
        from automl.run.train_one import run

        run()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the trial's crash, reported like a normal process's
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


class LineReader:
    """JSON lines from a raw file descriptor, with no hidden buffering (select() sees every byte)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer, self.closed = fd, b"", False

    def read(self, timeout: float) -> list[dict[str, Any]]:
        """Messages available within `timeout` seconds (0: only what is already there)."""
        import select

        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            chunk = os.read(self.fd, 65536)
            self.closed = not chunk
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def serve() -> None:
    """Preload, announce readiness, then fork one trial per request until stdin closes."""
    _prctl_death_signal()
    # Ctrl-C in a terminal reaches the whole foreground process group; the server must outlive it
    # so the orchestrator can still collect its trials' exit codes. It stops when stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol keeps the original stdout; anything a preloaded library prints (Warp, Isaac
    # Lab) goes to stderr instead of corrupting it.
    protocol = os.dup(1)
    os.dup2(2, 1)
    from automl.run import import_tensorboard_without_s3

    import_tensorboard_without_s3()
    for module in PRELOAD:
        __import__(module)
    if ISAACLAB_FLAG in sys.argv[1:]:
        _preload_isaaclab()
    os.write(protocol, (json.dumps({"ready": True, **device_state()}) + "\n").encode())
    requests = LineReader(0)
    children: set[int] = set()
    while not requests.closed:
        for request in requests.read(timeout=0.02):
            pid = os.fork()
            if pid == 0:
                os.close(protocol)
                _child(request)
            children.add(pid)
            os.write(protocol, (json.dumps({"pid": pid}) + "\n").encode())
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                os.write(protocol, (json.dumps({"exit": pid, "code": _exit_code(status)}) + "\n").encode())


class ForkServer:
    """The orchestrator's side: start the server, spawn trials, collect their exit codes."""

    def __init__(self, python: str = sys.executable, env: dict[str, str] | None = None, *,
                 isaaclab: bool = False) -> None:
        extra = [ISAACLAB_FLAG] if isaaclab else []
        self.process = subprocess.Popen(
            [python, "-P", "-m", "automl.search.trials.forkserver", *extra], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env, bufsize=0, preexec_fn=_prctl_death_signal)  # noqa: PLW1509
        assert self.process.stdout is not None
        self.reader = LineReader(self.process.stdout.fileno())
        self.exits: dict[int, int] = {}
        self.ready = False
        self.device_state: dict[str, bool] = {}
        """The server's `device_state()` when it became ready."""

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Block until the server has imported everything (done once per search)."""
        end = time.monotonic() + timeout
        while not self.ready:
            if self.reader.closed or time.monotonic() > end or self.process.poll() is not None:
                raise RuntimeError("the fork server did not start; run with --no-fork-server")
            for message in self.reader.read(timeout=0.2):
                if message.get("ready"):
                    self.ready = True
                    self.device_state = {k: v for k, v in message.items() if k != "ready"}

    def spawn(self, *, argv: list[str], env: dict[str, str], cwd: str, stderr: str) -> int:
        """Fork one trial running train_one with this argv and env; returns its pid."""
        assert self.process.stdin is not None
        self.wait_ready()
        request = {"argv": argv, "env": env, "cwd": cwd, "stderr": stderr}
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        while True:
            if self.reader.closed or self.process.poll() is not None:
                raise RuntimeError("the fork server died; run with --no-fork-server")
            pid = None
            for message in self.reader.read(timeout=1.0):
                if "pid" in message:
                    pid = int(message["pid"])
                else:
                    self.exits[int(message["exit"])] = int(message["code"])
            if pid is not None:
                return pid

    def alive(self) -> bool:
        """Whether the server still runs and talks."""
        return self.process.poll() is None and not self.reader.closed

    def pump(self, timeout: float = 0.0) -> None:
        """Collect exit messages: those already sent, or (timeout > 0) wait up to `timeout`
        seconds for the next one, so a caller that sleeps between polls wakes when a trial ends."""
        end = time.monotonic() + timeout
        while True:
            ended = False
            for message in self.reader.read(timeout=max(0.0, end - time.monotonic())):
                if "exit" in message:
                    self.exits[int(message["exit"])] = int(message["code"])
                    ended = True
            if ended or self.reader.closed or time.monotonic() >= end:
                return

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let the server exit (its stdin closes), killing it after CLOSE_GRACE_S."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=CLOSE_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()  # reaped: no zombie left behind


def pid_exists(pid: int) -> bool:
    """Whether a process of that id exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ForkedProcess:
    """A trial forked by the server, with the part of subprocess.Popen's interface we use."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server, self.pid = server, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once the server reported it; -SIGTERM when server and trial are both gone; else None."""
        if self.returncode is None:
            self.server.pump()
            self.returncode = self.server.exits.pop(self.pid, None)
        if self.returncode is None and not self.server.alive() and not pid_exists(self.pid):
            # The server died, and with it the exit status: the trial got the SIGTERM of its
            # PR_SET_PDEATHSIG (or was killed) and is gone.
            self.returncode = -signal.SIGTERM
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Poll every 20 ms until the trial exits and return its code; TimeoutExpired past `timeout` s."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode


if __name__ == "__main__":
    serve()
