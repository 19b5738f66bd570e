"""Data preparation for a training run: load the splits, tokenize them (bad rows counted and skipped), add the
InfoNCE second views, and build the training data loader.

InfoNCE: the first view is the row itself (so reconstruction is the same task for every objective), the second
a randomised SMILES made once in the cached `dataset.map` (off the hot path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from cmim_hf.data import (
    NAMED_DATASETS,
    TEXT_COLUMN,
    StreamTokenizer,
    default_eval_split,
    load_named_dataset,
    load_text_dataset,
    load_text_splits,
    pick_split,
    tokenize_dataset,
)
from cmim_hf.tokenization import build_smiles_tokenizer, default_smiles_tokenizer

from .arguments import CMIMTrainingArguments
from .collator import CMIMDataCollator, LengthGroupedBatchSampler
from .errors import TrainingError

__all__ = ["PreparedData", "add_second_views", "load_tokenizer", "prepare_data", "train_loader"]


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


def _load_raw_splits(args: CMIMTrainingArguments) -> tuple[Any, datasets.Dataset | None, str]:
    """(train, eval or None, description of the eval source); train is an IterableDataset when streaming."""
    eval_raw = None
    if args.dataset in NAMED_DATASETS:
        spec = NAMED_DATASETS[args.dataset]
        if args.streaming:
            train = load_named_dataset(args.dataset, split=args.train_split).to_iterable_dataset(num_shards=64)
        else:
            # a random subset when asked for one; the full corpus stays in file order (the sampler shuffles)
            train = load_named_dataset(args.dataset, split=args.train_split, max_samples=args.max_train_samples,
                                       seed=args.seed if args.max_train_samples is not None else None)
        eval_split = default_eval_split(spec.files, args.eval_split)
        if args.eval_dataset is None and eval_split is not None:
            # seed 0: the same validation molecules whatever the training seed
            eval_raw = load_named_dataset(args.dataset, split=eval_split, max_samples=args.max_eval_samples, seed=0)
            return train, eval_raw, f"{args.dataset}/{eval_split}"
    else:
        splits = load_text_splits(args.dataset, args.text_column, streaming=args.streaming)
        train = pick_split(splits, args.train_split, args.dataset)
        if not args.streaming and args.max_train_samples is not None and args.max_train_samples < len(train):
            train = train.shuffle(seed=args.seed).select(range(args.max_train_samples))
        eval_split = default_eval_split(splits, args.eval_split) if len(splits) > 1 else None
        if args.eval_dataset is None and eval_split is not None:
            if args.streaming:  # validation is map-style
                splits = load_text_splits(args.dataset, args.text_column)
            eval_raw = pick_split(splits, eval_split, args.dataset)
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
    from cmim_hf.chem import randomized_smiles_views

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


@dataclass
class PreparedData:
    train: Any  # datasets.Dataset, or IterableDataset when streaming
    eval: datasets.Dataset | None
    eval_source: str
    report: list[str]
    stream_tokenizer: StreamTokenizer | None = None


def prepare_data(args: CMIMTrainingArguments, tokenizer_name: str, max_length: int, objective: str):
    """Load, subsample, tokenize (cached, bad rows counted and skipped), add InfoNCE views. Returns
    `(tokenizer, PreparedData)`."""
    try:
        train_raw, eval_raw, eval_source = _load_raw_splits(args)
    except (ValueError, FileNotFoundError) as error:  # a source that cannot be read, a missing column or split
        raise TrainingError(str(error)) from error
    tokenizer = load_tokenizer(tokenizer_name, max_length, None if args.streaming else train_raw)
    report = []
    stream_tokenizer = None
    keep = ["input_ids", "length"]
    if args.streaming:
        stream_tokenizer = StreamTokenizer(tokenizer, max_length, args.skip_unknown_tokens)
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


def train_loader(dataset, collator: CMIMDataCollator,
                 args: CMIMTrainingArguments) -> tuple[DataLoader, LengthGroupedBatchSampler | None]:
    """The training data loader and, for a map-style data set, its length-grouped batch sampler (whose order is
    a pure function of seed and epoch, for exact mid-epoch resume)."""
    loader_generator = torch.Generator().manual_seed(args.seed)  # worker seeds; keeps the global RNG untouched
    common = {"collate_fn": collator, "num_workers": args.dataloader_num_workers, "generator": loader_generator,
              "pin_memory": torch.cuda.is_available()}
    if args.streaming:
        return DataLoader(dataset, batch_size=args.per_device_train_batch_size, **common), None
    sampler = LengthGroupedBatchSampler(dataset["length"], args.per_device_train_batch_size, shuffle=True,
                                        seed=args.seed, group_by_length=args.group_by_length)
    return DataLoader(dataset, batch_sampler=sampler, **common), sampler
