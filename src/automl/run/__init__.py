"""One training run (the trial process): train_one, the PPO trainer, models, evaluation
and the score. The only package besides automl.envs that imports torch.
"""

import sys

GFILE = "tensorboard.compat.tensorflow_stub.io.gfile"


def import_tensorboard_without_s3() -> None:
    """Import TensorBoard's file layer without its boto3 (0.3-0.5 s of a trial's start where the s3
    extra is installed): it imports boto3 when it can, for s3:// log folders, which a run never
    writes (the orchestrator stores population states itself). boto3 imports as usual afterwards,
    for a user's environment that needs it. Call before skrl's agent, which imports that layer."""
    if GFILE in sys.modules or "boto3" in sys.modules:
        return
    sys.modules["boto3"] = None  # type: ignore[assignment]  # `import boto3` fails while it is
    try:
        __import__(GFILE)
    finally:
        if sys.modules.get("boto3", False) is None:
            del sys.modules["boto3"]
