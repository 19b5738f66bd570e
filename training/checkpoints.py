"""Checkpoints: written atomically (a hidden staging folder renamed into place), verified against a manifest of
sizes and SHA-256 written last, rotated, and resumed mid-epoch.

`--resume_from_checkpoint latest` takes the newest checkpoint that passes verification and loads; a damaged one
is reported, moved aside as `<name>.unusable` and the previous one is used. An explicitly named checkpoint
that is damaged is an error.

Nothing in a checkpoint can run code when it is loaded, whoever wrote it: the weights are safetensors, the loop
position and the learning-rate schedule are JSON, and the two files only `torch.save` writes (optimizer.bin, the
random states random_states_<process>.pkl) are read with `weights_only=True`, which rebuilds tensors and plain
containers and refuses any other object. Under FSDP the weights and the optimizer state are sharded safetensors
files and the optimizer's groups JSON (distributed.py), and such a checkpoint resumes only under FSDP. The manifest is checked before any other file is opened: it must list
exactly the folder's files, with the files a resume needs, and no pickle of custom objects
(custom_checkpoint_<i>.pkl, which Accelerate would unpickle in full).
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
from accelerate.utils import load as torch_load_weights_only

from cmim_hf.saving import apply_default_modes, replace_folder, restore_folder, write_json_atomic

from .distributed import (
    SHARDING_FILE,
    is_sharded,
    load_sharded_state,
    read_sharding,
    save_sharded_state,
    sharded_required_files,
)
from .errors import CheckpointError, TrainingError

__all__ = ["CHECKPOINT_PREFIX", "FINAL_DIR_NAME", "TrainState", "find_checkpoints", "load_checkpoint_model",
           "load_initial_weights", "prepare_output_dir", "resume", "save_checkpoint", "verify_checkpoint"]

logger = logging.getLogger("cmim_hf.training")

CHECKPOINT_PREFIX = "checkpoint-"
FINAL_DIR_NAME = "final"  # the trained model, <output_dir>/final
MANIFEST_NAME = "checkpoint_manifest.json"
TRAINER_STATE_NAME = "trainer_state.json"
SCHEDULER_STATE_NAME = "scheduler.json"
# What `save_checkpoint` always writes besides the tokenizer folder, the recipe and the random states: the
# weights and optimizer state whole, or (FSDP) sharded as distributed.py writes them.
REQUIRED_FILES = ("model.safetensors", "optimizer.bin", TRAINER_STATE_NAME, SCHEDULER_STATE_NAME)
SHARDED_REQUIRED_FILES = (*sharded_required_files(), TRAINER_STATE_NAME, SCHEDULER_STATE_NAME)
# Accelerate's pickles of registered objects: loading one runs whatever it holds. cmim-hf never writes or reads them.
_CUSTOM_PICKLE = re.compile(r"custom_checkpoint_\d+\.pkl")
_MANIFEST_MAX_BYTES = 16 << 20  # far above any real manifest; a larger one is not read
# A checkpoint that replace_folder moved aside when the same step was saved again (see cmim_hf.saving)
_ASIDE_CHECKPOINT = re.compile(rf"\.({re.escape(CHECKPOINT_PREFIX)}\d+)\.old-.+")


def prepare_output_dir(accelerator: Accelerator, output_dir: Path, resume_request: str | None,
                       overwrite: bool) -> None:
    """Refuse to train over existing checkpoints or a trained model unless resuming or told to overwrite (then
    delete the checkpoints), put back a final model a crash left aside, and remove the staging folders of saves
    a crash interrupted."""
    if accelerator.is_main_process and output_dir.is_dir():
        asides = {output_dir / FINAL_DIR_NAME} | {output_dir / match.group(1) for path in output_dir.iterdir()
                                                   if (match := _ASIDE_CHECKPOINT.fullmatch(path.name))}
        for folder in sorted(asides):
            if (restored := restore_folder(folder)) is not None:
                logger.warning(f"restored {folder} from {restored.name}, where an interrupted save had moved it")
    accelerator.wait_for_everyone()
    existing = find_checkpoints(output_dir)
    if resume_request is None and not overwrite:
        held = (f"checkpoints ({existing[-1].name}, ...)" if existing else
                f"a trained model ({FINAL_DIR_NAME}/)" if (output_dir / FINAL_DIR_NAME).exists() else None)
        if held:
            raise TrainingError(f"{output_dir} already holds {held}: pass --resume_from_checkpoint latest to "
                                "continue, --overwrite_output_dir to start afresh, or another --output_dir")
    if existing and resume_request is None and accelerator.is_main_process:
        for folder in existing:
            _delete_folder(folder)
    if accelerator.is_main_process:
        for leftover in [*output_dir.glob(f".{CHECKPOINT_PREFIX}*.tmp"),
                         *output_dir.glob(f".{CHECKPOINT_PREFIX}*.deleting")]:
            shutil.rmtree(leftover, ignore_errors=True)
    accelerator.wait_for_everyone()


def _delete_folder(folder: Path) -> None:
    """Rename out of sight first, so a crash half-way through the deletion leaves no half checkpoint behind."""
    doomed = folder.with_name(f".{folder.name}.deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


@dataclass
class TrainState:
    """Loop position saved in every checkpoint (as JSON, `trainer_state.json`)."""

    global_step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    batches_in_epoch: int = 0  # batches of the current epoch already consumed (per process)

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        expected = {f.name for f in dataclasses.fields(self)}
        if not isinstance(state, dict) or set(state) != expected or \
                not all(type(value) is int and value >= 0 for value in state.values()):
            raise ValueError(f"expected {{{', '.join(sorted(expected))}}} as integers >= 0, got {state!r}")
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


def _read_manifest(folder: Path) -> dict[str, dict]:
    """The manifest's file table, its structure checked (names inside the folder, sizes, hex digests)."""
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.is_symlink() or not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {folder} is incomplete: it has no {MANIFEST_NAME} (the save was "
                              "interrupted, or it was not written by cmim-hf)")
    if manifest_path.stat().st_size > _MANIFEST_MAX_BYTES:
        raise CheckpointError(f"checkpoint {folder}: {MANIFEST_NAME} is {manifest_path.stat().st_size} bytes, "
                              "not a manifest cmim-hf writes")
    try:
        files = json.loads(manifest_path.read_bytes())["files"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {folder}: {MANIFEST_NAME} is unreadable ({error})") from error
    if not isinstance(files, dict):
        raise CheckpointError(f"checkpoint {folder}: {MANIFEST_NAME} is unreadable (`files` is not a mapping)")
    for name, entry in files.items():
        parts = name.split("/")
        inside = name and not name.startswith("/") and ".." not in parts and "" not in parts and "\\" not in name
        well_formed = (isinstance(entry, dict) and type(entry.get("size")) is int and entry["size"] >= 0
                       and isinstance(entry.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]))
        if not inside or name == MANIFEST_NAME or not well_formed:
            raise CheckpointError(f"checkpoint {folder}: {MANIFEST_NAME} has an invalid entry {name!r}: {entry!r}")
    return files


