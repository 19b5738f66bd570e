"""cmim_hf.training: the Accelerate training loop and its rooms (data preparation, model construction,
checkpoints, tracking, evaluation), collators, recipes (YAML) and accelerate configs.

    cmim-hf train --recipe tiny-cpu [--field value ...]
    accelerate launch [--multi_gpu --num_processes N] -m cmim_hf.training [same arguments]

Only the CLI imports this package (it needs the `train` extra: TensorBoard).
"""

from pathlib import Path

from .arguments import (
    DEFAULT_RECIPE,
    CMIMTrainingArguments,
    ModelArguments,
    list_recipes,
    load_recipe,
    parse_args,
    recipe_path,
    resolved_recipe,
)
from .checkpoints import find_checkpoints, verify_checkpoint
from .collator import CMIMDataCollator, LengthGroupedBatchSampler
from .errors import CheckpointError, NonFiniteLossError, TrainingError
from .evaluation import evaluate
from .loop import TrainResult, main, train
from .model import build_model

ACCELERATE_CONFIGS_DIR = Path(__file__).resolve().parent / "accelerate_configs"

__all__ = [
    "ACCELERATE_CONFIGS_DIR",
    "DEFAULT_RECIPE",
    "CMIMDataCollator",
    "CMIMTrainingArguments",
    "CheckpointError",
    "LengthGroupedBatchSampler",
    "ModelArguments",
    "NonFiniteLossError",
    "TrainResult",
    "TrainingError",
    "build_model",
    "evaluate",
    "find_checkpoints",
    "list_recipes",
    "load_recipe",
    "main",
    "parse_args",
    "recipe_path",
    "resolved_recipe",
    "train",
    "verify_checkpoint",
]
