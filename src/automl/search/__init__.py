"""One study and the method that searches it: the space (space/), the study every method shares
(study/), the trial processes (trials/), the Optuna loop (optuna_loop/), and plan.py, which composes
them before the first trial starts.

Runs in the main process: nothing here imports torch.
"""
