"""`automl.py` as the tests that start the orchestrator as a process of its own run it: the same
command line and code, except that the end-of-run reports write the tables only (experiment_df.csv,
configurations.csv). The importance file and the plots cost 4-5 s of imports per process
(scikit-learn, SciPy, matplotlib) and decide nothing these tests check; tests/analysis/ and the
stage tests that run in the test process write them for real."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any


def _tables_only(study_paths: Any, study: Any = None, **_: Any) -> list[Path]:
    from automl.analysis.folder import open_view
    from automl.analysis.table import write_tables

    return [write_tables(open_view(study_paths, study))]


if __name__ == "__main__":
    reports = types.ModuleType("automl.analysis.reports")
    reports.write_reports = _tables_only  # type: ignore[attr-defined]
    sys.modules["automl.analysis.reports"] = reports
    from automl.cli import main

    sys.exit(main(sys.argv[1:]))
