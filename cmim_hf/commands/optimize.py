"""`cmim-hf optimize`: property-guided optimisation in the latent space (see `cmim_hf.optimization`).

    cmim-hf optimize "CC(C)Cc1ccc(cc1)C(C)C(=O)O" --objective qed --budget 200 --min_similarity 0.4
    cmim-hf optimize --input starts.smi --objective mymodule:score --method both --output results.csv
    cmim-hf optimize --benchmark plogp qed --output_dir results/optimize   # resumable benchmark

Argument errors (bad numbers, an unknown objective, an unreadable start file) are one line,
`cmim-hf optimize: error: ...`, exit status 2, found before any model is loaded. Errors while running
(a model that cannot be found) are one line with exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ..pretrained import DEFAULT_GENERATOR
from ..saving import atomic_write
from ..checks import MAX_SEED, ArgumentParser, check_output_file, number
from . import fail, plain_warnings, user_errors

__all__ = ["main"]

SUMMARY = "improve molecules by a property (QED, pLogP, ...) with CMA-ES in the latent space, under a similarity floor"
# cmim_hf.scoring.PROPERTY_SCORES without importing RDKit here (tests/test_optimization.py keeps the two equal)
PROPERTY_NAMES = ("qed", "logp", "plogp", "tpsa")
# The oracle budget of the committed benchmark (results/optimize): 1400 searches (pLogP: CMA-ES at 4 floors and
# random search for 200 molecules; QED: both for 200) x 120 decodes at the 32-39 decodes/s measured on one busy
# core with cmim-moses-small (results/optimize/pilot) is 1.2-1.5 h.
BENCHMARK_BUDGET = 120


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cmim-hf optimize", description=SUMMARY)
    parser.add_argument("smiles", nargs="*", metavar="SMILES", help="start molecules (or use --input)")
    parser.add_argument("--input", default=None, metavar="FILE",
                        help="start molecules, read as `cmim-hf embed --input` reads them (.smi/.txt, .csv, .tsv, "
                             ".jsonl, .parquet, datasets folders, a Hub data set id (cached, else downloaded unless HF_HUB_OFFLINE=1), - for stdin; column --column)")
    parser.add_argument("--column", "--text_column", default=None,
                        help="the SMILES column of a table input (default: text, else a smiles column, else the only "
                             "column)")
    parser.add_argument("--model", default=DEFAULT_GENERATOR,
                        help=f"shipped checkpoint name, model folder or Hub repo id (default {DEFAULT_GENERATOR})")
    parser.add_argument("--objective", default=None,
                        help=f"what to maximise: {', '.join(PROPERTY_NAMES)} (penalised logP), or "
                             "module:function, a Python function SMILES -> float or None (default plogp)")
    parser.add_argument("--method", default=None, choices=("cmaes", "random", "both"),
                        help="CMA-ES, random search around the start (the baseline), or both (default cmaes)")
    parser.add_argument("--budget", type=number(integer=True, minimum=1), default=None,
                        help=f"oracle calls (decoded latents) per start molecule and method (default 200; "
                             f"{BENCHMARK_BUDGET} with --benchmark)")
    parser.add_argument("--population_size", type=number(integer=True, minimum=1), default=20,
                        help="latents per CMA-ES generation, at least 2 (default 20)")
    parser.add_argument("--sigma", type=number(above=0), default=0.5,
                        help="CMA-ES initial step size and random-search noise scale, in latent units (default 0.5, for "
                             "cmim-moses-base; 0.1 suited cmim-moses-small: results/optimize/pilot)")
    parser.add_argument("--min_similarity", type=number(minimum=0, maximum=1, what="a Tanimoto similarity"), nargs="+",
                        default=None, metavar="S",
                        help="Tanimoto floor (ECFP4) to the start molecule, in [0, 1]; several give one result "
                             "each (default 0.4)")
    parser.add_argument("--seed", type=number(integer=True, minimum=0, maximum=MAX_SEED), default=0,
                        help="makes the search reproducible (default 0)")
    parser.add_argument("--max_new_tokens", type=number(integer=True, minimum=1), default=None)
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda; default CUDA when available")
    parser.add_argument("--output", default=None, metavar="FILE",
                        help="write the per-molecule results as .csv or .json")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.add_argument("--benchmark", nargs="+", choices=("plogp", "qed"), default=None,
                        help="run the resumable benchmark tasks on MOSES test molecules into --output_dir "
                             "(both methods; see cmim_hf.evaluation.optimization_benchmark)")
    parser.add_argument("--output_dir", default="results/optimize", help="benchmark folder (default results/optimize)")
    parser.add_argument("--num_molecules", type=number(integer=True, minimum=1), default=200,
                        help="benchmark start molecules per task (default 200)")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """Everything that can be checked before the model loads; returns the start molecules."""
    if args.population_size < 2:
        parser.error(f"argument --population_size: CMA-ES needs at least 2, got {args.population_size}")
    if args.benchmark:
        given = [f"--{name}" for name in ("input", "output", "objective", "method", "min_similarity")
                 if getattr(args, name) is not None]
        if args.smiles or given:
            parser.error("--benchmark sets its own start molecules, objectives, methods and thresholds and writes "
                         f"into --output_dir; it does not take {', '.join(given) or 'SMILES'}")
        args.budget = args.budget or BENCHMARK_BUDGET
        return []
    args.budget = args.budget or 200
    args.objective = args.objective or "plogp"
    args.method = args.method or "cmaes"
    args.min_similarity = args.min_similarity or [0.4]
    if args.output and Path(args.output).suffix not in (".csv", ".json"):  # "" is refused below as empty
        parser.error(f"argument --output: expected a .csv or .json file, got {args.output!r}")
    if args.output is not None:
        try:  # before the search: a folder or an unwritable place there would lose its results
            check_output_file(args.output, inputs={"--input": args.input})
        except (ValueError, OSError) as error:
            parser.error(str(error))
    from ..scoring import resolve_objective

    try:
        resolve_objective(args.objective)
    except ValueError as error:
        parser.error(f"argument --objective: {error}")
    smiles = list(args.smiles)
    if args.input:
        try:
            from ..data import read_texts

            smiles += read_texts(args.input, args.column, allow_stdin=True)
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as error:
            parser.error(f"argument --input: cannot read start molecules from {args.input}: {error}")
    if not smiles:
        parser.error("no start molecules: give SMILES as arguments or a file with --input")
    return smiles


def _write_results(results, path: Path) -> None:
    rows = [r.as_dict() for r in results]
    if path.suffix == ".json":
        from ..evaluation.report import write_json

        write_json({"results": rows}, path)
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buffer.getvalue())


def _format(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_summary(results) -> None:
    print("start -> best | method | min sim | status | start score -> best score | similarity | valid")
    for r in results:
        print(f"{r.start_smiles} -> {r.best_smiles or '-'} | {r.method} | {r.min_similarity:g} | {r.status} | "
              f"{_format(r.start_score)} -> {_format(r.best_score)} | {_format(r.similarity, 2)} | "
              f"{_format(r.fraction_valid, 2)}" + (f" | {r.message}" if r.message else ""))
    groups = {}
    for r in results:
        groups.setdefault((r.method, r.min_similarity), []).append(r)
    print("\nsummary (improvement: mean over the molecules not failed; 0 when the start is returned)")
    for (method, threshold), group in groups.items():
        done = [r for r in group if r.status != "failed"]
        improved = sum(r.status == "improved" for r in done)
        mean = sum(r.improvement for r in done) / len(done) if done else None
        print(f"  {method}, min similarity {threshold:g}: {improved} of {len(group)} improved, mean improvement "
              f"{_format(mean)}, {len(group) - len(done)} failed, "
              f"{sum(r.oracle_calls for r in group)} oracle calls")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(argv)
        from ..optimization import _require_dependencies  # torch: after the arguments are parsed

        _require_dependencies()
        smiles = _check(parser, args)
    except SystemExit as exit_:  # argparse's --help (0) and argument errors (2)
        return int(exit_.code or 0)
    except ImportError as error:  # RDKit or cmaes missing: the message names the extra to install
        return fail("optimize", error)

    if args.benchmark:
        from ..evaluation.optimization_benchmark import run_optimization_benchmark, summary_markdown

        threads = os.environ.get("OMP_NUM_THREADS")
        command = (f"OMP_NUM_THREADS={threads} " if threads else "") + "cmim-hf optimize " + shlex.join(argv)
        try:
            summaries = run_optimization_benchmark(
                args.benchmark, args.output_dir, model=args.model, num_molecules=args.num_molecules,
                budget=args.budget, population_size=args.population_size, sigma=args.sigma, seed=args.seed,
                device=args.device, command=command, progress=args.progress)
        except user_errors() as error:
            return fail("optimize", error)
        print(summary_markdown(summaries))
        return 0

    from ..embeddings import load_pretrained
    from ..optimization import optimize_molecules

    try:
        model, tokenizer = load_pretrained(args.model, device=args.device)
        with plain_warnings("optimize"):
            results = optimize_molecules(model, tokenizer, smiles, args.objective, method=args.method,
                                         budget=args.budget, population_size=args.population_size, sigma=args.sigma,
                                         min_similarity=args.min_similarity, seed=args.seed,
                                         max_new_tokens=args.max_new_tokens, progress=args.progress)
    except user_errors() as error:
        return fail("optimize", error)
    if args.output is not None:
        _write_results(results, Path(args.output))
        print(f"wrote {len(results)} results -> {args.output}", file=sys.stderr)
    _print_summary(results)
    return 0
