"""The GPUs a run may use, read without importing torch or initialising CUDA (the fork server and
the orchestrator both ask before any trial has chosen its device)."""

from __future__ import annotations

import os
import subprocess


def visible_gpus() -> list[str]:
    """The GPUs the user gave, without importing torch: the entries of CUDA_VISIBLE_DEVICES as
    written (indices, UUIDs, MIG ids), else every GPU nvidia-smi -L lists, by index."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry or entry.startswith("-"):
                break  # CUDA ignores this entry and every one after it
            entries.append(entry)
        return entries
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    count = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    return [str(i) for i in range(count)]
