"""Why a trial ended: exactly one of these per trial, in CSVs, YAML and the console."""

from __future__ import annotations

COMPLETED = "completed"
PRUNED = "pruned"
PLATEAU = "plateau"
DROP = "drop"
BUDGET = "budget"
TIMEOUT = "timeout"
ERROR = "error"
CONSTRAINT = "constraint"

ALL: tuple[str, ...] = (COMPLETED, PRUNED, PLATEAU, DROP, BUDGET, TIMEOUT, ERROR, CONSTRAINT)

# summary.json `status` values written by a run
STATUS_COMPLETED = "completed"
STATUS_DIVERGED = "diverged"
STATUS_ERROR = "error"
STATUS_STOPPED = "stopped"
"""The run was asked to stop (SIGTERM/SIGINT) and wrote its outputs before exiting."""
