"""automl: searches PPO hyperparameters, network sizes and reward weights jointly with Optuna."""
