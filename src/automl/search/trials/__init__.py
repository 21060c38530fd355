"""Trial processes, knowing nothing of Optuna or the study: slots and launch (launcher), the warm
fork server (forkserver), plain batches for validation and the final run (runner), a run's
TensorBoard event files (tb_reader), and one running trial watched against its stoppers and a
pruner passed in as a callable (watch, stoppers).

Imports nothing else of `automl.search`. This file imports none of its modules, so that
`python -m automl.search.trials.forkserver` and the event reader load only what they use: import
the modules themselves.
"""
