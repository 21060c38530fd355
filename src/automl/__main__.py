"""`python -m automl`: automl.py's command (automl.cli)."""

from automl.cli import main

raise SystemExit(main())
