"""Search PPO hyperparameters and reward weights jointly: `uv run automl.py --mode stage ...`."""

import sys
from pathlib import Path

# This file shares its name with the `automl` package (src/automl): keep the script's own folder
# off the import path so `import automl` finds the package.
_here = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", _here)]

from automl.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
