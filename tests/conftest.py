"""Keep the repo root off the import path, so `import automl` finds the package, not automl.py;
keep every test's outputs out of the source tree.

`python -m pytest` puts the current folder first on sys.path, and from the repo root that makes
the `automl.py` shim shadow the `src/automl` package.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_root = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if p not in ("", ".") and Path(p).resolve() != _root]

from pg_server import postgres  # noqa: E402, F401 - a throwaway PostgreSQL server, for any test
from s3_server import s3_bucket, s3_endpoint  # noqa: E402, F401 - an S3-compatible one, likewise
from xdist_groups import pytest_collection_modifyitems  # noqa: E402, F401 - keeps groups on one worker


@pytest.fixture(autouse=True, scope="session")
def _outputs_outside_the_source_tree(tmp_path_factory):
    """Every test's outputs and exported presets go to temporary folders unless it picks its own:
    a test must never leave a file in starter_kit_log/ or conf/experiment/."""
    from automl import paths

    root = tmp_path_factory.mktemp("outputs")
    before = _source_outputs()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(paths.LOG_ROOT_ENV, str(root / "log"))
        monkeypatch.setenv(paths.PRESETS_ROOT_ENV, str(root / "presets"))
        yield root
    written = sorted(_source_outputs() - before)
    assert not written, f"the tests wrote into the source tree: {written}"


def _source_outputs() -> set[str]:
    """Files in the source tree's output places: conf/ (exported presets) and starter_kit_log/."""
    return {str(p.relative_to(_root)) for folder in ("conf", "starter_kit_log")
            for p in (_root / folder).rglob("*") if p.is_file()}
