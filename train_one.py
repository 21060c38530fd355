"""Train one run: `uv run train_one.py env=navigation ppo.learning_rate=1e-4 run_dir=...`."""

from automl.train_one import run

if __name__ == "__main__":
    run()
