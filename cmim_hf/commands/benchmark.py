"""`cmim-hf benchmark [--quick] [--output_dir DIR]` (and `python -m cmim_hf.benchmarks`): the command line of the
suite in `cmim_hf/benchmarks/suite.py`, parsed before torch is imported, so `--help` and argument errors answer at
once."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

from ..checks import ArgumentParser, check_output_dir, number

__all__ = ["add_arguments", "args_to_argv", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quick", action="store_true", help="small sizes, a few rounds (well under a minute)")
    parser.add_argument("--output_dir", default="benchmarks", help="where results.json, results.md, scaling.png go")
    parser.add_argument("--sections", default=None,
                        help="comma-separated subset of: training,bf16,single_key,compile,embedding,tokenization,"
                             "generation,scaling,onnx,search,library")
    parser.add_argument("--threads", type=number(integer=True, minimum=1), default=None,
                        help="torch intra-op threads (default: torch's default, all usable cores; 1 with --quick)")
    parser.add_argument("--omp_wait_policy", choices=("passive", "inherit"), default="passive",
                        help="'passive' (default) reruns the suite in a child process with OMP_WAIT_POLICY=PASSIVE "
                             "unless it is already set: spinning OpenMP threads make CPU timings on a shared "
                             "machine erratic; 'inherit' keeps the environment as it is")
    parser.add_argument("--no_profile", action="store_true", help="skip the profiler table of the full run")
    return parser


def args_to_argv(args: argparse.Namespace) -> list[str]:
    """The command line that `add_arguments` parses into `args`."""
    argv = ["--quick"] if args.quick else []
    argv += ["--output_dir", str(args.output_dir), "--omp_wait_policy", args.omp_wait_policy]
    if args.sections:
        argv += ["--sections", args.sections]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if args.no_profile:
        argv.append("--no_profile")
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(ArgumentParser(prog="cmim-hf benchmark",
                                          description="Speed and memory benchmarks of cmim-hf, as ratios "
                                                      "against references measured in the same run."))
    args = parser.parse_args(argv)
    from ..benchmarks.suite import print_headline, run_benchmarks, settings_from_args

    try:  # before minutes of measuring
        settings = settings_from_args(args)
        check_output_dir(args.output_dir)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    status = rerun_with_passive_openmp(args)
    if status is not None:  # the child printed the headline
        return status
    return print_headline(run_benchmarks(args.quick, args.output_dir, settings))


def rerun_with_passive_openmp(args: argparse.Namespace) -> int | None:
    """With `--omp_wait_policy passive` and OMP_WAIT_POLICY unset, run the suite again in a child process with
    OMP_WAIT_POLICY=PASSIVE (libgomp reads it once, when torch loads it) and return its exit status; else None."""
    if args.omp_wait_policy != "passive" or "OMP_WAIT_POLICY" in os.environ:
        return None
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    return subprocess.call([sys.executable, "-m", "cmim_hf.benchmarks", *args_to_argv(args)], env=env)
