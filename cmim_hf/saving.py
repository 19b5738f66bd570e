"""Hub-ready model folders, written atomically.

A folder holds the weights (safetensors), config with `auto_map` and `custom_pipelines`, generation config,
tokenizer, the modeling and pipeline code, and optionally the training recipe and other files (card, logs).
It is written to a temporary sibling folder and renamed into place, so an interrupted save never leaves a
half-written model where a loader would find it.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml


def save_model_folder(model, tokenizer, output_dir: str | os.PathLike, *, recipe: Mapping | None = None,
                      extra_files: Mapping[str, str | bytes] | None = None) -> Path:
    """Save `model` and `tokenizer` (and `recipe.yaml`, `extra_files`) into `output_dir`, atomically.

    An existing `output_dir` is replaced only once the new folder is complete. Returns the folder path.
    """
    output_dir = Path(output_dir).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
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
        _replace_dir(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`; an existing `target` is moved aside first and deleted only afterwards."""
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


def write_json_atomic(path: str | os.PathLike, payload) -> None:
    """Write JSON to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
