"""The Accelerate training loop of `cmim-hf train` and `accelerate launch -m cmim_hf.training`.

Reading order: errors, data preparation, trackers, checkpoints (atomic, verified, rotated, resumable
mid-epoch), evaluation, the non-finite-loss monitor, `train`, `main`.

The loop calls `model(**batch, latent_loss_weight=w)` and reads `outputs.loss` and its parts; nothing in it
waits on the host except at logging, evaluation and checkpoint steps (no per-step `.item()`).

Decisions worth knowing:
- A non-finite loss or gradient norm stops the run with `NonFiniteLossError`, naming the first bad step.
  It is detected at the next logging/evaluation/checkpoint step and always before anything is saved, so no
  checkpoint or final model ever holds weights touched by it; resume from the last checkpoint (perhaps with
  a lower learning rate).
- `--resume_from_checkpoint latest` takes the newest checkpoint that passes verification (manifest of sizes
  and SHA-256 written last; folders renamed into place only when complete) and loads; a damaged one is
  reported and the previous one is used. An explicitly named checkpoint that is damaged is an error.
- Validation runs with its own fixed RNG stream (forked), so it neither perturbs training nor varies
  between evaluations; the validation loss uses latent-loss weight 1 (the true objective).
- InfoNCE: the first view is the row itself (so reconstruction is the same task for every objective), the
  second a randomised SMILES made once in the cached `dataset.map` (off the hot path).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs, skip_first_batches
from accelerate.tracking import GeneralTracker
from accelerate.utils import DataLoaderConfiguration, DistributedType, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_scheduler

from cmim_hf.data import NAMED_DATASETS, TEXT_COLUMN, load_named_dataset, load_text_dataset, tokenize_dataset
from cmim_hf.modeling import CMIMConfig, CMIMForConditionalGeneration
from cmim_hf.saving import replace_folder, save_model_folder, write_json_atomic
from cmim_hf.tokenization import build_smiles_tokenizer, default_smiles_tokenizer

from .arguments import CMIMTrainingArguments, parse_args, resolved_recipe
from .collator import CMIMDataCollator, LengthGroupedBatchSampler

__all__ = [
    "CheckpointError",
    "NonFiniteLossError",
    "TrainResult",
    "TrainingError",
    "evaluate",
    "find_checkpoints",
    "main",
    "train",
    "verify_checkpoint",
]

logger = logging.getLogger("cmim_hf.training")

CHECKPOINT_PREFIX = "checkpoint-"
MANIFEST_NAME = "checkpoint_manifest.json"
TRAINER_STATE_NAME = "trainer_state.json"
FINAL_DIR_NAME = "final"
METRICS_CSV = "metrics.csv"
LOG_FILE = "train.log"


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


class TrainingError(RuntimeError):
    """A run stopped for a reason the user can act on; `main` prints it without a traceback."""


class NonFiniteLossError(TrainingError):
    """The loss or the gradient norm became NaN or infinite."""


class CheckpointError(TrainingError):
    """A checkpoint is incomplete, truncated or corrupt, or none could be loaded."""


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def load_tokenizer(name: str, max_length: int, corpus: datasets.Dataset | None = None):
    """`smiles`, `smiles-corpus` (needs the training corpus) or a tokenizer folder / Hub id."""
    if name == "smiles":
        return default_smiles_tokenizer(model_max_length=max_length)
    if name == "smiles-corpus":
        if corpus is None:
            raise TrainingError("tokenizer `smiles-corpus` reads the training corpus, which streaming mode does not "
                                "hold; use `--tokenizer smiles` or a saved tokenizer folder")
        texts = (text for text in corpus[TEXT_COLUMN] if isinstance(text, str))  # bad rows are skipped later
        return build_smiles_tokenizer(texts, model_max_length=max_length)
    tokenizer = AutoTokenizer.from_pretrained(name, model_max_length=max_length)
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise TrainingError(f"tokenizer {name!r} needs a pad token and an eos token (pad: {tokenizer.pad_token!r}, "
                            f"eos: {tokenizer.eos_token!r}); set them and save it, then pass its folder")
    return tokenizer


def _is_dataset_dict_folder(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / "dataset_dict.json").is_file()


def _load_raw_splits(args: CMIMTrainingArguments) -> tuple[Any, datasets.Dataset | None, str]:
    """(train, eval or None, description of the eval source); train is an IterableDataset when streaming."""
    if args.dataset in NAMED_DATASETS:
        spec = NAMED_DATASETS[args.dataset]
        if args.streaming:
            train = load_named_dataset(args.dataset, split=args.train_split).to_iterable_dataset(num_shards=64)
        else:
            # a random subset when asked for one; the full corpus stays in file order (the sampler shuffles)
            train = load_named_dataset(args.dataset, split=args.train_split, max_samples=args.max_train_samples,
                                       seed=args.seed if args.max_train_samples is not None else None)
        eval_split = args.eval_split or next((s for s in ("validation", "valid", "test") if s in spec.files), None)
        eval_raw = None
        if args.eval_dataset is None and eval_split is not None:
            # seed 0: the same validation molecules whatever the training seed
            eval_raw = load_named_dataset(args.dataset, split=eval_split, max_samples=args.max_eval_samples, seed=0)
            return train, eval_raw, f"{args.dataset}/{eval_split}"
    else:
        folder = _is_dataset_dict_folder(args.dataset)
        train = load_text_dataset(args.dataset, text_column=args.text_column,
                                  split=args.train_split if folder else None, streaming=args.streaming)
        if not args.streaming and args.max_train_samples is not None and args.max_train_samples < len(train):
            train = train.shuffle(seed=args.seed).select(range(args.max_train_samples))
        eval_raw = None
        if folder and args.eval_dataset is None:
            splits = json.loads((Path(args.dataset) / "dataset_dict.json").read_text()).get("splits", [])
            eval_split = args.eval_split or next((s for s in ("validation", "valid", "test") if s in splits), None)
            if eval_split is not None:
                eval_raw = load_text_dataset(args.dataset, text_column=args.text_column, split=eval_split)
                return train, _sample(eval_raw, args.max_eval_samples), f"{args.dataset} [{eval_split}]"
    if args.eval_dataset is not None:
        eval_raw = load_text_dataset(args.eval_dataset, text_column=args.text_column)
        return train, _sample(eval_raw, args.max_eval_samples), str(args.eval_dataset)
    # Nothing to evaluate on: hold rows out of the training data.
    if args.streaming:
        held = datasets.Dataset.from_list(list(train.take(args.max_eval_samples)))
        return train.skip(args.max_eval_samples), held, f"{args.dataset}, first rows held out"
    size = min(args.max_eval_samples, max(1, len(train) // 10))
    if len(train) < 2:
        raise TrainingError(f"{args.dataset} has {len(train)} row(s): too few to train and hold out a validation set")
    parts = train.train_test_split(test_size=size, seed=args.seed)
    return parts["train"], parts["test"], f"{args.dataset}, rows held out"


def _sample(dataset: datasets.Dataset, n: int) -> datasets.Dataset:
    return dataset.shuffle(seed=0).select(range(n)) if n < len(dataset) else dataset


def _views_batch(batch: dict, indices: list[int], *, tokenizer, max_length: int, seed: int) -> dict:
    """Second views for InfoNCE: a randomised SMILES per row; the row itself where none can be made."""
    from cmim_hf.data import randomized_smiles_views

    texts = batch[TEXT_COLUMN]
    base = seed * 1_000_003 + (indices[0] if indices else 0)
    try:
        views = [v[0] for v in randomized_smiles_views(texts, n_views=1, seed=base)]
    except (ValueError, TypeError):  # some row does not parse: redo row by row
        views = []
        for i, text in enumerate(texts):
            try:
                views.append(randomized_smiles_views([text], n_views=1, seed=base + i)[0][0])
            except (ValueError, TypeError):
                views.append(None)
    encoded = tokenizer([v if v is not None else "" for v in views], add_special_tokens=True, truncation=False,
                        verbose=False)["input_ids"]
    out, fallback = [], []
    unk = tokenizer.unk_token_id
    for view, ids, own in zip(views, encoded, batch["input_ids"]):
        bad = view is None or len(ids) > max_length or (unk is not None and unk in ids and unk not in own)
        out.append(list(own) if bad else ids)
        fallback.append(bad)
    return {"input_ids_view2": out, "_view_fallback": fallback}


def add_second_views(dataset: datasets.Dataset, tokenizer, max_length: int, seed: int,
                     num_proc: int | None = None) -> tuple[datasets.Dataset, int]:
    """Add `input_ids_view2` (cached map). Returns the data set and how many rows fell back to themselves."""
    features = dataset.features.copy()
    features["input_ids_view2"] = datasets.List(datasets.Value("int32"))
    features["_view_fallback"] = datasets.Value("bool")
    mapped = dataset.map(_views_batch, batched=True, with_indices=True, num_proc=num_proc, features=features,
                         fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "seed": seed},
                         desc="Randomised SMILES views")
    fallbacks = int(sum(mapped["_view_fallback"]))
    return mapped.remove_columns("_view_fallback"), fallbacks


class _StreamTokenizer:
    """Tokenize a streamed data set lazily, counting (not raising on) the rows it drops."""

    def __init__(self, tokenizer, max_length: int, skip_unknown: bool):
        self.tokenizer, self.max_length, self.skip_unknown = tokenizer, max_length, skip_unknown
        self.counts = {"seen": 0, "not_a_string": 0, "empty": 0, "too_long": 0, "unknown_tokens": 0}

    def __call__(self, batch: dict) -> dict:
        texts = batch[TEXT_COLUMN]
        keep_texts, kept = [], []
        for text in texts:
            self.counts["seen"] += 1
            if not isinstance(text, str):
                self.counts["not_a_string"] += 1
            elif not text.strip():
                self.counts["empty"] += 1
            else:
                keep_texts.append(text)
        ids_list = self.tokenizer(keep_texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"] \
            if keep_texts else []
        unk = self.tokenizer.unk_token_id
        for ids in ids_list:
            if len(ids) > self.max_length:
                self.counts["too_long"] += 1
                continue
            if unk is not None and unk in ids:
                self.counts["unknown_tokens"] += 1
                if self.skip_unknown:
                    continue
            kept.append(ids)
        return {"input_ids": kept, "length": [len(ids) for ids in kept]}

    def report(self) -> str:
        skipped = {k: v for k, v in self.counts.items() if k != "seen" and v}
        return f"streamed {self.counts['seen']} rows; counted problems: {skipped or 'none'}"


@dataclass
class PreparedData:
    train: Any  # datasets.Dataset, or IterableDataset when streaming
    eval: datasets.Dataset | None
    eval_source: str
    report: list[str]
    stream_tokenizer: _StreamTokenizer | None = None


def prepare_data(args: CMIMTrainingArguments, tokenizer_name: str, max_length: int, objective: str):
    """Load, subsample, tokenize (cached, bad rows counted and skipped), add InfoNCE views. Returns
    `(tokenizer, PreparedData)`."""
    train_raw, eval_raw, eval_source = _load_raw_splits(args)
    tokenizer = load_tokenizer(tokenizer_name, max_length, None if args.streaming else train_raw)
    report = []
    stream_tokenizer = None
    keep = ["input_ids", "length"]
    if args.streaming:
        stream_tokenizer = _StreamTokenizer(tokenizer, max_length, args.skip_unknown_tokens)
        # the map drops rows, so it must drop every input column
        train = train_raw.select_columns([TEXT_COLUMN]).map(stream_tokenizer, batched=True,
                                                            remove_columns=[TEXT_COLUMN])
        train = train.shuffle(seed=args.seed, buffer_size=args.shuffle_buffer_size)
        report.append("training data: streaming; skipped rows are counted as they are read (see the end of the log)")
    else:
        train, train_report = tokenize_dataset(train_raw, tokenizer, max_length=max_length,
                                               skip_unknown=args.skip_unknown_tokens,
                                               num_proc=args.preprocessing_num_workers)
        report.append(f"training data ({args.dataset}, split {args.train_split}): {train_report}")
        if len(train) == 0:
            raise TrainingError(f"no usable training rows in {args.dataset}:\n{train_report}")
    eval_ds = None
    if eval_raw is not None:
        eval_ds, eval_report = tokenize_dataset(eval_raw, tokenizer, max_length=max_length,
                                                skip_unknown=args.skip_unknown_tokens)
        report.append(f"validation data ({eval_source}): {eval_report}")
        if len(eval_ds) == 0:
            eval_ds = None
    if objective == "infonce":
        if args.streaming:
            raise TrainingError("objective `infonce` with streaming is not supported: views are made in a cached "
                                "map; prepare the corpus as a file or save_to_disk folder instead")
        train, fallbacks = add_second_views(train, tokenizer, max_length, args.seed, args.preprocessing_num_workers)
        report.append(f"InfoNCE views: {len(train) - fallbacks} randomised, {fallbacks} rows without a usable "
                      "randomised SMILES use themselves as second view")
        keep.append("input_ids_view2")
        if eval_ds is not None:
            eval_ds, _ = add_second_views(eval_ds, tokenizer, max_length, seed=0)
    if not args.streaming:
        train = train.select_columns(keep)
    if eval_ds is not None:
        eval_ds = eval_ds.select_columns(keep)
    return tokenizer, PreparedData(train, eval_ds, eval_source, report, stream_tokenizer)


# ---------------------------------------------------------------------------------------------------------
# Trackers
# ---------------------------------------------------------------------------------------------------------


class CSVTracker(GeneralTracker):
    """Long-format metrics log, `step,name,value,time`, one row per logged value. On resume, rows after the
    resumed step (written by the interrupted run) are dropped, so the file tells one consistent history."""

    name = "csv"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, path: str | os.PathLike, keep_until_step: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.keep_until_step = keep_until_step
        self._file = None
        self._writer = None

    @property
    def tracker(self):
        return self._writer

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if self.keep_until_step is not None and self.path.is_file():
            with self.path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= self.keep_until_step]
        self._file = self.path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["step", "name", "value", "time"])
        for row in rows:
            self._writer.writerow([row["step"], row["name"], row["value"], row["time"]])
        self._file.flush()

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        now = f"{time.time():.3f}"
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.writerow([step, name, repr(float(value)), now])
        self._file.flush()

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _flat_config(recipe: dict) -> dict:
    """Recipe as `section/field -> scalar` for tracker hyper-parameter tables."""
    flat = {}
    for section in ("model", "training"):
        for key, value in recipe[section].items():
            if isinstance(value, (list, tuple)):
                value = ",".join(map(str, value))
            flat[f"{section}/{key}"] = "" if value is None else value
    flat["recipe"] = recipe["name"]
    return flat


def _trackers(args: CMIMTrainingArguments, output_dir: Path, keep_until_step: int | None) -> list:
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    trackers: list = [CSVTracker(output_dir / METRICS_CSV, keep_until_step)]
    if is_tensorboard_available():
        from accelerate.tracking import TensorBoardTracker

        # purge_step: a resumed run drops the events the interrupted run logged after its checkpoint
        purge = {} if keep_until_step is None else {"purge_step": keep_until_step + 1}
        trackers.append(TensorBoardTracker("tensorboard", output_dir, **purge))
    else:
        logger.warning("TensorBoard is not installed (pip install 'cmim-hf[train]'): logging to CSV only")
    wanted = {name.lower() for name in args.report_to}
    if wanted & {"wandb", "all"}:
        if is_wandb_available():
            trackers.append("wandb")
        elif "wandb" in wanted:
            logger.warning("report_to asks for wandb, which is not installed: skipping it")
    unknown = wanted - {"wandb", "all", "tensorboard", "csv", "none"}
    if unknown:
        logger.warning(f"report_to: ignoring unknown tracker(s) {sorted(unknown)} (known: tensorboard, csv, wandb)")
    return trackers


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------


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


def _resume(accelerator: Accelerator, args: CMIMTrainingArguments, output_dir: Path) -> Path | None:
    """Load the requested checkpoint into the prepared objects (see the module notes). Returns its path."""
    request = args.resume_from_checkpoint
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


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------


def loss_parts(objective: str) -> tuple[str, ...]:
    """Output fields logged for an objective (the others are None for it)."""
    parts = ["loss", "reconstruction_loss", "token_accuracy"]
    if objective in ("mim", "cmim", "infonce"):
        parts += ["latent_log_q", "latent_log_prior"]
    if objective in ("cmim", "infonce"):
        parts.append("contrastive_log_prob")
    if objective == "vae":
        parts.append("kl")
    return tuple(parts)


def _fork_rng(device: torch.device):
    if device.type == "cuda":
        return torch.random.fork_rng(devices=[device.index or 0], device_type="cuda")
    return torch.random.fork_rng(devices=[])


def _local_shard(dataset: datasets.Dataset, n: int, accelerator: Accelerator) -> datasets.Dataset:
    """The first `n` rows (rounded down to a multiple of the process count, so every process runs the same
    number of batches), this process's contiguous share."""
    n = min(n, len(dataset))
    n -= n % accelerator.num_processes
    rows = dataset.select(range(n))
    return rows.shard(num_shards=accelerator.num_processes, index=accelerator.process_index, contiguous=True)


