"""Hub-ready model folders, written atomically.

A folder holds the weights (safetensors), config with `auto_map` and `custom_pipelines`, generation config,
tokenizer, the modeling and pipeline code, and optionally the training recipe and other files (card, logs).
It is written to a temporary sibling folder and renamed into place, so an interrupted save never leaves a
half-written model where a loader would find it.

Files and folders get the permissions an ordinary `open()` / `mkdir()` gives (the umask applies: 0644 and 0755
under umask 022), not the private 0600 / 0700 of `tempfile.mkstemp` / `mkdtemp`, so a model or result written
on a shared machine or in a container is readable by the others who should read it.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import glob
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml

if TYPE_CHECKING:
    import torch

from .checks import check_output_dir

T = TypeVar("T")


def save_model_folder(model, tokenizer, output_dir: str | os.PathLike, *, recipe: Mapping | None = None,
                      extra_files: Mapping[str, str | bytes] | None = None,
                      storage_dtype: torch.dtype | None = None) -> Path:
    """Save `model` and `tokenizer` (and `recipe.yaml`, `extra_files`) into `output_dir`, atomically.

    storage_dtype: store the weights in this dtype (torch.float16 halves the download) while `config.json`
        keeps the model's own dtype, so `from_pretrained` (dtype="auto") loads them back in, and computes in,
        the model's dtype. The saved model is then the rounded one: evaluate the saved folder.

    An existing `output_dir` is replaced only once the new folder is complete. Returns the folder path.
    """
    import torch

    if storage_dtype is not None and not (isinstance(storage_dtype, torch.dtype) and storage_dtype.is_floating_point):
        raise ValueError(f"storage_dtype must be a floating-point torch.dtype, got {storage_dtype!r}")
    output_dir = check_output_dir(Path(output_dir).resolve(), "output_dir")  # a file there is the user's, not ours
    with staged_folder(output_dir) as staging:
        if storage_dtype is None or storage_dtype == model.dtype:
            model.save_pretrained(staging)
        else:
            copy.deepcopy(model).to(storage_dtype).save_pretrained(staging)
            config = json.loads((staging / "config.json").read_text())
            config["dtype"] = str(model.dtype).removeprefix("torch.")
            (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        tokenizer.save_pretrained(staging)
        if recipe is not None:
            (staging / "recipe.yaml").write_text(yaml.safe_dump(dict(recipe), sort_keys=False))
        for name, content in (extra_files or {}).items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
    return output_dir


@contextmanager
def staged_folder(output_dir: Path) -> Iterator[Path]:
    """Write a folder whole or not at all: yields a new empty sibling of `output_dir` to fill; when the block ends
    without an error the filled folder gets the umask's modes and replaces `output_dir` (`replace_folder`), else it
    is removed. What a crash in an earlier write left is undone first (`restore_folder`)."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    restore_folder(output_dir)
    staging, _ = _create_sibling(output_dir, _STAGING_TAG, lambda path: os.mkdir(path, 0o777))
    try:
        yield staging
        apply_default_modes(staging)
        replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_folder(new: Path, target: Path) -> None:
    """Move the complete folder `new` to `target`, so that a complete `target` exists at every instant.

    Where Linux offers it (`renameat2` with RENAME_EXCHANGE), an existing `target` and `new` swap names in one
    step and the old version, now under `new`'s name, is deleted: `target` is never missing. Elsewhere (another
    system, an old kernel or C library, a filesystem that refuses the exchange) `target` is first moved aside, to
    the hidden sibling `.<name>.old-<random>`, and deleted once the new one is in place (moved back if the move
    fails); after a crash between the two renames, `restore_folder(target)` puts the aside copy back."""
    if not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # the old version; a crash before this leaves a staging leftover
        return
    old, _ = _create_sibling(target, _ASIDE_TAG, lambda path: os.mkdir(path))
    os.rmdir(old)  # only the name was wanted: os.replace below moves `target` there
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


_AT_FDCWD = -100  # <fcntl.h>: paths relative to the current folder
_RENAME_EXCHANGE = 2  # <linux/fs.h>: swap the two names atomically


@functools.cache
def _renameat2():
    """glibc's `renameat2` (2.28+), or None where this is not Linux or the C library lacks it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names of the existing `a` and `b` in one step; False (nothing changed) where the system cannot:
    no renameat2, or the kernel or filesystem refuses RENAME_EXCHANGE (ENOSYS, EINVAL, ...). The caller then
    falls back to two renames, whose own errors name the real problem."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _umask() -> int:
    """This process's umask, read without changing it (Linux: /proc/self/status; else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_default_modes(folder: str | os.PathLike) -> None:
    """Give `folder`, and every file and folder under it, the mode an ordinary `open()` / `mkdir()` gives under
    the umask (0644 / 0755 under umask 022). Libraries write some files private (safetensors writes 0600)."""
    mask = _umask()
    for root, _, files in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def _create_sibling(target: Path, tag: str, create: Callable[[Path], T]) -> tuple[Path, T]:
    """Create a new hidden sibling `.{target name}.{tag}-{random}` of `target` with `create` (which must raise
    FileExistsError if the path exists); returns the path and what `create` returned. The mode is `create`'s
    less the umask, unlike the private 0600 / 0700 of tempfile's."""
    for _ in range(100):
        candidate = target.with_name(f".{target.name}.{tag}-{secrets.token_hex(4)}")
        try:
            return candidate, create(candidate)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary sibling of {target}: 100 names taken")


_ASIDE_TAG = "old"  # replace_folder's aside copies: .<name>.old-<random>
_STAGING_TAG = "tmp"  # save_model_folder's staging folders: .<name>.tmp-<random>


def restore_folder(target: str | os.PathLike, *, clean: bool = True) -> Path | None:
    """Finish what a crash interrupted in `replace_folder` / `save_model_folder` around `target`.

    Without `target`, its newest aside copy (the last complete version) is moved back. With `clean` (writers; a
    reader passes False and touches nothing else), the remaining aside copies, older versions, and the staging
    folders of unfinished saves are deleted. Returns the aside copy's former path when one was moved back (the
    caller says so), else None.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return None
    asides = sorted(target.parent.glob(f".{glob.escape(target.name)}.{_ASIDE_TAG}-*"), key=lambda p: p.stat().st_mtime)
    restored = None
    if asides and not target.exists():
        restored = asides.pop()
        os.replace(restored, target)
    if clean:
        for leftover in [*asides, *target.parent.glob(f".{glob.escape(target.name)}.{_STAGING_TAG}-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
    return restored


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file whole or not at all: yields a new empty temporary sibling of `path` (mode 0666 less the umask,
    as an ordinary `open(path, "w")` gives) to write by any means; when the block ends without an error it replaces
    `path` (`os.replace`: a reader never sees a half-written file), else it is removed and the old file stays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_sibling(path, "tmp", lambda candidate: os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                                                      0o666))
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to `path` atomically (see `atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload) -> Path:
    """Write JSON to `path` atomically (see `atomic_write`)."""
    return atomic_write(path, json.dumps(payload, indent=2) + "\n")
