"""One training run (the trial process): train_one, the PPO trainer, models, evaluation
and the score. The only package besides automl.envs that imports torch.
"""

import sys


def skip_tensorboards_s3() -> None:
    """Keep TensorBoard from importing boto3 in a process that trains: its file layer imports
    boto3 when installed (the s3 extra), for s3:// log folders, which a run never writes (the
    orchestrator stores population states itself); 0.3-0.5 s of every trial process's start.
    Only for a process's own entry: in a process where boto3 is in use it is already imported,
    and this leaves it."""
    sys.modules.setdefault("boto3", None)  # type: ignore[arg-type]  # `import boto3` now fails
