"""`cmim-hf compare`: the cMIM paper's experiment at any scale, with several training seeds.

The experiment (training, evaluation, tables, plots and verdicts) is `cmim_hf.experiments.compare`; this module is
its command line, which refuses every argument the first training would refuse before any model is trained.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ..experiments.compare import BATCH_SIZES, COMPARED_KINDS, DEFAULT_SEEDS, run_compare, training_seeds
from ..modeling.names import OBJECTIVES  # read without importing torch: --help stays fast
from ..checks import MAX_NUMPY_SEED, ArgumentParser, check_output_dir, number

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    from ..evaluation.names import TASKS
    from ..training.arguments import parse_args

    argv = list(sys.argv[1:] if argv is None else argv)
    # allow_abbrev=False: an unknown option such as --seed goes to the check below, not to --seeds.
    parser = ArgumentParser(prog="cmim-hf compare", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                            epilog="Other --field value options go to `cmim-hf train` for every model.")
    parser.add_argument("--output_dir", default="results/compare")
    parser.add_argument("--recipe", default="tiny-cpu", help="training recipe shared by every model")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--batch_sizes", nargs="+", type=number(integer=True, minimum=1), default=list(BATCH_SIZES))
    parser.add_argument("--seeds", type=number(integer=True, minimum=1), default=None,
                        help=f"training seeds per (objective, batch size): the recipe's seed and the next N-1 "
                             f"(default {DEFAULT_SEEDS}). With 1, every verdict is inconclusive: no spread.")
    parser.add_argument("--seed_list", type=number(integer=True, minimum=0, maximum=MAX_NUMPY_SEED), nargs="+", default=None,
                        help="explicit training seeds, instead of --seeds")
    parser.add_argument("--max_steps", type=number(integer=True, minimum=1), default=600,
                        help="the same step budget for every model")
    parser.add_argument("--reconstruction_samples", type=number(integer=True, minimum=1), default=500)
    parser.add_argument("--generation_samples", type=number(integer=True, minimum=0), default=200)
    parser.add_argument("--tasks", nargs="+", default=None, choices=TASKS, help="downstream tasks (default: all three)")
    args, extra = parser.parse_known_args(argv)
    if any(arg == "--seed" or arg.startswith("--seed=") for arg in extra):
        parser.error("--seed: the training seeds are set by --seeds N or --seed_list S [S ...]")
    if args.seeds is not None and args.seed_list is not None:
        parser.error("--seeds and --seed_list: pass one of them")
    if args.seed_list is not None and len(set(args.seed_list)) != len(args.seed_list):
        parser.error(f"--seed_list: expected distinct seeds, got {args.seed_list}")
    try:
        seeds = args.seed_list or training_seeds(args.recipe, args.seeds or DEFAULT_SEEDS)
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.error(f"--recipe: {error}")
    try:  # everything the first training would refuse, refused before any model is trained
        check_output_dir(args.output_dir)
        for objective in args.objectives:
            parse_args(["--recipe", args.recipe, *extra, "--objective", objective, "--seed", str(seeds[0]),
                        "--per_device_train_batch_size", str(args.batch_sizes[0]), "--max_steps", str(args.max_steps)])
    except (ValueError, TypeError, OSError) as error:
        parser.error(str(error))
    try:
        comparison = run_compare(args.output_dir, recipe=args.recipe, objectives=args.objectives,
                                 batch_sizes=args.batch_sizes, seeds=seeds, max_steps=args.max_steps,
                                 extra_train_args=extra, reconstruction_samples=args.reconstruction_samples,
                                 generation_samples=args.generation_samples, tasks=args.tasks,
                                 command=shlex.join(["cmim-hf", "compare", *argv]))
    except RuntimeError as error:  # a training failed: its own lines above say why
        print(f"cmim-hf compare: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ncmim-hf compare: interrupted; the models evaluated so far are kept in {args.output_dir}: rerun the "
              "same command to continue", file=sys.stderr)
        return 130
    settings = comparison["settings"]
    print(f"compared {len(comparison['rows']) // len(COMPARED_KINDS)} models ({len(seeds)} seeds each) in "
          f"{settings['hours']:.2f} h; table: {Path(args.output_dir) / 'compare.md'}")
    return 0