def _resume_only(name: str) -> bool:
    """Whether a checkpoint's file is read by a resume alone, not by loading the model."""
    return (name in REQUIRED_FILES and name != "model.safetensors"
            or re.fullmatch(r"random_states_\d+\.pkl", name) is not None)


def verify_checkpoint(folder: str | os.PathLike, *, weights_only: bool = False) -> dict:
    """Check a checkpoint against its manifest before anything in it is loaded; raise `CheckpointError` saying
    what is wrong. Returns the manifest's file table.

    The manifest must list exactly the folder's files (no links), including the files a resume reads, and no
    pickle of custom objects; every file must have the size and SHA-256 the manifest records.
    `weights_only=True` is for reading the model alone (`load_checkpoint_model`): the files only a resume reads
    (optimizer, scheduler, loop and random states) may then be absent, as in a copy that left its 84 MB of
    optimizer state behind; every file that is there is still checked.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} does not exist")
    files = _read_manifest(folder)
    present = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_symlink() or not p.is_dir()}
    present.pop(MANIFEST_NAME)
    links = sorted(name for name, path in present.items() if path.is_symlink() or not path.is_file())
    if links:
        raise CheckpointError(f"checkpoint {folder} holds links or special files ({', '.join(links)}); cmim-hf "
                              "writes plain files only")
    pickles = sorted(name for name in {*files, *present} if _CUSTOM_PICKLE.fullmatch(Path(name).name))
    if pickles:
        raise CheckpointError(
            f"checkpoint {folder} holds {', '.join(pickles)}: a pickle of custom objects, which can run code when "
            "loaded, so cmim-hf never loads it (earlier versions of cmim-hf stored the loop state that way: resume "
            "from a checkpoint this version wrote, or start afresh)")
    unlisted = sorted(present.keys() - files.keys())
    if unlisted:
        raise CheckpointError(f"checkpoint {folder} holds files its manifest does not list ({', '.join(unlisted)}): "
                              "it was changed after it was saved")
    required = SHARDED_REQUIRED_FILES if SHARDING_FILE in files else REQUIRED_FILES
    missing = [name for name in required if name not in files]
    if missing:
        raise CheckpointError(f"checkpoint {folder} is incomplete: its manifest does not list "
                              f"{', '.join(missing)}")
    for name, expected in files.items():
        path = present.get(name)
        if path is None and weights_only and _resume_only(name):
            continue
        if path is None:
            raise CheckpointError(f"checkpoint {folder} is incomplete: {name} is missing")
        size = path.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(f"checkpoint {folder} is truncated or damaged: {name} has {size} bytes, the "
                                  f"manifest says {expected['size']}")
        if _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {folder} is corrupt: the SHA-256 of {name} does not match the "
                                  "manifest")
    return files


def save_checkpoint(accelerator: Accelerator, output_dir: Path, state: TrainState, scheduler, recipe: dict,
                    tokenizer, save_total_limit: int | None, *, model=None, optimizer=None) -> Path:
    """`accelerator.save_state` (weights, optimizer, random states; under FSDP `save_sharded_state` of the
    prepared `model` and `optimizer`) into a hidden temp folder, add recipe, tokenizer, loop state and schedule
    (JSON) and the manifest, rename into `checkpoint-<step>`, then delete the oldest checkpoints beyond
    `save_total_limit`."""
    step = state.global_step
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    staging = output_dir / f".{CHECKPOINT_PREFIX}{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    if is_sharded(accelerator):
        save_sharded_state(accelerator, model, optimizer, staging)
    else:
        accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        tokenizer.save_pretrained(staging / "tokenizer")
        (staging / TRAINER_STATE_NAME).write_text(json.dumps(state.state_dict(), indent=2))
        # allow_nan=False: the schedule is plain numbers; anything else fails here, not at resume
        (staging / SCHEDULER_STATE_NAME).write_text(json.dumps(scheduler.state_dict(), indent=2, allow_nan=False))
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
                    _delete_folder(old)
                    excess -= 1
        logger.info(f"saved checkpoint {final}")
    accelerator.wait_for_everyone()
    return final


def _read_json_state(folder: Path, name: str):
    try:
        return json.loads((folder / name).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint {folder}: {name} is not valid JSON ({error})") from error


def _load(accelerator: Accelerator, folder: Path, scheduler, state: TrainState, model, optimizer) -> None:
    """Load a verified checkpoint into the prepared objects. The JSON state and the random states are read and
    checked first; Accelerate then loads the weights before the optimizer, so a refused optimizer file leaves the
    weights loaded (the caller falls back to an older checkpoint, which loads everything again)."""
    loop_state, schedule = TrainState(), _read_json_state(folder, SCHEDULER_STATE_NAME)
    try:
        loop_state.load_state_dict(_read_json_state(folder, TRAINER_STATE_NAME))
    except ValueError as error:
        raise CheckpointError(f"checkpoint {folder}: {TRAINER_STATE_NAME} is invalid ({error})") from error
    expected = scheduler.state_dict()
    if not isinstance(schedule, dict) or set(schedule) != set(expected):
        raise CheckpointError(f"checkpoint {folder}: {SCHEDULER_STATE_NAME} does not hold the fields of a "
                              f"{type(scheduler).__name__} ({', '.join(sorted(expected))})")
    sharding = read_sharding(folder)
    if (sharding is not None) != is_sharded(accelerator):  # the run's mistake, not the checkpoint's: no fallback
        saved = f"sharded by FSDP over {sharding.get('num_processes')} processes" if sharding else "not sharded"
        raise TrainingError(f"checkpoint {folder} is {saved}, this run is {accelerator.distributed_type.value}: "
                              "resume it the way it was trained (FSDP checkpoints with an FSDP accelerate config, "
                              "on the same number of processes)")
    if sharding is not None and sharding.get("num_processes") != accelerator.num_processes:
        # the weights would re-shard, but the loop position counts batches per process and the random states are
        # per process: on another count the run would replay or skip data without a word
        raise TrainingError(f"checkpoint {folder} was saved by {sharding.get('num_processes')} FSDP processes, this "
                            f"run has {accelerator.num_processes}: resume it with --num_processes "
                            f"{sharding.get('num_processes')} (its final/ folder, full weights, loads anywhere)")
    # Accelerate loads the random states in a try-except of its own, so a refused file would pass unnoticed.
    random_states = folder / f"random_states_{accelerator.process_index}.pkl"
    if random_states.is_file():
        torch_load_weights_only(random_states)
    if sharding is not None:
        load_sharded_state(accelerator, model, optimizer, folder)
    else:
        accelerator.load_state(str(folder), load_kwargs={"weights_only": True})
    scheduler.load_state_dict(schedule)
    state.load_state_dict(loop_state.state_dict())


def resume(accelerator: Accelerator, request: str | None, output_dir: Path, scheduler, state: TrainState, *,
           model=None, optimizer=None) -> Path | None:
    """Load the checkpoint `request` names (a folder, or `latest`) into the prepared objects, `scheduler` and
    `state` (a sharded checkpoint into the prepared `model` and `optimizer`). Returns its path, or None when
    there is nothing to resume (see the module notes)."""
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
            _load(accelerator, folder, scheduler, state, model, optimizer)
        except Exception as error:  # noqa: BLE001 - any failure to load makes the checkpoint unusable
            if isinstance(error, TrainingError) and not isinstance(error, CheckpointError):
                raise  # the run does not match the checkpoint (FSDP or not): no older one would either
            # torch's refusal of a pickle spans a page: its first line names what was refused
            first_line = (str(error).strip().splitlines() or [""])[0]
            reason = str(error) if isinstance(error, CheckpointError) else \
                f"checkpoint {folder} could not be loaded: {type(error).__name__}: {first_line}"
            if request != "latest":
                raise CheckpointError(f"{reason}. Resume from an older checkpoint, or pass `latest`, which falls "
                                      "back to the previous checkpoint automatically.") from error
            problems.append(reason)
            unusable.append(folder)
            logger.error(f"{reason}; falling back to the previous checkpoint")
            continue
        logger.info(f"resumed from {folder} (step {state.global_step})")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:  # keep the damaged ones for inspection, out of `latest`'s way
            for bad in unusable:
                target = bad.with_name(bad.name + ".unusable")
                shutil.rmtree(target, ignore_errors=True)
                os.replace(bad, target)
                logger.warning(f"moved the unusable checkpoint to {target}")
        accelerator.wait_for_everyone()
        return folder
    raise CheckpointError(f"no usable checkpoint in {output_dir}: " + "; ".join(problems))


def load_checkpoint_model(folder: str | os.PathLike):
    """The model of a (not sharded) checkpoint folder, outside a training run: verified against its manifest,
    rebuilt from its recipe.yaml by the training's own builder, its weights read from model.safetensors (every
    stored tensor must fit, and every parameter it lacks must be tied to one it holds: safetensors stores shared
    embeddings once). Returns (model in eval mode, tokenizer, training arguments, recipe dict)."""
    import torch

    from .arguments import parse_args
    from .data_preparation import load_tokenizer
    from .model import build_model

    folder = Path(folder)
    verify_checkpoint(folder, weights_only=True)
    if read_sharding(folder) is not None:
        raise CheckpointError(f"checkpoint {folder} is sharded by FSDP: evaluate the run's final/ folder (full "
                              "weights), or resume the run to make one")
    training_args, model_args, recipe = parse_args(["--recipe", str(folder / "recipe.yaml")])
    tokenizer = load_tokenizer(str(folder / "tokenizer"), model_args.max_position_embeddings)
    torch.manual_seed(0)  # the builder initialises the weights before they are replaced
    model = build_model(model_args, tokenizer)
    _load_fitting_weights(model, folder / "model.safetensors", f"checkpoint {folder}", "its recipe's model")
    return model.eval(), tokenizer, training_args, recipe


def _load_fitting_weights(model, weights: Path, source: str, target: str) -> None:
    """Load the safetensors file `weights` into `model`: every stored tensor must fit (shape; the dtype is cast),
    and every parameter it lacks must be tied to one it holds (safetensors stores shared embeddings once)."""
    from safetensors.torch import load_file

    stored = load_file(weights)
    params = model.state_dict(keep_vars=True)
    misshapen = sorted(name for name, tensor in stored.items() if name in params and params[name].shape != tensor.shape)
    if misshapen:
        raise CheckpointError(f"{source}: its weights do not fit {target} (other shapes: {', '.join(misshapen[:5])})")
    missing, unexpected = model.load_state_dict(stored, strict=False)
    loaded = {params[name].data_ptr() for name in stored if name in params}
    untied = [name for name in missing if params[name].data_ptr() not in loaded]
    if unexpected or untied:
        raise CheckpointError(f"{source}: its weights do not fit {target} (unexpected {sorted(unexpected)}, "
                              f"missing and not tied {sorted(untied)})")


def load_initial_weights(model, tokenizer, source: str | os.PathLike) -> Path:
    """Start `model` (built for this run, `tokenizer` its tokenizer) from the weights of `source` (`--init_from`):
    a training checkpoint (verified against its manifest; its optimizer state may be absent), a saved model
    folder, or the name of a shipped checkpoint. The source's tokenizer must have this run's vocabulary: the same
    sizes with other tokens would train silently wrong. Returns the folder read."""
    from tokenizers import Tokenizer

    from cmim_hf.pretrained import list_pretrained, pretrained_path

    folder = Path(source)
    if not folder.exists() and str(source) in list_pretrained():
        folder = pretrained_path(str(source))
    if not folder.is_dir():
        raise CheckpointError(f"--init_from {source}: no such folder or shipped checkpoint (shipped: "
                              f"{', '.join(list_pretrained()) or 'none'})")
    if (folder / MANIFEST_NAME).exists():  # a training checkpoint
        verify_checkpoint(folder, weights_only=True)
        if read_sharding(folder) is not None:
            raise CheckpointError(f"--init_from {folder}: a checkpoint sharded by FSDP; start from its run's final/ "
                                  "folder instead")
        tokenizer_file = folder / "tokenizer" / "tokenizer.json"
    else:
        tokenizer_file = folder / "tokenizer.json"
    weights = folder / "model.safetensors"
    if not weights.is_file() or not tokenizer_file.is_file():
        missing = weights if not weights.is_file() else tokenizer_file
        raise CheckpointError(f"--init_from {folder}: {missing.name} is missing (a checkpoint or a model folder "
                              "saved by cmim-hf holds model.safetensors and tokenizer.json)")
    if Tokenizer.from_file(str(tokenizer_file)).get_vocab() != tokenizer.get_vocab():
        raise CheckpointError(f"--init_from {folder}: its tokenizer's vocabulary is not this run's (pass its "
                              f"tokenizer with --tokenizer {tokenizer_file.parent})")
    _load_fitting_weights(model, weights, f"--init_from {folder}", "this run's model (its recipe's geometry)")
    return folder
