"""`cmim-hf evaluate-search`: is the nearest-neighbour search any good? cMIM search against ECFP4-Tanimoto search
as k-NN property predictors (logP, TPSA, QED) on MOSES, recall@k of the IVF index against exact search, and the
exact-vs-IVF curve by library size (cmim_hf.evaluation.search_quality has the method)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..checks import ArgumentParser, check_output_dir, number
from . import fail, user_errors


def _positive_ints(text: str) -> list[int]:
    """A comma-separated list of integers >= 1 (an argparse type: a bad item is one error line naming it)."""
    return [number(integer=True, minimum=1)(item.strip()) for item in text.split(",") if item.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="cmim-hf evaluate-search", description=__doc__.split(": ", 1)[1])
    parser.add_argument("--output_dir", default="results/search")
    parser.add_argument("--work_dir", default=None, help="embedded libraries and indexes (default OUTPUT_DIR/work)")
    parser.add_argument("--library_size", type=number(integer=True, minimum=1), default=100_000)
    parser.add_argument("--queries", type=number(integer=True, minimum=1), default=1000)
    parser.add_argument("-k", type=number(integer=True, minimum=1), default=10)
    parser.add_argument("--model", default="cmim-moses-tiny")
    parser.add_argument("--kinds", default="informative,latent")
    parser.add_argument("--seed", type=number(integer=True, minimum=0, maximum=2**32 - 1), default=0)
    parser.add_argument("--bootstrap", type=number(integer=True, minimum=10), default=1000)
    parser.add_argument("--recall_library", default=None, metavar="FOLDER",
                        help="measure IVF recall against exact search on this library instead of the quality table")
    parser.add_argument("--nprobes", type=_positive_ints, default="1,4,8,16,32,64",
                        help="IVF nprobe values of the recall table (comma-separated)")
    parser.add_argument("--curve_library", default=None, metavar="FOLDER",
                        help="exact against IVF index on the first --sizes rows of this library (curve.json, curve.md)")
    parser.add_argument("--sizes", type=_positive_ints, default="10000,30000,100000",
                        help="library sizes of the curve (comma-separated)")
    parser.add_argument("--prefix_of", default=None, metavar="FOLDER",
                        help="with --recall_library (a new folder): first make it of the shards cmim-hf embed has "
                             "finished in FOLDER")
    parser.add_argument("--make_library", default=None, metavar="FOLDER",
                        help="only embed a seeded sample of --library_size MOSES training molecules (--model, first of "
                             "--kinds) into this library folder, resumable")
    args = parser.parse_args(argv)
    try:
        check_output_dir(args.output_dir)
        if args.prefix_of and not args.recall_library:
            raise ValueError("--prefix_of makes the library --recall_library measures: give both")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    command = "cmim-hf evaluate-search " + " ".join(sys.argv[2:] if argv is None else argv)
    try:
        _run(args, command)
    except user_errors() as error:
        return fail("evaluate-search", error)
    return 0


def _run(args, command: str) -> None:
    from ..evaluation.search_quality import (embed_moses_library, evaluate_search_quality, finished_prefix,
                                              measure_curve, measure_recall)

    if args.make_library:
        embed_moses_library(args.make_library, args.library_size, model=args.model, kind=args.kinds.split(",")[0],
                            seed=args.seed)
    elif args.curve_library:
        measure_curve(args.curve_library, args.output_dir, args.sizes, queries=args.queries,
                      k=args.k, seed=args.seed, work_dir=args.work_dir, command=command)
    elif args.recall_library:
        if args.prefix_of:
            finished_prefix(args.prefix_of, args.recall_library)
        measure_recall(args.recall_library, args.output_dir, queries=args.queries, k=args.k, seed=args.seed,
                       nprobes=args.nprobes, work_dir=args.work_dir, command=command)
    else:
        evaluate_search_quality(args.output_dir, library_size=args.library_size, queries=args.queries, k=args.k,
                                model=args.model, kinds=[x.strip() for x in args.kinds.split(",") if x.strip()],
                                seed=args.seed, bootstrap=args.bootstrap, work_dir=args.work_dir, command=command)
