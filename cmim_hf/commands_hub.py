"""The `cmim-hf push`, `cmim-hf embed` and `cmim-hf generate` commands.

Each command comes in two shapes, for either style of CLI:
  - `add_<name>_parser(subparsers)` adds it to an argparse sub-parser set; `run_<name>(args) -> int` runs it.
  - `<name>_main(argv) -> int` parses `argv` itself (prog "cmim-hf <name>"), for `cmim_hf.cli._register`.
Errors the user can fix (missing files, bad inputs, offline Hub) print one line to stderr and return 1.
Heavy imports (torch, transformers) happen inside the run functions, so registering the commands is cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import io
import sys
import warnings
from pathlib import Path

from .saving import atomic_write

__all__ = [
    "add_embed_parser",
    "add_generate_parser",
    "add_push_parser",
    "embed_main",
    "generate_main",
    "push_main",
    "run_embed",
    "run_generate",
    "run_push",
]

PUSH_SUMMARY = "upload a saved model folder (with its README.md card) to a Hub repo"
EMBED_SUMMARY = "embed SMILES with a cMIM model (to .npy or .csv)"
GENERATE_SUMMARY = "sample SMILES from a cMIM model's prior or around a molecule, or interpolate between two"


def _fail(command: str, error: BaseException) -> int:
    print(f"cmim-hf {command}: error: {error}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _plain_warnings(command: str):
    """Warnings about the user's input as one `cmim-hf <command>: warning: ...` line each, without the
    file:line and source line Python would add."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"cmim-hf {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = show  # restored by catch_warnings
        yield


def _user_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import OfflineModeIsEnabled

    # ImportError: an optional dependency a flag needs (RDKit for --on_invalid raise / --valid_only), named in it
    return FileNotFoundError, ValueError, TypeError, KeyError, ImportError, OfflineModeIsEnabled


def _standalone(name: str, summary: str, configure) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"cmim-hf {name}", description=summary)
    configure(parser)
    return parser


# ---------------------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------------------


def _configure_push(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR", help="a folder written by save_model_folder, with README.md")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub repo, namespace/name (created if needed)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if missing); default main")
    parser.add_argument("--create_pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--token", default=None, help="Hub token; default the logged-in one (HF_TOKEN)")
    parser.set_defaults(run=run_push)


def add_push_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("push", help=PUSH_SUMMARY, description=PUSH_SUMMARY)
    _configure_push(parser)
    return parser


def run_push(args: argparse.Namespace) -> int:
    from .hub import push_folder

    try:
        url = push_folder(args.folder, args.repo_id, private=args.private, revision=args.revision,
                          create_pr=args.create_pr, token=args.token, commit_message=args.commit_message)
    except _user_errors() as error:
        return _fail("push", error)
    print(url)
    return 0


def push_main(argv: list[str]) -> int:
    return run_push(_standalone("push", PUSH_SUMMARY, _configure_push).parse_args(argv))


# ---------------------------------------------------------------------------------------------------------
# embed
# ---------------------------------------------------------------------------------------------------------


def _configure_embed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("smiles", nargs="*", metavar="SMILES", help="molecules to embed (or use --input)")
    parser.add_argument("--model", default="cmim-moses-tiny",
                        help="shipped checkpoint name, model folder or Hub repo id (default cmim-moses-tiny)")
    parser.add_argument("--input", default=None, metavar="FILE",
                        help="SMILES file: .csv/.csv.gz (column --column) or text, one SMILES first on each line")
    parser.add_argument("--column", default="smiles", help="the SMILES column of a CSV input (default smiles)")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="write .npy (array N x E) or .csv (smiles + one column per dimension); "
                             "default CSV on stdout")
    parser.add_argument("--kind", default="informative", choices=("informative", "latent", "decoder"))
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1; default CUDA when available")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="weights and compute; bfloat16 is 1.6-2.4x faster on CPUs with AVX512-BF16 (output float32)")
    parser.add_argument("--on_unknown", default="warn", choices=("ignore", "warn", "raise"))
    parser.add_argument("--on_too_long", default="warn", choices=("truncate", "warn", "raise"))
    parser.add_argument("--on_invalid", default="warn", choices=("ignore", "warn", "raise"),
                        help="SMILES that RDKit cannot parse (needs RDKit): embedded with a warning (default), "
                             "not checked, or an error naming them")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.set_defaults(run=run_embed)


def add_embed_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("embed", help=EMBED_SUMMARY, description=EMBED_SUMMARY)
    _configure_embed(parser)
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


