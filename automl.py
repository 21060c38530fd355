"""Search PPO hyperparameters and reward weights jointly: `uv run automl.py --mode stage ...`
(the console script `automl` is the same command)."""

import os
import sys

if __name__ == "__main__":
    # This file's name is the package's: run the package in a fresh interpreter that leaves the
    # working folder off the import path (-P), so `import automl` finds the package, not this
    # file. exec keeps this process's pid, signals and exit code.
    os.execv(sys.executable, [sys.executable, "-P", "-m", "automl", *sys.argv[1:]])
