"""`cmim-hf embed`: embed SMILES with a cMIM model (CSV on stdout, a .npy / .csv file, or a sharded parquet library).

With `--input` and `--output`, the input is streamed: memory holds one shard, whatever the size of the input
(`cmim_hf.library.embed_to_disk`). A parquet library (`--output` a folder, or ending in .parquet) is resumable
(rerun the same command) and data-parallel under `accelerate launch -m cmim_hf embed ...`."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from ..modeling.names import EMBEDDING_KINDS
from ..saving import atomic_write
from ..checks import ArgumentParser, check_output_dir, check_output_file, check_path_given, number
from . import check_device, fail, plain_warnings, user_errors


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cmim-hf embed", description=__doc__.split(": ", 1)[1])
    parser.add_argument("smiles", nargs="*", metavar="SMILES", help="molecules to embed (or use --input; a lone - "
                                                                      "reads stdin)")
    parser.add_argument("--model", default="cmim-moses-tiny",
                        help="shipped checkpoint name, model folder or Hub repo id (default cmim-moses-tiny)")
    parser.add_argument("--input", default=None, metavar="SOURCE",
                        help="SMILES from a file (.smi/.txt, one SMILES first on each line, optionally gzipped; .csv, "
                             ".tsv, .jsonl, .parquet), a datasets folder (save_to_disk, or as on the Hub), a Hub data "
                             "set id (from the cache, else downloaded unless HF_HUB_OFFLINE=1), a named data set "
                             "(moses, with --split), or - for stdin (lines as in a .smi file)")
    parser.add_argument("--text_column", "--column", default=None, metavar="COLUMN",
                        help="the column of a table input holding the SMILES (default: text, else a smiles column, "
                             "else the only column)")
    parser.add_argument("--split", default=None,
                        help="the split to embed, when --input holds several (a folder or Hub data set)")
    parser.add_argument("--output", default=None, metavar="PATH",
                        help="write .npy (array N x E), .csv (smiles + one column per dimension), or a folder (or "
                             "a path ending in .parquet): a sharded parquet library (row_id, smiles, embedding, "
                             "invalid, unknown_tokens, truncated; .manifest.json), resumable by rerunning the same "
                             "command; default CSV on stdout")
    parser.add_argument("--shard_rows", type=number(integer=True, minimum=1), default=None,
                        help="rows per parquet shard: the unit of memory, of resume and of the work split over "
                             "processes (default: the resumed library's, else 10000)")
    parser.add_argument("--storage_dtype", default="float32", choices=("float32", "float16"),
                        help="dtype of the stored vectors (.npy, parquet); float16 halves the disk")
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
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar (streamed output: a line per shard with rows/s)")
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
    from ..library import csv_header, csv_row

    text = sys.stdout if output is None else io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(csv_header(kind, vectors.shape[1]))
    writer.writerows(csv_row(smiles_text, row) for smiles_text, row in zip(smiles, vectors))
    if output is not None:
        atomic_write(output, text.getvalue())


def _check_output(args) -> tuple[Path | None, bool]:
    """The output path and whether it is streamed (`embed_to_disk`): with --input and an --output, or a library."""
    if args.output is None:
        return None, False
    from ..embedding_store import MANIFEST_NAME
    from ..library import output_kind

    output = Path(check_path_given(args.output, "--output"))  # Path("") is the current folder: never taken for one
    if output.exists() and not output.is_dir():  # an existing file: never the input, whatever its name
        check_output_file(output, inputs={"--input": args.input})
    kind = output_kind(output)
    if kind == "parquet":
        if output.exists() and not output.is_dir():
            raise ValueError(f"--output {output} is a file; a parquet library is a folder (give a new or empty "
                             "folder, or a path ending in .parquet that does not exist yet)")
        if output.is_dir() and not (output / MANIFEST_NAME).exists() and \
                any(not child.name.startswith(".") for child in output.iterdir()):
            raise ValueError(f"--output {output} is a folder that holds files but no {MANIFEST_NAME}: not a library "
                             "cmim-hf embed wrote; write to a new or empty folder")
        check_output_dir(output, "--output")
        return output, True
    output = check_output_file(args.output, suffixes=(".npy", ".csv"), inputs={"--input": args.input})
    return output, bool(args.input)


def _stream(args, output: Path) -> int:
    from ..library import embed_to_disk

    source = args.input if args.input else list(args.smiles)
    with plain_warnings("embed"):
        summary = embed_to_disk(
            source, output, model=args.model, kind=args.kind, text_column=args.text_column, split=args.split,
            storage_dtype=args.storage_dtype, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
            on_unknown=args.on_unknown, on_too_long=args.on_too_long, on_invalid=args.on_invalid,
            progress=args.progress, backend=args.backend, **({"shard_rows": args.shard_rows} if args.shard_rows else {}))
    if summary.rows:  # the main process (every process returns under accelerate launch)
        resumed = summary.rows - summary.embedded
        note = f", {resumed} from an earlier run" if resumed > 0 else ""
        print(f"embedded {summary.rows} molecules ({args.kind}, {summary.width} dims{note}) in {summary.seconds:.1f} s "
              f"-> {output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.smiles == ["-"] and not args.input:  # `cmim-hf embed -`: stdin, as `--input -`
        args.smiles, args.input = [], "-"
    try:  # before any work: found after an hour of embedding, a bad path would lose the hour
        output, streamed = _check_output(args)
        if streamed and args.smiles and args.input:
            raise ValueError("give SMILES as arguments or --input, not both, with a streamed --output")
        if args.shard_rows is not None and not (streamed and output.suffix.lower() not in (".npy", ".csv")):
            raise ValueError("--shard_rows applies to a parquet library --output (a folder or a .parquet path)")
        check_device(args.device)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    if streamed:
        try:
            return _stream(args, output)
        except user_errors() as error:
            return fail("embed", error)
    try:
        smiles = list(args.smiles)
        if args.input:
            smiles += _read_input(args.input, args.text_column, args.split, args.progress)
        if not smiles:
            raise ValueError("nothing to embed: give SMILES as arguments or a file with --input")

        from ..onnx_backend import load_embedder

        with plain_warnings("embed"):
            embed = load_embedder(args.model, backend=args.backend, device=args.device, dtype=args.dtype)
            vectors = embed(smiles, kind=args.kind, batch_size=args.batch_size, progress=args.progress,
                            on_unknown=args.on_unknown, on_too_long=args.on_too_long, on_invalid=args.on_invalid)
    except user_errors() as error:
        return fail("embed", error)
    if args.storage_dtype != "float32":
        vectors = vectors.astype(args.storage_dtype)
    _write(output, smiles, vectors, args.kind)
    if output is not None:
        print(f"embedded {len(smiles)} molecules ({args.kind}, {vectors.shape[1]} dims) -> {output}",
              file=sys.stderr)
    return 0
