"""`cmim-hf index`: build a FAISS nearest-neighbour index of a library written by `cmim-hf embed` (exact up to a size,
IVF above), for `cmim-hf search`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..checks import ArgumentParser, number
from . import fail, user_errors


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cmim-hf index", description=__doc__.split(": ", 1)[1])
    parser.add_argument("library", metavar="LIBRARY",
                        help="the folder cmim-hf embed wrote (manifest.json and shard-*.parquet), complete")
    parser.add_argument("--output", required=True, metavar="INDEX_DIR",
                        help="the index folder to write (index.faiss, rows.parquet, index.json); an existing index "
                             "there is replaced once the new one is complete")
    parser.add_argument("--type", default="auto", choices=("auto", "exact", "ivf"),
                        help="exact (FAISS IndexFlatIP), ivf (IndexIVFFlat), or auto (default): exact up to "
                             "cmim_hf.search.EXACT_MAX_ROWS rows, ivf above (docs/search.md has the measurement)")
    parser.add_argument("--nlist", type=number(integer=True, minimum=1), default=None,
                        help="IVF lists (default: sqrt of the library size)")
    parser.add_argument("--nprobe", type=number(integer=True, minimum=1), default=None,
                        help="IVF lists searched per query, stored in the index (default cmim_hf.search.IVF_NPROBE)")
    parser.add_argument("--seed", type=number(integer=True, minimum=0, maximum=2**31 - 1), default=0,
                        help="IVF training sample and k-means seed")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from ..search import IVF_NPROBE, build_index, check_index_output, read_library

    try:  # before reading the library: a bad --output is found at once
        check_index_output(args.output)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    try:
        if read_library(args.library).size == 0:
            parser.error(f"library {args.library} holds no rows: nothing to index")
    except (ValueError, OSError) as error:
        return fail("index", error)
    try:
        log = None if args.quiet else (lambda line: print(f"cmim-hf index: {line}", file=sys.stderr))
        build_index(args.library, args.output, index_type=args.type, nlist=args.nlist,
                    nprobe=args.nprobe or IVF_NPROBE, seed=args.seed, log=log)
    except user_errors() as error:
        return fail("index", error)
    return 0