@torch.no_grad()
def evaluate(model, eval_dataset: datasets.Dataset, collator: CMIMDataCollator, accelerator: Accelerator, *,
             tokenizer, batch_size: int, num_reconstruction_samples: int, seed: int = 0,
             max_samples: int | None = None) -> dict[str, float]:
    """Validation loss and its parts, token accuracy, and exact greedy reconstruction (`generate`) of the first
    `num_reconstruction_samples` rows. Metrics are exact means over rows, across processes."""
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)  # eval mode: no recompiles
    objective = unwrapped.config.objective
    parts = loss_parts(objective)
    device = accelerator.device
    was_training = unwrapped.training
    unwrapped.eval()
    sums = torch.zeros(len(parts), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    shard = _local_shard(eval_dataset, max_samples or len(eval_dataset), accelerator)
    sampler = LengthGroupedBatchSampler(shard["length"], batch_size, shuffle=False)
    synced = accelerator.distributed_type == DistributedType.FSDP
    with _fork_rng(device):
        torch.manual_seed(seed)  # the same latent noise at every evaluation
        for batch in DataLoader(shard, batch_sampler=sampler, collate_fn=collator):
            batch = {k: v.to(device) for k, v in batch.items()}
            with accelerator.autocast():
                outputs = unwrapped(**batch)
            rows = batch["input_ids"].shape[0]
            sums += torch.stack([getattr(outputs, p).detach().double() for p in parts]) * rows
            count += rows
        exact = torch.zeros((), device=device, dtype=torch.float64)
        recon_rows = torch.zeros((), device=device, dtype=torch.float64)
        examples = []
        if num_reconstruction_samples > 0:
            recon = _local_shard(eval_dataset, num_reconstruction_samples, accelerator)
            max_new = unwrapped.config.max_position_embeddings - 1
            plain = CMIMDataCollator(collator.pad_token_id, collator.decoder_start_token_id,
                                     collator.pad_to_multiple_of, collator.max_length, with_labels=False)
            for batch in DataLoader(recon.select_columns(["input_ids"]), batch_size=batch_size, collate_fn=plain):
                ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                with accelerator.autocast():
                    generated = unwrapped.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                                   max_new_tokens=min(max_new, ids.shape[1] + 8), synced_gpus=synced)
                predicted = tokenizer.batch_decode(generated, skip_special_tokens=True)
                targets = tokenizer.batch_decode(ids, skip_special_tokens=True)
                exact += sum(p == t for p, t in zip(predicted, targets))
                recon_rows += len(targets)
                examples.extend(zip(targets, predicted))
    unwrapped.train(was_training)
    totals = accelerator.reduce(torch.cat([sums, count.view(1), exact.view(1), recon_rows.view(1)]), "sum")
    totals = totals.tolist()
    n = max(totals[len(parts)], 1.0)
    metrics = {f"eval/{p}": totals[i] / n for i, p in enumerate(parts)}
    metrics["eval/num_samples"] = totals[len(parts)]
    if num_reconstruction_samples > 0:
        metrics["eval/exact_reconstruction"] = totals[-2] / max(totals[-1], 1.0)
        metrics["eval/num_reconstruction_samples"] = totals[-1]
        if accelerator.is_main_process:
            wrong = [(t, p) for t, p in examples if t != p][:3]
            for target, predicted in wrong:
                logger.info(f"  reconstruction example: {target} -> {predicted}")
    return metrics


