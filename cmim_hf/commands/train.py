"""`cmim-hf train`: train a model with Accelerate from a recipe (see `cmim_hf.training`).

    cmim-hf train --recipe tiny-cpu [--field value ...]
    accelerate launch [--multi_gpu --num_processes N] -m cmim_hf.training [same arguments]

The options are the recipe's fields (`cmim_hf.training.arguments` builds the parser from its dataclasses, so that
experiments parse recipes the same way). Bad arguments and a missing data set are refused (exit 2) before torch
is imported; model fields that make no valid config are refused next, before any data is read.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cmim-hf train` and `python -m cmim_hf.training` (also under `accelerate launch`)."""
    from ..training.arguments import parse_args, run_output_dir
    from ..training.run_checks import check_model_config
    from ..checks import check_output_dir

    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # everything about the arguments, before any data is read
        training_args, model_args, recipe = parse_args(argv)
        check_output_dir(run_output_dir(training_args, recipe))
        from ..data import NAMED_DATASETS, resolve_text_source

        if training_args.dataset not in NAMED_DATASETS:
            for source in (training_args.dataset, training_args.eval_dataset):
                if source is not None:
                    resolve_text_source(source)
        check_model_config(model_args)
    except (ValueError, TypeError, OSError) as error:
        print(f"cmim-hf train: error: {error}", file=sys.stderr)
        return 2
    from ..training.loop import run

    return run(training_args, model_args, recipe, argv)
