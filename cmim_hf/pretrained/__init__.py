"""Checkpoints shipped inside the package: `cmim_hf/pretrained/<name>/`, each a folder written by
`cmim_hf.saving.save_model_folder` (weights, config, tokenizer, code, card).

The registry is the folder itself: any sub-folder holding a `config.json` is a checkpoint, named after the
folder. Nothing is listed by hand, so adding a release is adding its folder (and, for regular installs,
the package-data globs in pyproject.toml that carry its files into the wheel).

    >>> from cmim_hf import pretrained_path, list_pretrained
    >>> list_pretrained()                       # ['cmim-moses-base', 'cmim-moses-small', 'cmim-moses-tiny']
    >>> pretrained_path("cmim-moses-tiny")      # .../cmim_hf/pretrained/cmim-moses-tiny
"""

from __future__ import annotations

import difflib
from pathlib import Path

__all__ = ["DEFAULT_GENERATOR", "PRETRAINED_ROOT", "RELEASED_CHECKPOINTS", "UnknownCheckpointError", "list_pretrained", "pretrained_path"]

# Where the shipped folders live. Tests point it elsewhere with monkeypatch.setattr(module, "PRETRAINED_ROOT", ...).
PRETRAINED_ROOT = Path(__file__).resolve().parent

# Names this project releases. Only used to tell "this install lacks the files of a known checkpoint"
# apart from "no such checkpoint"; availability itself is decided by the folders present.
RELEASED_CHECKPOINTS: tuple[str, ...] = ("cmim-moses-tiny", "cmim-moses-small", "cmim-moses-base")

# The default of `cmim-hf generate` and `cmim-hf optimize`: of the shipped checkpoints, the one with the most valid
# prior samples and the best reconstruction (results/flagship/curve-gpu.csv, results/moses/).
DEFAULT_GENERATOR = "cmim-moses-base"


def list_pretrained() -> list[str]:
    """Names of the checkpoints shipped with this install (folders with a `config.json`), sorted."""
    root = PRETRAINED_ROOT
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "_")) and (p / "config.json").is_file())


def _available_text() -> str:
    names = list_pretrained()
    return ", ".join(repr(n) for n in names) if names else "none (this install ships no checkpoints)"


def pretrained_path(name: str) -> Path:
    """The folder of the shipped checkpoint `name`, ready for `from_pretrained`.

    Raises:
        TypeError: `name` is not a str.
        FileNotFoundError: `name` is a checkpoint this project releases, but its folder (or its
            `config.json`) is missing from this install.
        KeyError: no checkpoint of that name; the message lists the available names.
    """
    if not isinstance(name, str):
        raise TypeError(f"checkpoint name must be a str, got {type(name).__name__} ({name!r})")
    folder = PRETRAINED_ROOT / name
    if name in list_pretrained():
        return folder
    if name in RELEASED_CHECKPOINTS or folder.is_dir():
        what = "has no config.json" if folder.is_dir() else "is missing"
        raise FileNotFoundError(
            f"pretrained checkpoint {name!r} is known, but its folder {folder} {what}: this install does not "
            f"ship its files (reinstall cmim-hf from a release wheel, or load it from the Hub by repo id). "
            f"Available here: {_available_text()}"
        )
    close = difflib.get_close_matches(name, list_pretrained() + list(RELEASED_CHECKPOINTS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    # KeyError would wrap the message in quotes; LookupError subclasses keep it readable via args[0].
    raise UnknownCheckpointError(f"unknown pretrained checkpoint {name!r}{hint}; available: {_available_text()}")


class UnknownCheckpointError(KeyError):
    """No shipped checkpoint has that name. A `KeyError` whose message prints without extra quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