# ---------------------------------------------------------------------------------------------------------
# Non-finite loss monitor: device-side bookkeeping, checked only when the loop syncs anyway
# ---------------------------------------------------------------------------------------------------------


class NonFiniteMonitor:
    """Remembers (on the device, without syncing) the first step whose loss or gradient norm was not finite."""

    def __init__(self, device: torch.device, grad_norms: bool = True):
        self.grad_norms = grad_norms  # whether observe() receives gradient norms (clipping on)
        self.first_step = torch.full((), math.inf, device=device)
        self.loss_at_first = torch.zeros((), device=device)
        self.grad_norm_at_first = torch.zeros((), device=device)

    def observe(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        loss = loss.detach().float()
        bad = ~torch.isfinite(loss)
        norm = torch.zeros_like(loss) if grad_norm is None else torch.as_tensor(grad_norm, device=loss.device).float()
        bad = bad | ~torch.isfinite(norm)
        new = bad & torch.isinf(self.first_step)
        self.first_step = torch.where(new, torch.full_like(self.first_step, step), self.first_step)
        self.loss_at_first = torch.where(new, loss, self.loss_at_first)
        self.grad_norm_at_first = torch.where(new, norm, self.grad_norm_at_first)

    def check(self, accelerator: Accelerator, output_dir: Path) -> None:
        """Raise `NonFiniteLossError` if any process saw a non-finite value (collective: call on all)."""
        gathered = accelerator.gather(torch.stack([self.first_step, self.loss_at_first,
                                                   self.grad_norm_at_first]).view(1, 3)).view(-1, 3)
        first = int(torch.argmin(gathered[:, 0]))
        step, loss, norm = gathered[first].tolist()
        if math.isfinite(step):
            saved = find_checkpoints(output_dir)
            where = f"the last checkpoint is {saved[-1]}" if saved else "no checkpoint was saved"
            norm_text = f", gradient norm={norm}" if self.grad_norms else ""
            raise NonFiniteLossError(
                f"non-finite training loss at step {int(step)} (loss={loss}{norm_text}, process {first}); the run "
                f"stopped before saving anything after it ({where}). Lower the learning rate or raise "
                "warmup_steps, then --resume_from_checkpoint latest.")


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    output_dir: Path
    final_dir: Path | None
    global_step: int
    metrics: dict[str, float] = field(default_factory=dict)
    resumed_from: Path | None = None


class _TqdmHandler(logging.StreamHandler):
    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break training
            self.handleError(record)


class _DropTiedWeightNotice(logging.Filter):
    """Accelerate warns at every checkpoint that it dropped `lm_head.weight`; it is tied to the decoder's
    embeddings by design and comes back on load."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor {'lm_head.weight'}" not in record.getMessage()


def _setup_logging(accelerator: Accelerator, output_dir: Path) -> None:
    notice_filter = _DropTiedWeightNotice()
    accelerate_logger = logging.getLogger("accelerate.utils.other")
    if not any(isinstance(f, _DropTiedWeightNotice) for f in accelerate_logger.filters):
        accelerate_logger.addFilter(notice_filter)
    logger.setLevel(logging.INFO if accelerator.is_main_process else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = _TqdmHandler()
    console.setFormatter(formatter)
    logger.addHandler(console)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(output_dir / LOG_FILE)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    else:
        datasets.disable_progress_bars()


def _optimizer(model: torch.nn.Module, args: CMIMTrainingArguments) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)  # no decay on biases and norms
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                             eps=args.adam_epsilon)


def _latent_weight(step: int, warmup: int) -> float:
    """MolMIM's ramp of the latent-loss weight, 0 at the first step to 1 after `warmup` steps."""
    return 1.0 if warmup <= 0 else min(1.0, step / warmup)


def _format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k.split('/', 1)[-1]}={v:.4g}" for k, v in metrics.items())


