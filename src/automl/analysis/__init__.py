"""Reports of a study: experiment_df.csv and configurations.csv (table, configs), the importance
YAML (importance), plots, validation statistics (validation, verdict), the export of the chosen
configuration (export), and `analyze.py` (cli).

This file imports none of its modules: importance (optuna's fANOVA, which imports scikit-learn and
SciPy) and plots (matplotlib) take seconds to import, and a run pays for them only when it writes
its reports. Import the modules themselves.
"""
