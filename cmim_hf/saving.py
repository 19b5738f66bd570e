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
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml

if TYPE_CHECKING:
    import torch

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
    output_dir = Path(output_dir).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging, _ = _create_sibling(output_dir, "tmp", lambda path: os.mkdir(path, 0o777))
    try:
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
        apply_default_modes(staging)
        replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def replace_folder(new: Path, target: Path) -> None:
    """Move the complete folder `new` to `target`; an existing `target` is moved aside first and deleted only
    once the new one is in place (restored if the move fails)."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


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


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and `os.replace`: a reader never
    sees a half-written file, and an interrupted write leaves the old file intact. The file gets the mode an
    ordinary `open(path, "w")` gives (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_sibling(path, "tmp", lambda candidate: os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                                                      0o666))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, payload) -> Path:
    """Write JSON to `path` atomically (see `atomic_write`)."""
    return atomic_write(path, json.dumps(payload, indent=2) + "\n")
