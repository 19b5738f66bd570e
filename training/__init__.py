"""cmim_hf.training: the Accelerate training loop and its rooms (data preparation, model construction,
checkpoints, tracking, evaluation), collators, recipes (YAML) and accelerate configs.

    cmim-hf train --recipe tiny-cpu [--field value ...]
    accelerate launch [--multi_gpu --num_processes N] -m cmim_hf.training [same arguments]

Only the CLI imports this package (it needs the `train` extra: TensorBoard). Names are imported from their
modules on first use (PEP 562), and `main` parses the command line, refusing bad arguments, before it imports
the loop (torch, Accelerate): `cmim-hf train --help` answers at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
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
    "evaluation": ("evaluate",),
    "loop": ("TrainResult", "train"),
    "model": ("build_model",),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*__all__, "ACCELERATE_CONFIGS_DIR", "main"])




def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cmim-hf train` and `python -m cmim_hf.training` (also under `accelerate launch`).

    Bad arguments and a missing data set are refused (exit 2) before torch is imported; model fields that make
    no valid config (the config's own checks need transformers) are refused next, before any data is read."""
    from cmim_hf.validation import check_output_dir

    from .arguments import parse_args, run_output_dir
    from .validation import check_model_config

    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # everything about the arguments, before any data is read
        training_args, model_args, recipe = parse_args(argv)
        check_output_dir(run_output_dir(training_args, recipe))
        from cmim_hf.data import NAMED_DATASETS, resolve_text_source

        if training_args.dataset not in NAMED_DATASETS:
            for source in (training_args.dataset, training_args.eval_dataset):
                if source is not None:
                    resolve_text_source(source)
        check_model_config(model_args)
    except (ValueError, TypeError, OSError) as error:
        print(f"cmim-hf train: error: {error}", file=sys.stderr)
        return 2
    from .loop import run

    return run(training_args, model_args, recipe, argv)
