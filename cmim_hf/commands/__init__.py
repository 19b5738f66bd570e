"""The `cmim-hf` commands, one module each with `main(argv) -> int`, its parser built with
`cmim_hf.checks.ArgumentParser` and `number()`; `cmim_hf.cli` registers them (every command lives here:
tests/test_architecture.py checks it).

Errors the user can fix (missing files, bad inputs, a missing optional dependency, an offline Hub) print one
`cmim-hf <command>: error: ...` line and return 1; bad arguments exit 2 (argparse). Warnings about the input
print as `cmim-hf <command>: warning: ...` lines.
"""

from __future__ import annotations

import contextlib
import sys
import warnings

__all__ = ["check_device", "fail", "plain_warnings", "user_errors"]


def fail(command: str, error: BaseException) -> int:
    print(f"cmim-hf {command}: error: {error}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def plain_warnings(command: str):
    """Warnings about the user's input as one `cmim-hf <command>: warning: ...` line each, without the
    file:line and source line Python would add."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"cmim-hf {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)
        warnings.showwarning = show  # restored by catch_warnings
        yield


def check_device(device: str | None) -> None:
    """Refuse a `--device` this machine cannot use (ValueError naming it), before a model is loaded onto it."""
    from ..checks import check_device as check

    check(device, "--device", available=True)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a command reports as one line: the user can fix them."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    # ImportError: an optional dependency a flag needs (RDKit for --on_invalid raise / --valid_only), named in it
    return FileNotFoundError, ValueError, TypeError, KeyError, ImportError, OfflineModeIsEnabled
