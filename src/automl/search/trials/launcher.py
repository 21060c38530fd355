"""Trial subprocesses: slots (CPU threads or GPU shares), launch, and termination that leaves no child.

Each trial runs in its own process session, so a signal reaches the trial and anything it started.
On Linux the trial also dies with the orchestrator (PR_SET_PDEATHSIG), so a `kill -9` of the
orchestrator leaves no trial behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from automl import paths
from automl.paths import RunPaths
from automl.search.trials.forkserver import ForkedProcess, ForkServer

TERMINATE_GRACE_S = 4.0
"""Seconds between SIGTERM and SIGKILL: a pruned trial is gone within 5 s of the decision."""


@dataclass(frozen=True)
class Slot:
    """One place a trial can run: a CPU thread share, or a share of one GPU."""

    index: int
    threads: int
    """torch CPU threads of the trial."""
    gpu: str | None = None
    """The trial's GPU: one entry of the user's CUDA_VISIBLE_DEVICES (an index, a GPU-... UUID or
    a MIG-... id), which becomes the trial's CUDA_VISIBLE_DEVICES; None on CPU."""
    gpu_share: float | None = None
    """The share of its GPU's memory the trial's torch allocations may take (1 / slots per GPU);
    None on CPU."""


def plan_slots(*, workers: int | None, use_gpu: bool, gpus: list[str], gpu_fraction: float,
               threads_per_trial: int, cpus: int) -> list[Slot]:
    """As many slots as fit (or `workers`): 1/gpu_fraction per GPU, else cpus // threads.

    GPU slots take the user's GPUs in the order given, `1/gpu_fraction` slots on each."""
    if use_gpu:
        per_gpu = max(1, round(1.0 / gpu_fraction))
        count = workers or len(gpus) * per_gpu
        threads = max(1, cpus // count)
        return [Slot(index=i, threads=threads, gpu=gpus[(i // per_gpu) % len(gpus)],
                     gpu_share=1.0 / per_gpu) for i in range(count)]
    count = workers or max(1, cpus // threads_per_trial)
    threads = threads_per_trial if workers is None else max(1, cpus // count)
    return [Slot(index=i, threads=threads) for i in range(count)]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the orchestrator dies (Linux only)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class TrialProcess:
    """A running trial subprocess and its run folder."""

    number: int
    run: RunPaths
    slot: Slot
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    kill_at: float | None = None
    """When SIGKILL follows the SIGTERM already sent."""

    def poll(self) -> int | None:
        """The exit code once gone (None while it runs); sends the due SIGKILL of a terminate."""
        code = self.process.poll()
        if code is None and self.kill_at is not None and time.monotonic() >= self.kill_at:
            self._signal(signal.SIGKILL)
            self.kill_at = None
        return code

    def terminate(self) -> None:
        """SIGTERM now, SIGKILL after TERMINATE_GRACE_S (driven by poll / wait_gone)."""
        if self.process.poll() is None and self.kill_at is None:
            self._signal(signal.SIGTERM)
            self.kill_at = time.monotonic() + TERMINATE_GRACE_S

    def wait_gone(self, timeout: float = TERMINATE_GRACE_S + 2.0) -> int:
        """Terminate and wait until the process (group) is gone; returns the exit code."""
        self.terminate()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            code = self.poll()
            if code is not None:
                self._signal(signal.SIGKILL)  # anything the trial started
                return code
            time.sleep(0.05)
        self._signal(signal.SIGKILL)
        return self.process.wait()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stderr_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the trial's stderr.log ("" when there is none)."""
        try:
            text = self.run.stderr_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def trial_env(slot: Slot) -> dict[str, str]:
    """Environment of a trial: its thread count, its GPU and share of that GPU's memory, this
    package on PYTHONPATH, and this orchestrator's project and log folders (absolute), so the
    trial composes and finds presets where the orchestrator does, whatever its working folder."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(slot.threads)
    if slot.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = slot.gpu
    if slot.gpu_share is not None:
        env[paths.GPU_SHARE_ENV] = repr(slot.gpu_share)
    else:
        env.pop(paths.GPU_SHARE_ENV, None)
    env[paths.PROJECT_ENV] = str(paths.repo_root())
    env[paths.LOG_ROOT_ENV] = str(paths.log_root())
    src = str(paths.package_parent())
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def launch(*, number: int, command: list[str], run: RunPaths, slot: Slot,
           forkserver: ForkServer | None = None) -> TrialProcess:
    """Start one trial; its stderr goes to run_dir/stderr.log (its stdout.log it writes itself).

    With a fork server, the trial is forked from it (the Python and its flags are dropped)."""
    run.root.mkdir(parents=True, exist_ok=True)
    if forkserver is not None and forkserver.alive():
        try:
            pid = forkserver.spawn(argv=_fork_argv(command), env=trial_env(slot),
                                   cwd=str(paths.work_dir()), stderr=str(run.stderr_log))
            return TrialProcess(number=number, run=run, slot=slot,
                                process=ForkedProcess(forkserver, pid))  # type: ignore[arg-type]
        except RuntimeError as err:  # the server died: this and later trials start cold
            print(f"automl: {err}; starting trials without it", file=sys.stderr)
    with run.stderr_log.open("ab") as stderr:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            env=trial_env(slot), cwd=paths.work_dir(), preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
    return TrialProcess(number=number, run=run, slot=slot, process=process)


def run_overrides(run_dir: Path, slot: Slot) -> list[str]:
    """Where and how a run happens (not part of its configuration): its folder, no console output,
    the slot's threads and GPU."""
    ours = [f"run_dir={run_dir}", "train.quiet=true", f"train.threads={slot.threads}"]
    if slot.gpu is not None:
        ours.append("env.device=cuda")
    return ours


def pause(seconds: float, forkserver: ForkServer | None) -> None:
    """Sleep between two polls of running trials; with a fork server, wake as soon as one of its
    trials ends, so its slot is refilled at once."""
    if forkserver is not None and forkserver.alive():
        forkserver.pump(timeout=seconds)
    else:
        time.sleep(seconds)


WORKER_MODULE = "automl.run.train_one"


def default_worker() -> list[str]:
    """The real trial worker: this Python running train_one's module (-P: the working folder,
    which may hold automl.py, stays off the import path)."""
    return [sys.executable, "-P", "-m", WORKER_MODULE]


def _fork_argv(command: list[str]) -> list[str]:
    """A forked trial's sys.argv: the worker's name and its overrides, without the interpreter
    and its flags (the fork server has imported the worker already)."""
    worker = default_worker()
    if command[: len(worker)] == worker:
        return ["train_one", *command[len(worker):]]
    return command[1:]
