"""`cmim-hf embed`: embed SMILES with a cMIM model (CSV on stdout, or a .npy / .csv file)."""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from ..modeling import EMBEDDING_KINDS
from ..saving import atomic_write
from ..validation import ArgumentParser, check_device, check_output_file, number
from . import fail, plain_warnings, user_errors


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cmim-hf embed", description=__doc__.split(": ", 1)[1])
    parser.add_argument("smiles", nargs="*", metavar="SMILES", help="molecules to embed (or use --input)")
    parser.add_argument("--model", default="cmim-moses-tiny",
                        help="shipped checkpoint name, model folder or Hub repo id (default cmim-moses-tiny)")
    parser.add_argument("--input", default=None, metavar="FILE",
                        help="SMILES file: .csv/.csv.gz (column --column) or text, one SMILES first on each line")
    parser.add_argument("--column", default="smiles", help="the SMILES column of a CSV input (default smiles)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="write .npy (array N x E) or .csv (smiles + one column per dimension); "
                             "default CSV on stdout")
    parser.add_argument("--kind", default="informative", choices=EMBEDDING_KINDS)
    parser.add_argument("--batch_size", type=number(integer=True, minimum=1), default=64)
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1; default CUDA when available")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="weights and compute (the output is float32); bfloat16 is faster on CPUs with "
                             "AVX512-BF16 (`cmim-hf benchmark --sections embedding` measures it)")
    parser.add_argument("--on_unknown", default="warn", choices=("ignore", "warn", "raise"))
    parser.add_argument("--on_too_long", default="warn", choices=("truncate", "warn", "raise"))
    parser.add_argument("--on_invalid", default="warn", choices=("ignore", "warn", "raise"),
                        help="SMILES that RDKit cannot parse (needs RDKit): embedded with a warning (default), "
                             "not checked, or an error naming them")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser


def _read_smiles_file(path: Path, column: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    suffixes = [s.lower() for s in path.suffixes]
    with opener(path, "rt", newline="") as handle:
        if ".csv" in suffixes:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise ValueError(f"{path} has no column {column!r}; its columns are {reader.fieldnames}; "
                                 "choose one with --column")
            return [row[column] for row in reader]
        # .smi / .txt: SMILES first on the line, optionally followed by whitespace and a name.
        return [line.split()[0] for line in handle if line.strip()]


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
        output = check_output_file(args.output, suffixes=(".npy", ".csv")) if args.output else None
        check_device(args.device)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    try:
        smiles = list(args.smiles)
        if args.input:
            smiles += _read_smiles_file(Path(args.input), args.column)
        if not smiles:
            raise ValueError("nothing to embed: give SMILES as arguments or a file with --input")

        from ..embeddings import embed_smiles, load_pretrained

        with plain_warnings("embed"):
            model, tokenizer = load_pretrained(args.model, device=args.device, dtype=args.dtype)
            vectors = embed_smiles(model, tokenizer, smiles, kind=args.kind, batch_size=args.batch_size,
                                   progress=args.progress, on_unknown=args.on_unknown,
                                   on_too_long=args.on_too_long, on_invalid=args.on_invalid)
    except user_errors() as error:
        return fail("embed", error)
    _write(output, smiles, vectors, args.kind)
    if output is not None:
        print(f"embedded {len(smiles)} molecules ({args.kind}, {vectors.shape[1]} dims) -> {output}",
              file=sys.stderr)
    return 0
