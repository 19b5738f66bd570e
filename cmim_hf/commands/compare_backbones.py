"""`cmim-hf compare-backbones`: do informative embeddings apply beyond MIM?

The experiment (plain BART and T5 auto-encoders and cMIM-BART, several seeds, encoder mean-pool vs decoder vs
informative) is `cmim_hf.experiments.compare_backbones`; this module is its command line.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ..experiments.compare import training_seeds
from ..experiments.compare_backbones import MODELS, run_compare_backbones
from ..checks import ArgumentParser, check_output_dir, number

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from ..evaluation.names import TASKS

    parser = ArgumentParser(prog="cmim-hf compare-backbones", description=__doc__.split("\n\n")[0],
                            allow_abbrev=False)
    parser.add_argument("--output_dir", default="results/backbones")
    parser.add_argument("--recipe", default="tiny-cpu", help="training recipe shared by every model")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=number(integer=True, minimum=1), default=3,
                        help="training seeds per model: the recipe's seed and the next N-1 (default 3)")
    parser.add_argument("--max_steps", type=number(integer=True, minimum=1), default=None,
                        help="default: the recipe's")
    parser.add_argument("--reconstruction_samples", type=number(integer=True, minimum=1), default=500)
    parser.add_argument("--tasks", nargs="+", default=None, choices=TASKS, help="downstream tasks (default: all three)")
    args = parser.parse_args(argv)
    try:  # before any model is trained
        seeds = training_seeds(args.recipe, args.seeds)
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.error(f"--recipe: {error}")
    try:
        check_output_dir(args.output_dir)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    report = run_compare_backbones(args.output_dir, recipe=args.recipe, models=args.models, seeds=seeds,
                                   max_steps=args.max_steps, reconstruction_samples=args.reconstruction_samples,
                                   tasks=args.tasks, command=shlex.join(["cmim-hf", "compare-backbones", *argv]))
    for judged in report["verdicts"]:
        print(f"{judged['model']}: informative beats the encoder mean-pool: {judged['verdict']}")
    print(f"table: {Path(args.output_dir) / 'backbones.md'}")
    return 0
