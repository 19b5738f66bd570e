"""The errors a training run stops with: each names what went wrong and what to do; `main` prints them without a
traceback."""


class TrainingError(RuntimeError):
    """A run stopped for a reason the user can act on."""


class NonFiniteLossError(TrainingError):
    """The loss or the gradient norm became NaN or infinite."""


class CheckpointError(TrainingError):
    """A checkpoint is incomplete, truncated or corrupt, or none could be loaded."""
