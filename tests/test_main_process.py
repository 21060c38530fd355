"""The orchestrator side (CLI, search loop, reports) must never import torch or skrl (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "skrl", "tensorflow")


def test_orchestrator_modules_import_no_torch_or_skrl() -> None:
    code = ("import sys, automl.cli, automl.stages.modes, automl.search.optuna_loop.scheduler, "
            "automl.search.trials.runner, automl.search.trials.launcher, automl.search.trials.forkserver, "
            "automl.analysis.reports, automl.analysis.cli, automl.stages.pbt, automl.search.pbt.loop; "
            f"print(sorted(set({HEAVY!r}) & set(sys.modules)))")
    # -P: the repo root holds automl.py, which must not shadow the package.
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_help_prints_without_torch() -> None:
    code = ("import sys, runpy; sys.argv = ['automl.py', '--help']\n"
            "try:\n    runpy.run_path('automl.py', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            f"print('HEAVY', sorted(set({HEAVY!r}) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                         check=True)
    assert "--budget-hours" in out.stdout
    assert "HEAVY []" in out.stdout
