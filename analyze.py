"""Reports of an automl study: `uv run analyze.py --study NAME [--plots] [--importance]`
(the console script `automl-analyze` is the same command)."""

import os
import sys

if __name__ == "__main__":
    # This file shares its folder with automl.py, whose name is the package's: run the package's
    # module in a fresh interpreter that leaves the working folder off the import path (-P), so
    # `import automl` finds the package. exec keeps this process's pid, signals and exit code.
    os.execv(sys.executable, [sys.executable, "-P", "-m", "automl.analysis.cli", *sys.argv[1:]])
