"""Keep the repo root off the import path, so `import automl` finds the package, not automl.py.

`python -m pytest` puts the current folder first on sys.path, and from the repo root that makes
the `automl.py` shim shadow the `src/automl` package.
"""

from __future__ import annotations

import sys
from pathlib import Path

_root = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if p not in ("", ".") and Path(p).resolve() != _root]

from pg_server import postgres  # noqa: E402, F401 - a throwaway PostgreSQL server, for any test
