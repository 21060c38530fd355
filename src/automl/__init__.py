"""automl: searches PPO hyperparameters, network sizes and reward weights jointly with Optuna."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("automl")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
