"""One training run (the trial process): train_one, the PPO trainer, models, evaluation
and the score. The only package besides automl.envs that imports torch.
"""
