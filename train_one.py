"""Train one run: `uv run train_one.py env=navigation ppo.learning_rate=1e-4 run_dir=...`
(the console script `automl-train` is the same command)."""

import os
import sys

if __name__ == "__main__":
    # This file shares its folder with automl.py, whose name is the package's: run the package's
    # module in a fresh interpreter that leaves the working folder off the import path (-P), so
    # `import automl` finds the package. exec keeps this process's pid, signals and exit code.
    os.execv(sys.executable, [sys.executable, "-P", "-m", "automl.run.train_one", *sys.argv[1:]])
