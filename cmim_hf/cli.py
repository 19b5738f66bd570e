"""The `cmim-hf` command: `cmim-hf <command> [arguments]`.

Each command is a `Command` in `COMMANDS`: a name, a one-line summary and a function that takes the rest of
the command line and returns an exit status. This module imports only the standard library and the package's
lazy `__init__` (no torch, transformers, scikit-learn or datasets), and each command module parses its
arguments before it imports anything heavy, so `cmim-hf --help`, `cmim-hf <command> --help` and argument
errors answer at once (`tests/test_cli.py` checks which modules the `--help` path imports).

To add a command: write `cmim_hf/commands/<name>.py` with `main(argv) -> int`, parsing `argv` with
`cmim_hf.checks.ArgumentParser` (`prog="cmim-hf name"`) before it imports anything heavy (the model's names come
from `cmim_hf.modeling.names`), and register it with `_register("name", "summary", _lazy("cmim_hf.commands.name"))`
below, in the order `--help` should list it.

Whatever the command, Ctrl-C ends with one `interrupted` line (exit 130), a closed pipe (`| head`) ends quietly
(exit 141, as SIGPIPE would), and an OSError the command did not handle (permissions, a full disk) is one
`error:` line naming the file (exit 1).
"""

from __future__ import annotations

import difflib
import importlib
import os
import signal
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


def _lazy(module: str) -> Callable[[list[str]], int]:
    """The command `module.main(argv)`; the module (and what it imports) loads only when the command runs."""
    def run(argv: list[str]) -> int:
        return importlib.import_module(module).main(argv)

    return run


_register("train", "train a model with Accelerate from a recipe (--recipe tiny-cpu|small|molmim-base|PATH); "
                   "multi-GPU: accelerate launch -m cmim_hf.training", _lazy("cmim_hf.commands.train"))
_register("evaluate", "downstream probes against ECFP4 / RDKit 2D, reconstruction and generation metrics of a "
                      "model (folder, Hub id or shipped name) -> results.json, results.md, plots (--update_card: "
                      "into the model folder's card too)",
          _lazy("cmim_hf.commands.evaluate"))
_register("compare", "the paper's experiment: train AE, VAE, MIM, cMIM, InfoNCE at several batch sizes, evaluate "
                     "each, write the comparison table and batch-size plots", _lazy("cmim_hf.commands.compare"))
_register("compare-backbones", "informative embeddings beyond MIM: plain BART and T5 auto-encoders and cMIM-BART, "
                               "several seeds, encoder mean-pool vs decoder vs informative",
          _lazy("cmim_hf.commands.compare_backbones"))
_register("embed", "embed SMILES with a cMIM model (print, or write .npy / .csv)", _lazy("cmim_hf.commands.embed"))
_register("export", "export a model's embedding forward pass to ONNX (--quantize int8) for ONNX Runtime without "
                    "torch", _lazy("cmim_hf.commands.export"))
_register("evaluate-search", "is the search any good: cMIM vs ECFP4 nearest neighbours as property predictors on "
                             "MOSES, recall of the approximate index", _lazy("cmim_hf.commands.evaluate_search"))
_register("index", "build a FAISS nearest-neighbour index of a library cmim-hf embed wrote (exact, or IVF when large)",
          _lazy("cmim_hf.commands.index"))
_register("search", "the k library molecules nearest to query SMILES in an index (cosine, ECFP4 Tanimoto) -> CSV",
          _lazy("cmim_hf.commands.search"))
_register("generate", "sample SMILES from a cMIM model's prior, or around a molecule",
          _lazy("cmim_hf.commands.generate"))
_register("optimize", "improve molecules by a property (QED, pLogP, your function) with CMA-ES in the latent space, "
                      "under a similarity floor; --benchmark for the MOSES benchmark", _lazy("cmim_hf.commands.optimize"))
_register("push", "upload a saved model folder (with its README.md card) to a Hub repo", _lazy("cmim_hf.commands.push"))
_register("refresh", "re-save model folders (or --shipped checkpoints) with this package's code and a card "
                     "regenerated from their files, keeping weights and files; refuses if their embeddings would "
                     "change", _lazy("cmim_hf.commands.refresh"))
_register("benchmark", "speed and memory benchmarks as ratios against references measured in the same run "
                       "(--quick; --output_dir, default benchmarks/)", _lazy("cmim_hf.commands.benchmark"))


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
        print(f"cmim-hf: error: unknown command {name!r}{hint}; the commands are {', '.join(COMMANDS)} (see cmim-hf "
              "--help)", file=sys.stderr)
        return 2
    # transformers' own bars ("Loading weights", "Writing model shards") print for every model a command loads,
    # which is noise here; the commands draw their own bars. HF_HUB_DISABLE_PROGRESS_BARS=0 brings them back.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(COMMANDS[name].run(rest) or 0)
    except KeyboardInterrupt:
        print(f"\ncmim-hf {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`cmim-hf embed ... | head -1`): stop quietly, as cat would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 128 + signal.SIGPIPE
    except OSError as error:  # the machine's refusal (permissions, a full disk, ...), the file named in it
        print(f"cmim-hf {name}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