def train(args: CMIMTrainingArguments, model_args, recipe: dict) -> TrainResult:
    """Run one training job described by `args`, `model_args` (a `ModelArguments`) and the recipe read."""
    output_dir = Path(args.output_dir or Path("runs") / recipe["name"])
    args = dataclasses.replace(args, output_dir=str(output_dir))
    mixed_precision = "no"
    if args.bf16:
        from accelerate.utils import is_bf16_available

        mixed_precision = "bf16" if is_bf16_available() else "no"
    ddp_kwargs = DistributedDataParallelKwargs(find_unused_parameters=model_args.objective == "ae")
    # `accelerate launch --multi_gpu` on a machine without accelerators: run the processes on CPU over gloo
    # (Accelerate would otherwise leave each process alone, thinking it is a single-process run).
    cpu_processes = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available()
    accelerator = Accelerator(
        cpu=cpu_processes,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        project_dir=str(output_dir),
        log_with=None,  # trackers are attached after resuming (the CSV log is trimmed to the resumed step)
        kwargs_handlers=[ddp_kwargs],
        dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
    )
    _setup_logging(accelerator, output_dir)
    if args.bf16 and mixed_precision == "no":
        logger.warning("--bf16: this hardware has no bf16 support; training in fp32")
    if model_args.objective == "ae" and args.latent_loss_warmup_steps:
        logger.info("latent_loss_warmup_steps has no effect with objective `ae`")

    # -- the output folder ---------------------------------------------------------------------------------
    existing = find_checkpoints(output_dir)
    if existing and args.resume_from_checkpoint is None:
        if not args.overwrite_output_dir:
            raise TrainingError(f"{output_dir} already holds checkpoints ({existing[-1].name}, ...): pass "
                                "--resume_from_checkpoint latest to continue, --overwrite_output_dir to start "
                                "afresh, or another --output_dir")
        if accelerator.is_main_process:
            for folder in existing:
                shutil.rmtree(folder)
    if accelerator.is_main_process:
        for leftover in output_dir.glob(f".{CHECKPOINT_PREFIX}*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)  # a save interrupted by a crash
    accelerator.wait_for_everyone()

    # -- data and tokenizer ------------------------------------------------------------------------------
    max_length = args.max_length or model_args.max_position_embeddings
    if max_length > model_args.max_position_embeddings:
        raise TrainingError(f"max_length={max_length} exceeds the model's max_position_embeddings="
                            f"{model_args.max_position_embeddings}")
    start = time.perf_counter()
    with accelerator.main_process_first():
        tokenizer, data = prepare_data(args, args.tokenizer, max_length, model_args.objective)
    for line in data.report:
        logger.info(line)
    logger.info(f"data ready in {time.perf_counter() - start:.1f}s")

    # -- model -------------------------------------------------------------------------------------------
    try:
        config = CMIMConfig(**dataclasses.asdict(model_args), vocab_size=len(tokenizer),
                            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id,
                            decoder_start_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None
                            else tokenizer.pad_token_id,
                            mask_token_id=next(i for i in (tokenizer.mask_token_id, tokenizer.unk_token_id,
                                                           tokenizer.pad_token_id) if i is not None))
    except ValueError as error:
        raise TrainingError(str(error)) from error
    set_seed(args.seed)
    model = CMIMForConditionalGeneration(config)
    set_seed(args.seed + accelerator.process_index)  # different dropout / latent noise on each process
    recipe_out = resolved_recipe(recipe["name"], recipe.get("description", ""), args, model_args)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe_out, sort_keys=False))
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"model: {n_params / 1e6:.2f}M parameters, objective {config.objective}, latent "
                f"{config.latent_tokens}x{config.latent_size}, vocabulary {config.vocab_size}")

    # -- data loaders ------------------------------------------------------------------------------------
    collator = CMIMDataCollator(tokenizer.pad_token_id, config.decoder_start_token_id, args.pad_to_multiple_of,
                                config.max_position_embeddings)
    loader_generator = torch.Generator().manual_seed(args.seed)  # worker seeds; keeps the global RNG untouched
    if args.streaming:
        train_sampler = None
        train_loader = DataLoader(data.train, batch_size=args.per_device_train_batch_size, collate_fn=collator,
                                  num_workers=args.dataloader_num_workers, generator=loader_generator,
                                  pin_memory=torch.cuda.is_available())
    else:
        train_sampler = LengthGroupedBatchSampler(data.train["length"], args.per_device_train_batch_size,
                                                  shuffle=True, seed=args.seed, group_by_length=args.group_by_length)
        train_loader = DataLoader(data.train, batch_sampler=train_sampler, collate_fn=collator,
                                  num_workers=args.dataloader_num_workers, generator=loader_generator,
                                  pin_memory=torch.cuda.is_available())

    optimizer = _optimizer(model, args)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if args.torch_compile:
        # Compiled here rather than through Accelerate's dynamo plugin, which a process keeps from its first
        # Accelerator (`compare` trains many models in one process). Lengths vary by batch: dynamo's automatic
        # dynamic shapes recompile once, then one graph serves every length. Checkpoints, evaluation and the
        # saved model use the plain module (unwrap_model(..., keep_torch_compile=False)).
        model = torch.compile(model)
    if args.max_steps > 0:
        total_steps = args.max_steps
    else:
        updates_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
        total_steps = max(1, math.ceil(args.num_train_epochs * updates_per_epoch))
    warmup = int(round(args.warmup_steps * total_steps)) if args.warmup_steps < 1 else int(args.warmup_steps)
    # Stepped by the loop once per optimizer step (not prepared: Accelerate would step it once per process).
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                              num_training_steps=total_steps)
    state = TrainState()
    accelerator.register_for_checkpointing(scheduler, state)

    resumed_from = _resume(accelerator, args, output_dir)
    trackers = _trackers(args, output_dir, keep_until_step=state.global_step if resumed_from else None)
    accelerator.log_with = trackers
    accelerator.init_trackers(args.run_name or recipe["name"], config=_flat_config(recipe_out))

    logger.info(f"training {total_steps} steps ({state.global_step} done), {accelerator.num_processes} process(es), "
                f"batch {args.per_device_train_batch_size} x {args.gradient_accumulation_steps} accumulation x "
                f"{accelerator.num_processes}, mixed precision {mixed_precision}, device {accelerator.device}"
                f"{', torch.compile' if args.torch_compile else ''}")

    try:  # trackers are closed (files flushed) however the run ends
        # -- loop ----------------------------------------------------------------------------------------------
        parts = loss_parts(config.objective)
        device = accelerator.device
        running = torch.zeros(len(parts) + 1, device=device)  # parts + grad norm
        running_batches = running_steps = 0
        monitor = NonFiniteMonitor(device, grad_norms=args.max_grad_norm > 0)
        last_metrics: dict[str, float] = {}
        progress = tqdm(total=total_steps, initial=state.global_step, desc="training", dynamic_ncols=True,
                        disable=args.disable_tqdm or not accelerator.is_local_main_process)
        tick, tick_step = time.perf_counter(), state.global_step
        model.train()
        done = state.global_step >= total_steps

        def run_eval(model) -> dict[str, float]:
            if data.eval is None:
                return {}
            metrics = evaluate(model, data.eval, collator, accelerator, tokenizer=tokenizer,
                               batch_size=args.per_device_eval_batch_size,
                               num_reconstruction_samples=args.num_reconstruction_samples, seed=args.seed,
                               max_samples=args.max_eval_samples)
            accelerator.log(metrics, step=state.global_step)
            logger.info(f"step {state.global_step}: {_format_metrics(metrics)}")
            return metrics

        epoch_loader = train_loader
        while not done:
            if train_sampler is not None:
                train_sampler.set_epoch(state.epoch)
            train_loader.set_epoch(state.epoch)
            epoch_loader = skip_first_batches(train_loader, state.batches_in_epoch) if state.batches_in_epoch \
                else train_loader
            for batch in epoch_loader:
                with accelerator.accumulate(model):
                    outputs = model(**batch, latent_loss_weight=_latent_weight(state.global_step,
                                                                               args.latent_loss_warmup_steps))
                    loss = outputs.loss
                    accelerator.backward(loss)
                    grad_norm = None
                    if accelerator.sync_gradients and args.max_grad_norm > 0:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                state.batches_in_epoch += 1
                running[: len(parts)] += torch.stack([getattr(outputs, p).detach().float() for p in parts])
                running_batches += 1
                monitor.observe(state.global_step + 1, loss, grad_norm)
                if not accelerator.sync_gradients:
                    continue
                if grad_norm is not None:
                    running[-1] += torch.as_tensor(grad_norm, device=device).float()
                running_steps += 1
                scheduler.step()
                state.global_step += 1
                progress.update(1)
                step = state.global_step
                last = step >= total_steps
                if step % args.logging_steps == 0 or last:
                    monitor.check(accelerator, output_dir)
                    means = accelerator.reduce(running, "mean").tolist()
                    now = time.perf_counter()
                    logs = {f"train/{p}": means[i] / running_batches for i, p in enumerate(parts)}
                    if args.max_grad_norm > 0:
                        logs["train/grad_norm"] = means[-1] / max(running_steps, 1)
                    logs.update({"train/learning_rate": scheduler.get_last_lr()[0],
                                 "train/latent_loss_weight": _latent_weight(step - 1, args.latent_loss_warmup_steps),
                                 "train/epoch": state.epoch + state.batches_in_epoch / max(len(train_loader), 1)
                                 if not args.streaming else float(state.epoch),
                                 "train/steps_per_second": (step - tick_step) / max(now - tick, 1e-9)})
                    accelerator.log(logs, step=step)
                    progress.set_postfix(loss=f"{logs['train/loss']:.4f}", lr=f"{logs['train/learning_rate']:.2e}")
                    running.zero_()
                    running_batches = running_steps = 0
                    tick, tick_step = now, step
                if (args.eval_steps > 0 and step % args.eval_steps == 0) and not last:
                    monitor.check(accelerator, output_dir)
                    last_metrics = run_eval(model)
                if args.save_steps > 0 and step % args.save_steps == 0:
                    monitor.check(accelerator, output_dir)
                    save_checkpoint(accelerator, output_dir, state, recipe_out, tokenizer, args.save_total_limit)
                if last:
                    done = True
                    break
            else:  # the epoch ran out
                state.epoch += 1
                state.batches_in_epoch = 0
        progress.close()

        # -- the end -------------------------------------------------------------------------------------------
        monitor.check(accelerator, output_dir)
        if data.stream_tokenizer is not None:
            logger.info(f"training data: {data.stream_tokenizer.report()}")
        last_metrics = run_eval(model) or last_metrics
        final_dir = _save_final(accelerator, model, tokenizer, output_dir, recipe_out, last_metrics, config)
    except BaseException:
        for tracker in accelerator.trackers:
            tracker.finish()
        raise
    # Drop every reference to the DDP wrapper before the process group goes: its reducer holds the group, and
    # freeing it afterwards makes gloo's destructor wait forever for the other processes.
    del model, optimizer, train_loader, epoch_loader, scheduler
    accelerator.free_memory()
    accelerator.end_training()
    if accelerator.is_main_process:
        _print_summary(final_dir, last_metrics, data.eval_source)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    return TrainResult(output_dir, final_dir, state.global_step, last_metrics, resumed_from)


