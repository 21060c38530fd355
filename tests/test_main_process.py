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
    code = ("import sys\nfrom automl.cli import main\n"
            "try:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            f"print('HEAVY', sorted(set({HEAVY!r}) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                         check=True)
    assert "--budget-hours" in out.stdout
    assert "HEAVY []" in out.stdout


def test_the_orchestrator_loads_the_report_libraries_only_to_write_reports() -> None:
    """fANOVA's scikit-learn and SciPy and matplotlib take seconds to import: a search, a
    validation or a refused command line must not pay for them before it writes its reports."""
    late = ("sklearn", "scipy.stats", "matplotlib", "optuna.importance")
    code = ("import sys, automl.cli, automl.stages.modes, automl.stages.validate, automl.stages.pbt, "
            "automl.search.optuna_loop.scheduler, automl.search.pbt.loop; "
            f"print(sorted(set({late!r}) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_a_training_process_imports_tensorboard_without_boto3_and_boto3_still_imports() -> None:
    """TensorBoard's file layer imports boto3 where it is installed (0.3-0.5 s); a trial (the
    trainer's build_agent, the fork server) imports that layer without it, skrl's agent and
    TensorBoard's writer load, and boto3 still imports for a user's environment that needs it."""
    code = ("import sys\n{skip}import skrl.agents.torch.base\n"
            "from tensorboard.compat.tensorflow_stub.io import gfile\n"
            "print(gfile.S3_ENABLED, 'boto3' in sys.modules)\n"
            "import boto3\nprint(boto3.__name__)")
    skipped, plain = (subprocess.run(
        [sys.executable, "-P", "-c", code.format(skip=skip)], capture_output=True, text=True,
        check=True).stdout.split() for skip in ("from automl.run import import_tensorboard_without_s3\n"
                                                "import_tensorboard_without_s3()\n", ""))
    assert skipped == ["False", "False", "boto3"]
    assert plain == ["True", "True", "boto3"]  # boto3 is installed here (the tests' S3 store)
