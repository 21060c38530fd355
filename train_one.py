"""Train one run: `uv run train_one.py env=navigation ppo.learning_rate=1e-4 run_dir=...`."""

import sys
from pathlib import Path

# automl.py beside this file shares its name with the `automl` package (src/automl): keep this
# folder off the import path so `import automl` finds the package.
_here = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in ("", _here)]

from automl.run.train_one import run  # noqa: E402

if __name__ == "__main__":
    run()
