"""The `cmim-hf` command: `cmim-hf <command> [arguments]`.

Each command is a `Command` in `COMMANDS`: a name, a one-line summary and a function that takes the rest of
the command line and returns an exit status. A command imports what it needs inside its function, so
`cmim-hf --help` (and importing this module) stays fast and never imports `cmim_hf.training`.

To add a command (evaluate, embed, generate, push, benchmark, ...): write `def _run_name(argv) -> int`
(parse `argv` with its own argparse/HfArgumentParser, `prog="cmim-hf name"`) and register it with
`_register("name", "summary", _run_name)` below, in the order `--help` should list it.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "Command", "main"]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    run: Callable[[list[str]], int]


COMMANDS: dict[str, Command] = {}


def _register(name: str, summary: str, run: Callable[[list[str]], int]) -> None:
    COMMANDS[name] = Command(name, summary, run)


# ---------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------


def _run_train(argv: list[str]) -> int:
    """`cmim-hf train [--recipe NAME|PATH] [--field value ...]`; see `cmim-hf train --help`."""
    from cmim_hf.training import main as train_main  # the training extra is only needed here

    return train_main(argv)


_register("train", "train a model with Accelerate from a recipe (--recipe tiny-cpu|small|molmim-base|PATH); "
                   "multi-GPU: accelerate launch -m cmim_hf.training", _run_train)


def _run_evaluate(argv: list[str]) -> int:
    """`cmim-hf evaluate MODEL --output_dir DIR`; see `cmim-hf evaluate --help`."""
    from cmim_hf.evaluation.model_eval import main as evaluate_main

    return evaluate_main(argv)


def _run_compare(argv: list[str]) -> int:
    """`cmim-hf compare`: trains, so it lives in the training package."""
    from cmim_hf.training.compare import main as compare_main

    return compare_main(argv)


def _run_embed(argv: list[str]) -> int:
    from cmim_hf.commands_hub import embed_main

    return embed_main(argv)


def _run_generate(argv: list[str]) -> int:
    from cmim_hf.commands_hub import generate_main

    return generate_main(argv)


def _run_push(argv: list[str]) -> int:
    from cmim_hf.commands_hub import push_main

    return push_main(argv)


def _run_refresh(argv: list[str]) -> int:
    from cmim_hf.release import main as refresh_main

    return refresh_main(argv)


def _run_benchmark(argv: list[str]) -> int:
    from cmim_hf.benchmarks.cli import run_benchmark_command

    return run_benchmark_command(argv)


_register("evaluate", "downstream probes against ECFP4 / RDKit 2D, reconstruction and generation metrics of a "
                      "model (folder, Hub id or shipped name) -> results.json, results.md, plots", _run_evaluate)
_register("compare", "the paper's experiment: train AE, VAE, MIM, cMIM, InfoNCE at several batch sizes, evaluate "
                     "each, write the comparison table and batch-size plots", _run_compare)
_register("embed", "embed SMILES with a cMIM model (print, or write .npy / .csv)", _run_embed)
_register("generate", "sample SMILES from a cMIM model's prior, or around a molecule", _run_generate)
_register("push", "upload a saved model folder (with its README.md card) to a Hub repo", _run_push)
_register("refresh", "re-save model folders (or --shipped checkpoints) with this package's code, keeping weights, "
                     "card and files; refuses if their embeddings would change", _run_refresh)
_register("benchmark", "speed and memory benchmarks as ratios against references measured in the same run "
                       "(--quick; --output_dir, default benchmarks/)", _run_benchmark)


# ---------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------


def _usage() -> str:
    width = max((len(name) for name in COMMANDS), default=0)
    lines = ["usage: cmim-hf <command> [arguments]   (cmim-hf <command> --help for its arguments)", "",
             "commands:"]
    lines += [f"  {c.name.ljust(width)}  {c.summary}" for c in COMMANDS.values()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cmim-hf`; returns the exit status (the console script passes it to `sys.exit`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from cmim_hf import __version__

        print(f"cmim-hf {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"cmim-hf: unknown command {name!r}{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    return int(COMMANDS[name].run(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
