"""The `cmim-hf benchmark` command, ready to plug into cmim_hf/cli.py.

With cmim_hf/cli.py's registry (a command is a function of the remaining argv):

    def _run_benchmark(argv: list[str]) -> int:
        from cmim_hf.benchmarks.cli import run_benchmark_command

        return run_benchmark_command(argv)

    _register("benchmark", "speed and memory benchmarks as ratios against references measured in the same run "
                           "(--quick; --output_dir, default benchmarks/)", _run_benchmark)

With an argparse sub-command parser instead:

    from cmim_hf.benchmarks.cli import add_benchmark_parser
    add_benchmark_parser(subparsers)          # sets func=run_benchmark
    ...
    return args.func(args)
"""

from __future__ import annotations

import argparse

from .suite import add_arguments, print_headline, run_from_args

__all__ = ["add_benchmark_parser", "run_benchmark", "run_benchmark_command"]

SUMMARY = "speed and memory benchmarks as ratios against references measured in the same run"


def add_benchmark_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `benchmark` sub-command to an argparse `subparsers` object; its `func` is `run_benchmark`."""
    parser = subparsers.add_parser("benchmark", help=SUMMARY, description=SUMMARY)
    add_arguments(parser)
    parser.set_defaults(func=run_benchmark)
    return parser


def run_benchmark(args: argparse.Namespace) -> int:
    """Run the suite for parsed arguments (see `cmim-hf benchmark --help`); prints the headline ratios."""
    return print_headline(run_from_args(args))


def run_benchmark_command(argv: list[str]) -> int:
    """`cmim-hf benchmark ARGV...` for a registry of argv-taking commands."""
    parser = add_arguments(argparse.ArgumentParser(prog="cmim-hf benchmark", description=SUMMARY))
    return run_benchmark(parser.parse_args(argv))
