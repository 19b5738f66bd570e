"""Checking a model folder before anything is computed with it, naming the broken file.

    model, tokenizer = load_model_folder(folder)   # check_model_files, from_pretrained, check_loaded_model

`check_model_files` reads only what is cheap: `config.json` (JSON, with a `model_type` that is cMIM or one of
transformers' encoder-decoders), the weights (safetensors headers: present, not empty, not truncated; every shard
of a sharded save) and the tokenizer files (present; the JSON ones parse). `check_loaded_model` then checks what
needs the model: no weight missing or of another shape than the config says, a vocabulary with a row for every
token of the tokenizer, and finite weights (a NaN would turn every embedding into NaN without a word).

Every failure is a FileNotFoundError (a file is missing) or a ValueError (a file is unreadable or does not fit),
whose message names the file or the tensor.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

__all__ = ["check_loaded_model", "check_model_files", "load_model_folder"]

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
# Tokenizer files that are JSON when present (the others, such as SentencePiece models, are binary).
_TOKENIZER_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                         "vocab.json")
_SHOWN = 5  # names listed in a message before "..."


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing ({what})")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({what}): {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object ({what}), got a {type(data).__name__}")
    return data


def _listed(names) -> str:
    names = list(names)
    return ", ".join(map(str, names[:_SHOWN])) + (f", ... ({len(names)} in all)" if len(names) > _SHOWN else "")


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files of the folder (one, or the shards of its index); none for a PyTorch .bin save."""
    if (folder / WEIGHTS_NAME).exists():
        return [folder / WEIGHTS_NAME]
    if (folder / WEIGHTS_INDEX_NAME).exists():
        index = _read_json(folder / WEIGHTS_INDEX_NAME, "the index of the sharded weights")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) and Path(v).name == v and v not in ("", "..")
                                                       for v in weight_map.values()):
            raise ValueError(f"{folder / WEIGHTS_INDEX_NAME} has no valid `weight_map` (tensor name -> shard file)")
        return [folder / name for name in sorted(set(weight_map.values()))]
    if any(folder.glob("pytorch_model*.bin")):  # transformers reads these with weights_only=True
        return []
    raise FileNotFoundError(f"{folder / WEIGHTS_NAME} is missing (the weights)")


def check_model_files(folder: str | os.PathLike) -> dict:
    """Check the files of a model folder without loading the model; return its config.json as a dict.

    Raises:
        FileNotFoundError: the folder, config.json, the weights or the tokenizer files are missing.
        ValueError: config.json or a tokenizer file is not JSON; `model_type` is neither `cmim` nor a transformers
            encoder-decoder; a weights file is empty, truncated or not safetensors.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist (or is not a folder)")
    config = _read_json(folder / "config.json", "the model config")
    model_type = config.get("model_type")
    if model_type is None:
        raise ValueError(f"{folder / 'config.json'} has no `model_type`: it was not written by transformers' "
                         "save_pretrained")
    if model_type != "cmim" and model_type not in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"{folder / 'config.json'}: model_type {model_type!r} is not an encoder-decoder: expected a "
                         "cMIM model or a transformers sequence-to-sequence model such as BART, T5, MBart, Marian or "
                         "Pegasus")
    for path in _weight_files(folder):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing or not a file (the weights)")
        if path.stat().st_size == 0:
            raise ValueError(f"{path} is empty (0 bytes): the weights were never written; save or download the "
                             "model again")
        try:
            with safe_open(path, framework="pt"):
                pass
        except SafetensorError as error:
            raise ValueError(f"{path} is not a readable safetensors file ({error}): it is truncated or damaged; "
                             "save or download the model again") from None
    if not (folder / "tokenizer.json").is_file() and (model_type == "cmim" or
                                                       not (folder / "tokenizer_config.json").is_file()):
        raise FileNotFoundError(f"{folder / 'tokenizer.json'} is missing (the tokenizer)")
    for name in _TOKENIZER_JSON_FILES:
        if (folder / name).exists():
            _read_json(folder / name, "a tokenizer file")
    return config


def check_loaded_model(model, tokenizer, loading_info: dict, folder: str | os.PathLike) -> None:
    """Check a model loaded with `from_pretrained(..., output_loading_info=True, ignore_mismatched_sizes=True)`:
    every weight came from the folder with the shape the config gives it, the tokenizer's ids fit the
    vocabulary, and every weight is finite. Raises ValueError naming the tensor or the file."""
    folder = Path(folder)
    weights = folder / WEIGHTS_NAME if (folder / WEIGHTS_NAME).exists() else f"the weights in {folder}"
    if loading_info.get("mismatched_keys"):
        shapes = [f"{name} is {tuple(saved)} in the file, {tuple(expected)} in the model"
                  for name, saved, expected in loading_info["mismatched_keys"]]
        raise ValueError(f"{weights}: tensor shapes do not match {folder / 'config.json'}: {_listed(shapes)}")
    if loading_info.get("missing_keys"):
        raise ValueError(f"{weights} lacks weights the model needs ({_listed(sorted(loading_info['missing_keys']))}): "
                         f"it does not belong to {folder / 'config.json'}")
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ValueError(f"the tokenizer in {folder} has {len(tokenizer)} tokens, but the model's vocabulary has "
                         f"{rows} rows (vocab_size in config.json): ids from {rows} on would index past the "
                         "embeddings. Use the tokenizer saved with the model")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{weights}: tensor {name} holds {bad} NaN or infinite value(s) of {tensor.numel()}; "
                             "every embedding would be NaN. The weights are damaged (or come from a diverged run)")


def load_model_folder(folder: str | os.PathLike, *, model_class=AutoModelForSeq2SeqLM, dtype=None):
    """`(model, tokenizer)` of a local model folder, checked before and after loading (see the module notes).

    model_class: the Auto class (or model class) whose `from_pretrained` builds the model.
    dtype: passed to `from_pretrained`.
    """
    folder = Path(folder)
    check_model_files(folder)
    try:
        config = AutoConfig.from_pretrained(folder)
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise ValueError(f"{folder / 'config.json'} does not describe a valid model: {error}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as error:  # noqa: BLE001 - tokenizer backends raise many types; the file is what matters
        raise ValueError(f"the tokenizer in {folder} could not be loaded ({type(error).__name__}: "
                         f"{str(error).strip().splitlines()[0] if str(error).strip() else ''})") from error
    try:
        model, loading_info = model_class.from_pretrained(folder, config=config, dtype=dtype,
                                                          output_loading_info=True, ignore_mismatched_sizes=True)
    except pickle.UnpicklingError as error:  # a pytorch_model.bin holding objects: torch refused (weights_only)
        weights = next((p.name for p in folder.glob("*.bin")), "the weights file")
        raise ValueError(f"{folder / weights} holds pickled objects beyond tensors, which could run code; it was "
                         "not loaded (expected model.safetensors, or a .bin of tensors only)") from error
    check_loaded_model(model, tokenizer, loading_info, folder)
    return model, tokenizer
