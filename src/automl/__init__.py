"""automl: searches PPO hyperparameters, network sizes and reward weights jointly with Optuna."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`automl.__version__`, read from the installed package's metadata when asked: importing
    importlib.metadata costs every process that imports automl (trials, orchestrators) 40 ms."""
    if name != "__version__":
        raise AttributeError(f"module 'automl' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("automl")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
