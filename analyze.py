"""Reports of an automl study: `uv run analyze.py --study NAME [--plots] [--importance]`."""

import sys
from pathlib import Path

# automl.py beside this file shares its name with the `automl` package: keep this folder off the
# import path so `import automl` finds the package (as train_one.py does).
_here = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", _here)]

from automl.analysis.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
