"""cmim_hf.training: the Accelerate training loop, collators, recipes (YAML) and accelerate configs.

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
from .collator import CMIMDataCollator, LengthGroupedBatchSampler
from .loop import (
    CheckpointError,
    NonFiniteLossError,
    TrainingError,
    TrainResult,
    evaluate,
    find_checkpoints,
    main,
    train,
    verify_checkpoint,
)

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
