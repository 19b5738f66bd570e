"""`cmim-hf embed`: embed SMILES with a cMIM model (CSV on stdout, or a .npy / .csv file)."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from ..modeling.names import EMBEDDING_KINDS
from ..saving import atomic_write
from ..checks import ArgumentParser, check_output_file, number
from . import check_device, fail, plain_warnings, user_errors


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cmim-hf embed", description=__doc__.split(": ", 1)[1])
    parser.add_argument("smiles", nargs="*", metavar="SMILES", help="molecules to embed (or use --input)")
    parser.add_argument("--model", default="cmim-moses-tiny",
                        help="shipped checkpoint name, model folder or Hub repo id (default cmim-moses-tiny)")
    parser.add_argument("--input", default=None, metavar="SOURCE",
                        help="SMILES from a file (.smi/.txt, one SMILES first on each line, optionally gzipped; .csv, "
                             ".tsv, .jsonl, .parquet), a datasets folder (save_to_disk, or as on the Hub), a Hub data "
                             "set id (from the cache, else downloaded unless HF_HUB_OFFLINE=1), or - for stdin (lines as in a .smi file)")
    parser.add_argument("--text_column", "--column", default=None, metavar="COLUMN",
                        help="the column of a table input holding the SMILES (default: text, else a smiles column, "
                             "else the only column)")
    parser.add_argument("--split", default=None,
                        help="the split to embed, when --input holds several (a folder or Hub data set)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="write .npy (array N x E) or .csv (smiles + one column per dimension); "
                             "default CSV on stdout")
    parser.add_argument("--kind", default="informative", choices=EMBEDDING_KINDS)
    parser.add_argument("--batch_size", type=number(integer=True, minimum=1), default=64)
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1; default CUDA when available")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="weights and compute (the output is float32); bfloat16 is faster on CPUs with "
                             "AVX512-BF16 (`cmim-hf benchmark --sections embedding` measures it)")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx"),
                        help="onnx: --model is a folder written by `cmim-hf export`, run by ONNX Runtime on the CPU")
    parser.add_argument("--on_unknown", default="warn", choices=("ignore", "warn", "raise"))
    parser.add_argument("--on_too_long", default="warn", choices=("truncate", "warn", "raise"))
    parser.add_argument("--on_invalid", default="warn", choices=("ignore", "warn", "raise"),
                        help="SMILES that RDKit cannot parse (needs RDKit): embedded with a warning (default), "
                             "not checked, or an error naming them")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser


def _read_input(source: str, text_column: str | None, split: str | None, progress: bool) -> list[str]:
    """The texts of `--input`, read by the same reader as `cmim-hf train --dataset`."""
    import datasets

    from ..data import read_texts

    if not progress:
        datasets.disable_progress_bars()
    return read_texts(source, text_column, split=split, allow_stdin=True)


def _write(output: Path | None, smiles: list[str], vectors, kind: str) -> None:
    """CSV (smiles + one column per dimension) on stdout or to `output`, or `.npy`; files written atomically."""
    import numpy as np

    if output is not None and output.suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, vectors)
        atomic_write(output, buffer.getvalue())
        return
    text = sys.stdout if output is None else io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["smiles"] + [f"cmim_{kind}_{i}" for i in range(vectors.shape[1])])
    for smiles_text, row in zip(smiles, vectors):
        writer.writerow([smiles_text, *(repr(float(v)) for v in row)])  # repr: shortest round-tripping float
    if output is not None:
        atomic_write(output, text.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:  # before any work: found after an hour of embedding, a bad path would lose the hour
        output = (check_output_file(args.output, suffixes=(".npy", ".csv"), inputs={"--input": args.input})
                  if args.output is not None else None)
        check_device(args.device)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    try:
        smiles = list(args.smiles)
        if args.input:
            smiles += _read_input(args.input, args.text_column, args.split, args.progress)
        if not smiles:
            raise ValueError("nothing to embed: give SMILES as arguments or a file with --input")

        from ..onnx_backend import load_embedder

        with plain_warnings("embed"):
            embed = load_embedder(args.model, backend=args.backend, device=args.device, dtype=args.dtype)
            vectors = embed(smiles, kind=args.kind, batch_size=args.batch_size,
                                   progress=args.progress, on_unknown=args.on_unknown,
                                   on_too_long=args.on_too_long, on_invalid=args.on_invalid)
    except user_errors() as error:
        return fail("embed", error)
    _write(output, smiles, vectors, args.kind)
    if output is not None:
        print(f"embedded {len(smiles)} molecules ({args.kind}, {vectors.shape[1]} dims) -> {output}",
              file=sys.stderr)
    return 0
