"""The Optuna search method: ask and tell over asynchronous slots. The loop (scheduler) and what it
is given (settings); starting a trial (trial_start), the one writer of what trials report
(trial_record), when to start, stop or wait (search_policy), automl_state.yaml (search_state), the
terminal (console); the sampler (sampling), the pruners and their plan (pruning), and the plan
settled on the budget (sizing).

Imports `space`, `study` and `trials` of `automl.search`. This file imports none of its modules:
import the modules themselves.
"""
