"""cmim_hf.training: the Accelerate training loop and the modules it calls (data preparation, model construction,
checkpoints, tracking, evaluation), collators, recipes (YAML) and accelerate configs.

    cmim-hf train --recipe tiny-cpu [--field value ...]
    accelerate launch [--multi_gpu --num_processes N] -m cmim_hf.training [same arguments]

The command line is `cmim_hf.commands.train` (it needs the `train` extra: TensorBoard); `python -m
cmim_hf.training` runs it. Names are imported from their modules on first use (PEP 562), and the command parses
its arguments, refusing bad ones, before it imports the loop (torch, Accelerate): `cmim-hf train --help` answers
at once.
"""

from __future__ import annotations

from pathlib import Path

from cmim_hf._lazy import lazy_exports

ACCELERATE_CONFIGS_DIR = Path(__file__).resolve().parent / "accelerate_configs"

# module -> the public names it provides
_EXPORTS: dict[str, tuple[str, ...]] = {
    "arguments": ("DEFAULT_RECIPE", "CMIMTrainingArguments", "ModelArguments", "list_recipes", "load_recipe",
                  "parse_args", "recipe_path", "resolved_recipe"),
    "checkpoints": ("find_checkpoints", "verify_checkpoint"),
    "collator": ("CMIMDataCollator", "LengthGroupedBatchSampler"),
    "errors": ("CheckpointError", "NonFiniteLossError", "TrainingError"),
    "eval_loop": ("evaluate",),
    "loop": ("TrainResult", "train"),
    "model": ("build_model",),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*__all__, "ACCELERATE_CONFIGS_DIR"])