def _save_final(accelerator: Accelerator, model, tokenizer, output_dir: Path, recipe: dict,
                metrics: dict[str, float], config: CMIMConfig) -> Path:
    """The Hub-ready folder `output_dir/final` (weights, config, tokenizer, code, pipeline, recipe, logs)."""
    final_dir = output_dir / FINAL_DIR_NAME
    accelerator.wait_for_everyone()
    if accelerator.distributed_type == DistributedType.FSDP:
        state_dict = accelerator.get_state_dict(model)  # collective: gathers the full weights on process 0
        to_save = None
        if accelerator.is_main_process:
            to_save = CMIMForConditionalGeneration(config)
            to_save.load_state_dict(state_dict)
    else:
        to_save = accelerator.unwrap_model(model, keep_torch_compile=False)
    if accelerator.is_main_process:
        eval_results = {k.split("/", 1)[1]: v for k, v in metrics.items()}
        write_json_atomic(output_dir / "eval_results.json", eval_results)
        extra = {"eval_results.json": json.dumps(eval_results, indent=2)}
        for name in (METRICS_CSV, LOG_FILE):
            if (output_dir / name).is_file():
                extra[f"training_logs/{name}"] = (output_dir / name).read_text()
        save_model_folder(to_save, tokenizer, final_dir, recipe=recipe, extra_files=extra)
        logger.info(f"saved the model to {final_dir}")
    accelerator.wait_for_everyone()
    return final_dir


