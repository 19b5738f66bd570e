"""Checkpoints: written atomically (a hidden staging folder renamed into place), verified against a manifest of
sizes and SHA-256 written last, rotated, and resumed mid-epoch.

`--resume_from_checkpoint latest` takes the newest checkpoint that passes verification and loads; a damaged one
is reported, moved aside as `<name>.unusable` and the previous one is used. An explicitly named checkpoint
that is damaged is an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from accelerate import Accelerator

from cmim_hf.saving import apply_default_modes, replace_folder, write_json_atomic

from .errors import CheckpointError, TrainingError

__all__ = ["CHECKPOINT_PREFIX", "TrainState", "find_checkpoints", "prepare_output_dir", "resume",
           "save_checkpoint", "verify_checkpoint"]

logger = logging.getLogger("cmim_hf.training")

CHECKPOINT_PREFIX = "checkpoint-"
MANIFEST_NAME = "checkpoint_manifest.json"
TRAINER_STATE_NAME = "trainer_state.json"


def prepare_output_dir(accelerator: Accelerator, output_dir: Path, resume_request: str | None,
                       overwrite: bool) -> None:
    """Refuse to train over existing checkpoints unless resuming or told to overwrite (then delete them), and
    remove the staging folders of saves a crash interrupted."""
    existing = find_checkpoints(output_dir)
    if existing and resume_request is None:
        if not overwrite:
            raise TrainingError(f"{output_dir} already holds checkpoints ({existing[-1].name}, ...): pass "
                                "--resume_from_checkpoint latest to continue, --overwrite_output_dir to start "
                                "afresh, or another --output_dir")
        if accelerator.is_main_process:
            for folder in existing:
                shutil.rmtree(folder)
    if accelerator.is_main_process:
        for leftover in output_dir.glob(f".{CHECKPOINT_PREFIX}*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
    accelerator.wait_for_everyone()


@dataclass
class TrainState:
    """Loop position saved in every checkpoint (registered with `accelerator.register_for_checkpointing`)."""

    global_step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    batches_in_epoch: int = 0  # batches of the current epoch already consumed (per process)

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def _checkpoint_step(path: Path) -> int | None:
    match = re.fullmatch(rf"{re.escape(CHECKPOINT_PREFIX)}(\d+)", path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def find_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint folders of a run, oldest first (by step). Unfinished saves (hidden temp folders) are not
    listed; whether a listed folder is intact is `verify_checkpoint`'s job."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(step, p) for p in output_dir.iterdir() if (step := _checkpoint_step(p)) is not None]
    return [p for _, p in sorted(found)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(folder: Path, step: int) -> None:
    """Fsync every file, then record sizes and checksums; the manifest is written last, so its presence means
    the checkpoint was complete."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    write_json_atomic(folder / MANIFEST_NAME, {"step": step, "files": files})


def verify_checkpoint(folder: str | os.PathLike) -> dict:
    """Check a checkpoint against its manifest; raise `CheckpointError` saying what is wrong. Returns the
    manifest."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {folder} is incomplete: it has no {MANIFEST_NAME} (the save was "
                              "interrupted, or it was not written by cmim-hf)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {folder}: {MANIFEST_NAME} is unreadable ({error})") from error
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {folder} is incomplete: {name} is missing")
        size = path.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(f"checkpoint {folder} is truncated or damaged: {name} has {size} bytes, the "
                                  f"manifest says {expected['size']}")
        if _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {folder} is corrupt: the SHA-256 of {name} does not match the "
                                  "manifest")
    return manifest


def save_checkpoint(accelerator: Accelerator, output_dir: Path, state: TrainState, recipe: dict, tokenizer,
                    save_total_limit: int | None) -> Path:
    """`accelerator.save_state` into a hidden temp folder, add recipe, tokenizer, loop state and manifest,
    rename into `checkpoint-<step>`, then delete the oldest checkpoints beyond `save_total_limit`."""
    step = state.global_step
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    staging = output_dir / f".{CHECKPOINT_PREFIX}{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        tokenizer.save_pretrained(staging / "tokenizer")
        (staging / TRAINER_STATE_NAME).write_text(json.dumps(state.state_dict(), indent=2))
        _write_manifest(staging, step)
        apply_default_modes(staging)  # Accelerate's safetensors files are written 0600
        replace_folder(staging, final)
        if save_total_limit is not None:  # oldest first; never the one just written
            existing = find_checkpoints(output_dir)
            excess = len(existing) - save_total_limit
            for old in existing:
                if excess <= 0:
                    break
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
                    excess -= 1
        logger.info(f"saved checkpoint {final}")
    accelerator.wait_for_everyone()
    return final


def resume(accelerator: Accelerator, request: str | None, output_dir: Path) -> Path | None:
    """Load the checkpoint `request` names (a folder, or `latest`) into the prepared objects. Returns its path,
    or None when there is nothing to resume (see the module notes)."""
    if request is None:
        return None
    if request == "latest":
        candidates = list(reversed(find_checkpoints(output_dir)))
        if not candidates:
            logger.warning(f"--resume_from_checkpoint latest: no checkpoint in {output_dir}; starting afresh")
            return None
    else:
        candidates = [Path(request)]
    problems, unusable = [], []
    for folder in candidates:
        try:
            verify_checkpoint(folder)
            accelerator.load_state(str(folder))
        except Exception as error:  # noqa: BLE001 - any failure to load makes the checkpoint unusable
            reason = str(error) if isinstance(error, CheckpointError) else \
                f"checkpoint {folder} could not be loaded: {type(error).__name__}: {error}"
            if request != "latest":
                raise CheckpointError(f"{reason}. Resume from an older checkpoint, or pass `latest`, which falls "
                                      "back to the previous checkpoint automatically.") from error
            problems.append(reason)
            unusable.append(folder)
            logger.error(f"{reason}; falling back to the previous checkpoint")
            continue
        logger.info(f"resumed from {folder} (step {_checkpoint_step(folder)})")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:  # keep the damaged ones for inspection, out of `latest`'s way
            for bad in unusable:
                target = bad.with_name(bad.name + ".unusable")
                shutil.rmtree(target, ignore_errors=True)
                os.replace(bad, target)
                logger.warning(f"moved the unusable checkpoint to {target}")
        accelerator.wait_for_everyone()
        return folder
    raise CheckpointError(f"no usable checkpoint in {output_dir}:\n  " + "\n  ".join(problems))
