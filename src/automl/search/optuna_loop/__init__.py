"""The Optuna search method: ask and tell over asynchronous slots. The loop (scheduler) and what it
is given (settings); starting a trial (trial_start), when to start, stop or wait (search_policy),
automl_state.yaml (search_state), the terminal (console); the sampler (sampling), the pruners
and their plan (pruning), and the plan settled on the budget (sizing). The one writer of what
trials report and the other orchestrators are the study's (study/trial_record.py, shared.py).

Imports `space`, `study` and `trials` of `automl.search`. This file imports none of its modules:
import the modules themselves.
"""