def _print_summary(final_dir: Path, metrics: dict[str, float], eval_source: str) -> None:
    print(f"\nModel saved to {final_dir}")
    if metrics:
        line = (f"Validation ({int(metrics['eval/num_samples'])} rows of {eval_source}): loss "
                f"{metrics['eval/loss']:.4f}, token accuracy {100 * metrics['eval/token_accuracy']:.2f}%")
        if "eval/exact_reconstruction" in metrics:
            line += (f", exact reconstruction {100 * metrics['eval/exact_reconstruction']:.1f}% "
                     f"(greedy, {int(metrics['eval/num_reconstruction_samples'])} rows)")
        print(line)
    print("Embed molecules with it:\n"
          f"  python -c \"from transformers import pipeline; print(len(pipeline('feature-extraction', "
          f"model='{final_dir}', trust_remote_code=True)('CC(=O)Oc1ccccc1C(=O)O')))\"")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `cmim-hf train` and `python -m cmim_hf.training` (also under `accelerate launch`)."""
    try:
        training_args, model_args, recipe = parse_args(argv)
    except (ValueError, FileNotFoundError) as error:
        print(f"cmim-hf train: error: {error}", file=sys.stderr)
        return 2
    try:
        train(training_args, model_args, recipe)
    except TrainingError as error:
        # every process raises the same error (the checks are collective); the first one reports it
        if int(os.environ.get("RANK", "0")) == 0:
            logger.error(str(error))
            print(f"cmim-hf train: error: {error}", file=sys.stderr)
        return 1
    return 0