def run_embed(args: argparse.Namespace) -> int:
    try:
        smiles = list(args.smiles)
        if args.input:
            smiles += _read_smiles_file(Path(args.input), args.column)
        if not smiles:
            raise ValueError("nothing to embed: give SMILES as arguments or a file with --input")
        output = Path(args.output) if args.output else None
        if output is not None and output.suffix not in (".npy", ".csv"):
            raise ValueError(f"--output must end in .npy or .csv, got {output.name!r}")

        from .embeddings import embed_smiles, load_pretrained

        model, tokenizer = load_pretrained(args.model, device=args.device, dtype=args.dtype)
        with _plain_warnings("embed"):
            vectors = embed_smiles(model, tokenizer, smiles, kind=args.kind, batch_size=args.batch_size,
                                   progress=args.progress, on_unknown=args.on_unknown,
                                   on_too_long=args.on_too_long, on_invalid=args.on_invalid)
    except _user_errors() as error:
        return _fail("embed", error)

    import numpy as np

    header = ["smiles"] + [f"cmim_{args.kind}_{i}" for i in range(vectors.shape[1])]

    def write_csv(text_handle) -> None:
        writer = csv.writer(text_handle, lineterminator="\n")
        writer.writerow(header)
        for text, row in zip(smiles, vectors):
            writer.writerow([text, *(repr(float(v)) for v in row)])  # repr: shortest round-tripping float

    if output is None:
        write_csv(sys.stdout)
        return 0
    if output.suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, vectors)
        atomic_write(output, buffer.getvalue())
    else:
        buffer = io.StringIO()
        write_csv(buffer)
        atomic_write(output, buffer.getvalue())
    print(f"embedded {len(smiles)} molecules ({args.kind}, {vectors.shape[1]} dims) -> {output}", file=sys.stderr)
    return 0


def embed_main(argv: list[str]) -> int:
    return run_embed(_standalone("embed", EMBED_SUMMARY, _configure_embed).parse_args(argv))


# ---------------------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------------------


def _configure_generate(parser: argparse.ArgumentParser) -> None:
    # The small model: 10% valid prior samples against the tiny one's 3.6% (results/small, results/tiny-cpu).
    parser.add_argument("--model", default="cmim-moses-small",
                        help="shipped checkpoint name, model folder or Hub repo id (default cmim-moses-small)")
    parser.add_argument("--num_samples", type=int, default=10)
    parser.add_argument("--around", default=None, metavar="SMILES",
                        help="sample near this molecule (mu + radius * noise) instead of from the prior")
    parser.add_argument("--radius", type=float, default=None, help="noise scale around --around (default 1.0)")
    parser.add_argument("--scale", type=float, default=1.0, help="scale of the prior N(0, scale^2 I)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the latent noise")
    parser.add_argument("--max_new_tokens", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--between", nargs=2, default=None, metavar=("START", "END"),
                        help="decode NUM_SAMPLES points evenly spaced on the latent line from START to END, both "
                             "ends included (their reconstructions)")
    parser.add_argument("--valid_only", action="store_true",
                        help="decode latents until NUM_SAMPLES distinct molecules that RDKit parses are found "
                             "(canonical SMILES; with --around, not the seed itself); needs RDKit")
    parser.add_argument("--max_draws", type=int, default=None,
                        help="with --valid_only, the most latents to decode (default 100 x NUM_SAMPLES)")
    parser.add_argument("--progress", action="store_true", help="with --valid_only, show a progress bar")
    parser.add_argument("--output", default=None, metavar="FILE", help="write one SMILES per line; default stdout")
    parser.set_defaults(run=run_generate)


def add_generate_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("generate", help=GENERATE_SUMMARY, description=GENERATE_SUMMARY)
    _configure_generate(parser)
    return parser


def run_generate(args: argparse.Namespace) -> int:
    try:
        if args.radius is not None and args.around is None:
            raise ValueError("--radius needs --around SMILES (the molecule to sample near)")
        if args.between is not None and (args.around is not None or args.valid_only):
            raise ValueError("--between interpolates; it does not combine with --around or --valid_only")
        from .embeddings import generate_smiles, interpolate_smiles, load_pretrained

        model, tokenizer = load_pretrained(args.model, device=args.device)
        with _plain_warnings("generate"):
            if args.between is not None:
                samples = interpolate_smiles(model, tokenizer, *args.between, num_steps=args.num_samples,
                                             max_new_tokens=args.max_new_tokens)
            else:
                samples = generate_smiles(model, tokenizer, args.num_samples, around=args.around,
                                          radius=1.0 if args.radius is None else args.radius, scale=args.scale,
                                          seed=args.seed, max_new_tokens=args.max_new_tokens,
                                          valid_only=args.valid_only, max_draws=args.max_draws,
                                          progress=args.progress)
    except _user_errors() as error:
        return _fail("generate", error)
    text = "".join(f"{s}\n" for s in samples)
    if args.output:
        atomic_write(args.output, text)
        print(f"wrote {len(samples)} samples -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def generate_main(argv: list[str]) -> int:
    return run_generate(_standalone("generate", GENERATE_SUMMARY, _configure_generate).parse_args(argv))
