"""`cmim-hf search`: the k library molecules nearest to query SMILES in an index built by `cmim-hf index` (CSV: query,
rank, SMILES, row id, cosine, ECFP4 Tanimoto to the query)."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence

from ..saving import atomic_write
from ..checks import ArgumentParser, check_output_file, number
from . import check_device, fail, plain_warnings, user_errors


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cmim-hf search", description=__doc__.split(": ", 1)[1])
    parser.add_argument("queries", nargs="*", metavar="QUERY_SMILES", help="molecules to search for (or use --input)")
    parser.add_argument("--index", required=True, metavar="INDEX_DIR", help="the folder cmim-hf index wrote")
    parser.add_argument("-k", type=number(integer=True, minimum=1), default=10, help="neighbours per query (default 10)")
    parser.add_argument("--input", default=None, metavar="SOURCE",
                        help="queries from a file, folder, Hub data set or - for stdin, read as cmim-hf embed --input")
    parser.add_argument("--text_column", "--column", default=None, metavar="COLUMN",
                        help="the column of a table input holding the SMILES")
    parser.add_argument("--split", default=None, help="the split to read, when --input holds several")
    parser.add_argument("--output", default=None, metavar="FILE", help="write the hits as .csv (default: stdout)")
    parser.add_argument("--model", default=None,
                        help="embed the queries with this model (folder, shipped name or Hub id); default the one "
                             "named in the index. Its weights, kind and width must be the index's")
    parser.add_argument("--batch_size", type=number(integer=True, minimum=1), default=64)
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda; default CUDA when available")
    parser.add_argument("--on_invalid", default="warn", choices=("ignore", "warn", "raise"),
                        help="queries that RDKit cannot parse: searched with a warning (default), silently, or refused")
    return parser


def _write(hits: list[dict], output) -> None:
    """The hits as CSV on stdout, or atomically to `output`."""
    from ..search import HIT_COLUMNS

    text = sys.stdout if output is None else io.StringIO()
    writer = csv.DictWriter(text, fieldnames=HIT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for hit in hits:
        writer.writerow({**hit, "cosine": f"{hit['cosine']:.6f}", "tanimoto": f"{hit['tanimoto']:.4f}"})
    if output is not None:
        atomic_write(output, text.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:  # before loading anything
        output = (check_output_file(args.output, suffixes=(".csv",), inputs={"--input": args.input})
                  if args.output is not None else None)
        check_device(args.device)
        if not args.queries and not args.input:
            raise ValueError("no queries: give SMILES as arguments or a file with --input")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    queries = list(args.queries)
    if args.input:  # an --input that gives no queries (missing, empty, no such column) is a bad argument: exit 2
        from ..data import read_texts

        try:
            queries += read_texts(args.input, args.text_column, split=args.split, allow_stdin=True)
        except user_errors() as error:
            parser.error(str(error))
        if not queries:
            parser.error(f"no queries: --input {args.input} holds no SMILES")
    try:
        from ..search import LibraryIndex, search_library

        with plain_warnings("search"):
            index = LibraryIndex(args.index)
            hits = search_library(queries, index, k=args.k, model=args.model, batch_size=args.batch_size,
                                  device=args.device, on_invalid=args.on_invalid)
    except user_errors() as error:
        return fail("search", error)
    _write(hits, output)
    if output is not None:
        print(f"{len(queries)} queries, {min(args.k, len(index))} neighbours each, from {len(index):,} molecules -> {output}",
              file=sys.stderr)
    return 0
