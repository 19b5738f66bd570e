"""Checks of the values users hand to the package, shared by the Python API and the commands: numbers (finite, in
range), output paths (writable before the work starts) and devices.

Each check raises the built-in exception a Python user expects (TypeError, ValueError, IsADirectoryError,
NotADirectoryError, PermissionError) with a message naming the value and what was expected; the commands print
the same message as one `cmim-hf <command>: error: ...` line. `ArgumentParser` is argparse with one-line errors,
and `number` makes argparse types from the same rules.

Light on imports (no torch at module level): the commands' `--help` path imports it.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
from pathlib import Path

__all__ = ["MAX_GENERATED_SAMPLES", "MAX_NUMPY_SEED", "MAX_SEED", "ArgumentParser", "check_device", "check_number", "check_output_dir",
           "check_output_file", "check_path_given", "number"]

# generate_smiles returns its samples as one list in memory (decoded in batches); more per call is a mistake
# (`--num_samples 10**12`) rather than a plan, and a loop over seeds serves that plan.
MAX_GENERATED_SAMPLES = 1_000_000
MAX_SEED = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes
MAX_NUMPY_SEED = 2**32 - 1  # the largest seed numpy takes (Accelerate's set_seed seeds numpy too)


def _expected(integer: bool, minimum: float | None, maximum: float | None, above: float | None,
              below: float | None, what: str | None = None) -> str:
    def show(bound: float) -> str:
        return str(bound) if isinstance(bound, int) else f"{bound:g}"

    kind = what or ("an integer" if integer else "a finite number")
    if minimum is not None and maximum is not None:
        return f"{kind} in [{show(minimum)}, {show(maximum)}]"
    if minimum is not None and below is not None:
        return f"{kind} in [{show(minimum)}, {show(below)})"
    bounds = [f"{sign} {show(bound)}" for sign, bound in ((">", above), (">=", minimum), ("<", below),
                                                          ("<=", maximum)) if bound is not None]
    return " ".join([kind, *bounds])


def check_number(name: str, value, *, integer: bool = False, minimum: float | None = None,
                 maximum: float | None = None, above: float | None = None, below: float | None = None):
    """Return `value` if it is a finite number (an int with `integer`) within the bounds (`minimum`, `maximum`
    inclusive; `above`, `below` strict), else raise.

    Raises:
        TypeError: not a number (bools are not numbers here), or not an int with `integer`.
        ValueError: NaN, infinite, or out of range; the message names `name` and the expected range.
    """
    expected = _expected(integer, minimum, maximum, above, below)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    finite = isinstance(value, numbers.Integral) or math.isfinite(value)  # an int too large for a float is finite
    if not finite or (minimum is not None and value < minimum) or \
            (maximum is not None and value > maximum) or (above is not None and value <= above) or \
            (below is not None and value >= below):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def number(*, integer: bool = False, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None, what: str | None = None):
    """An argparse `type` parsing an int (with `integer`) or a finite float within the bounds (see check_number).

    what: the value's kind in the error message instead of "an integer" / "a finite number" (e.g. "a Tanimoto
    similarity": `expected a Tanimoto similarity in [0, 1], got '1.5'`)."""
    expected = _expected(integer, minimum, maximum, above, below, what)

    def parse(text: str):
        try:
            return check_number("value", int(text) if integer else float(text), integer=integer, minimum=minimum,
                                maximum=maximum, above=above, below=below)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    parse.__name__ = expected  # what argparse would print if it named the type
    return parse


def _first_existing(path: Path) -> Path:
    """`path` or its nearest existing ancestor."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(path: Path, name: str) -> None:
    """The folder that would hold `path` exists or can be created there, and can be written."""
    ancestor = _first_existing(path.parent)
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{name} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{name} {path}: cannot write in {ancestor} (permission denied)")


def check_path_given(path: str | os.PathLike, name: str) -> str | os.PathLike:
    """An empty string would be Path("") = the current folder: a typo (`--output "$UNSET"`), never a plan."""
    if not os.fspath(path).strip():
        raise ValueError(f"{name} is empty; expected a path")
    return path


def check_output_file(path: str | os.PathLike, name: str = "--output", suffixes: tuple[str, ...] = (),
                      inputs: dict[str, str | os.PathLike | None] | None = None) -> Path:
    """Return `path` as a Path if a file can be written there (without writing it), else raise.

    inputs: the files the command reads, by option name (`{"--input": ...}`); writing over one is refused.

    Raises:
        ValueError: `suffixes` are given and `path` ends in none of them, or `path` is one of the `inputs`.
        IsADirectoryError: `path` is a folder.
        NotADirectoryError: a parent of `path` is a file.
        PermissionError: its folder cannot be written.
    """
    path = Path(check_path_given(path, name))
    if path.is_dir():
        raise IsADirectoryError(f"{name} {path} is a folder; expected the path of a file to write")
    if path.exists() and not path.is_file():  # the atomic write renames over it: as root, /dev/full becomes a file
        raise ValueError(f"{name} {path} is a device, pipe or socket; expected the path of a regular file to write")
    for option, source in (inputs or {}).items():
        if source is not None and path.exists() and Path(source).exists() and path.samefile(source):
            raise ValueError(f"{name} {path} is the file {option} reads; write the output elsewhere")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{name} must end in {' or '.join(suffixes)}, got {str(path)!r}")
    _check_creatable(path, name)
    return path


def check_output_dir(path: str | os.PathLike, name: str = "--output_dir") -> Path:
    """Return `path` as a Path if it is, or can be created as, a writable folder (nothing is created), else raise
    NotADirectoryError (it or a parent is a file) or PermissionError; ValueError for an empty path."""
    path = Path(check_path_given(path, name))
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{name} {path} is a file; expected a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{name} {path}: cannot write in it (permission denied)")
    else:
        _check_creatable(path, name)
    return path


def check_device(device, name: str = "device", *, available: bool = False):
    """`device` as a torch.device (None stays None), or ValueError naming it (as `name`). With `available`, also
    refuse a device this machine cannot use (the commands check it before loading a model onto it)."""
    import torch

    if device is None or isinstance(device, torch.device) and not available:
        return device
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} {device!r} is not a device name: expected e.g. cpu, cuda, cuda:1, mps") from None
    if available:
        usable = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
        if not usable.get(parsed.type, True):  # other kinds (xpu, ...): left to torch
            raise ValueError(f"{name} {device}: this machine has no {parsed.type.upper()} device that torch "
                             f"{torch.__version__} can use; use {name} cpu, or leave {name} out")
        if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return parsed


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line, `<prog>: error: <message>` (exit 2); the usage is left to --help."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
