"""Embeddings (and samples) for users: load a model by name, embed SMILES in batches, scikit-learn transformer.

    model, tokenizer = load_pretrained("cmim-moses-tiny")      # or a folder, or "org/name" on the Hub
    X = embed_smiles(model, tokenizer, ["CCO", "c1ccccc1O"])     # numpy (2, E), float32
    make_pipeline(CMIMEmbedder("cmim-moses-tiny"), Ridge())     # scikit-learn, cross_val_score-ready
    generate_smiles(model, tokenizer, 10, seed=0)                # decoded prior samples
    interpolate_smiles(model, tokenizer, "CCO", "c1ccccc1O", 5)  # decoded points on the latent line

`embed_smiles` follows sentence-transformers' `encode`: it validates every input first (naming the bad
ones), sorts by length so batches carry little padding, runs under `torch.no_grad`, and returns the rows
in the input order. Embeddings do not depend on the batch size or on the other molecules of a batch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .chem import canonicalize, check_smiles_validity, require_rdkit
from .hub import resolve_model
from .loading import load_model_folder
from .modeling import (EMBEDDING_KINDS, check_embedding_kind, check_encoder_decoder, embedding_kinds, embedding_size,
                       is_cmim, seq2seq_embedding)
from .tokenization import check_and_encode, check_texts
from .checks import MAX_GENERATED_SAMPLES, MAX_SEED, check_device, check_number

__all__ = ["EMBEDDING_KINDS", "embed_ids", "embedding_kinds", "embedding_size", "embed_smiles", "generate_smiles",
           "interpolate_smiles", "is_cmim", "load_pretrained", "max_input_length", "prepare_ids", "torch_forward",
           "truncate_ids"]

DEFAULT_MODEL = "cmim-moses-tiny"  # the checkpoint this package ships
DECODE_BATCH_SIZE = 512  # latents decoded at once by generate_smiles


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _as_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {tuple(DTYPES)} (or the torch dtype), got {dtype!r}")


def load_pretrained(name_or_path: str | os.PathLike = DEFAULT_MODEL, *, device: str | torch.device | None = None,
                    revision: str | None = None, dtype: str | torch.dtype | None = None):
    """Load a cMIM model, or any transformers encoder-decoder (BART, T5, ...), with its language-model head and
    its tokenizer, in eval mode.

    Args:
        name_or_path: a saved folder, a checkpoint shipped in the package (`cmim_hf.list_pretrained()`), or a
            Hub repo id "namespace/name" (cached by huggingface_hub; works offline once cached). Folders of plain
            encoder-decoders embed with `embed_smiles` too (informative, encoder and decoder kinds).
        device: where to put the model; default CUDA when available, else CPU.
        revision: Hub branch, tag or commit (repo ids only).
        dtype: "float32" (default), "bfloat16" or "float16". bfloat16 embeds faster on CPUs with AVX512-BF16
            (`cmim-hf benchmark --sections embedding` measures by how much), with embeddings pointing the same
            way (`tests/test_shipped_checkpoint.py` checks the cosine).

    Returns:
        `(model, tokenizer)`: a `CMIMForConditionalGeneration` (the class comes from this package, registered with
        the Auto classes on import, so no remote code runs) or the encoder-decoder's `AutoModelForSeq2SeqLM`.

    Raises:
        ValueError: the folder holds a model that is not an encoder-decoder (a BERT, a GPT-2, ...).
    """
    dtype = _as_dtype(dtype)
    device = check_device(device, available=True)  # "cuda" without CUDA: one clear error, not torch's assertion
    folder = resolve_model(name_or_path, revision=revision)
    model, tokenizer = load_model_folder(folder, dtype=dtype)  # files, shapes, vocabulary, finite weights checked
    if not is_cmim(model.config):
        check_encoder_decoder(model, repr(str(name_or_path)))
    model.to(device if device is not None else _default_device()).eval()
    return model, tokenizer


def max_input_length(model, tokenizer) -> int:
    """The longest input the model takes, in tokens (the tokenizer may allow more than the positions; T5-style
    models have no position limit of their own)."""
    positions = getattr(model.config, "max_position_embeddings", None) or np.inf
    limit = min(positions, tokenizer.model_max_length or np.inf)
    if not np.isfinite(limit):
        raise ValueError(f"neither the model ({type(model).__name__}) nor its tokenizer states a maximum input "
                         "length: set tokenizer.model_max_length")
    return int(limit)


def _require_cmim(model, what: str) -> None:
    if not is_cmim(model.config):
        raise TypeError(f"{what} decodes latents, which needs a cMIM model; this is a plain "
                        f"{type(model).__name__} (it embeds with embed_smiles, but has no latent space)")


def embed_smiles(
    model,
    tokenizer,
    smiles: str | Iterable[str],
    *,
    kind: Literal["informative", "latent", "decoder", "encoder"] = "informative",
    batch_size: int = 64,
    progress: bool = False,
    on_unknown: Literal["ignore", "warn", "raise"] = "warn",
    on_too_long: Literal["truncate", "warn", "raise"] = "warn",
    on_invalid: Literal["ignore", "warn", "raise"] = "warn",
) -> np.ndarray:
    """Embed SMILES (or any texts) with a cMIM model or any transformers encoder-decoder: one float32 row per
    input, in the input order.

    Args:
        model: a cMIM model, or a plain encoder-decoder (BART, T5, ...; see `cmim_hf.modeling.seq2seq_embedding`).
        tokenizer: its tokenizer.
        smiles: one str or an iterable of str (list, numpy array, pandas Series, ...).
        kind: "informative" ([mu ; pooled decoder states] for cMIM, [encoder ; decoder] otherwise), "latent" mu
            (cMIM only), "decoder" or "encoder" (mean-pooled states).
        batch_size: molecules per forward pass; the result does not depend on it.
        progress: show a tqdm progress bar over the batches.
        on_unknown: inputs with pieces the tokenizer maps to `<unk>`: "ignore", "warn" (default) or "raise".
        on_too_long: inputs longer than the model's maximum: "truncate" silently, "warn" (default) and
            truncate, or "raise".
        on_invalid: inputs RDKit cannot parse as SMILES: "ignore", "warn" (default; they are embedded anyway)
            or "raise". Needs RDKit; without it "warn" warns that nothing was checked. Pass "ignore" for text
            that is not SMILES, or to skip RDKit's parse of every input.

    Returns:
        np.ndarray of shape (N, E), float32 (N may be 0).

    Raises:
        TypeError / ValueError: bad inputs (not str, empty, and per `on_unknown` / `on_too_long` /
            `on_invalid`), naming each offending item as `smiles[i]`; bad options.
    """
    check_embedding_kind(kind, model.config)
    max_length = max_input_length(model, tokenizer)
    all_ids = prepare_ids(tokenizer, smiles, max_length=max_length, batch_size=batch_size, on_unknown=on_unknown,
                          on_too_long=on_too_long, on_invalid=on_invalid)
    return embed_ids(tokenizer, all_ids, torch_forward(model, kind), width=embedding_size(model.config, kind),
                     batch_size=batch_size, progress=progress)


def torch_forward(model, kind: str):
    """The PyTorch backend's batch function for `embed_ids`: right-padded int64 arrays (B, T) -> float32 (B, E),
    computed without gradients."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def forward(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        vectors = seq2seq_embedding(model, torch.from_numpy(input_ids).to(device),
                                    torch.from_numpy(attention_mask).to(device), kind=kind)
        return vectors.float().cpu().numpy()

    return forward


def truncate_ids(tokenizer, items: Sequence[str], all_ids: list[list[int]], max_length: int) -> list[list[int]]:
    """The full-length ids of `items`, with the (rare) ones longer than `max_length` re-tokenized truncated, so
    that the tokenizer keeps its special tokens: each input is tokenized once, only the too-long ones twice."""
    return [ids if len(ids) <= max_length else tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            for text, ids in zip(items, all_ids)]


def prepare_ids(tokenizer, smiles: str | Iterable[str], *, max_length: int, batch_size: int = 64,
                on_unknown: str = "warn", on_too_long: str = "warn", on_invalid: str = "warn") -> list[list[int]]:
    """The checks and tokenization of `embed_smiles`, shared by every backend (torch, ONNX Runtime): inputs
    checked and named as `smiles[i]` (see `embed_smiles` for the options), one id list per input, too-long ones
    truncated to `max_length` tokens (special tokens kept)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    with warnings.catch_warnings(record=True) as caught:  # re-issued below, pointing at the backend's caller
        warnings.simplefilter("always")
        items, all_ids = check_and_encode(smiles, tokenizer=tokenizer, max_length=max_length, on_unknown=on_unknown,
                                          on_too_long=on_too_long, name="smiles")
        check_smiles_validity(items, on_invalid, name="smiles")
    for warning in caught:  # prepare_ids <- embed_smiles / ONNXEmbedder.embed <- the user's line
        warnings.warn(warning.message, warning.category, stacklevel=3)
    return truncate_ids(tokenizer, items, all_ids, max_length)


def embed_ids(tokenizer, all_ids: list[list[int]], forward, *, width: int, batch_size: int = 64,
              progress: bool = False) -> np.ndarray:
    """Embed tokenized inputs in batches of similar length: `forward(input_ids, attention_mask)` maps right-padded
    int64 arrays (B, T) to float32 (B, width). Returns (N, width) float32 in the input order."""
    out = np.empty((len(all_ids), width), dtype=np.float32)
    order = np.argsort([-len(ids) for ids in all_ids], kind="stable")  # longest first: a memory error shows at once
    starts = range(0, len(all_ids), batch_size)
    for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress):
        index = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [all_ids[i] for i in index]}, padding=True, padding_side="right",
                              return_tensors="np")
        out[index] = forward(batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64))
    return out


def generation_length(model, max_new_tokens: int | None) -> dict:
    """`generate`'s length keyword: `max_new_tokens` checked against the longest output the model's positions
    allow (its max_position_embeddings, less the start token); {} keeps the model's default."""
    if max_new_tokens is None:
        return {}
    longest = model.config.max_position_embeddings - 1
    check_number("max_new_tokens", max_new_tokens, integer=True, minimum=1, maximum=longest)
    return {"max_new_tokens": max_new_tokens}


def generate_smiles(
    model,
    tokenizer,
    num_samples: int,
    *,
    around: str | None = None,
    radius: float = 1.0,
    scale: float = 1.0,
    seed: int | None = None,
    max_new_tokens: int | None = None,
    valid_only: bool = False,
    max_draws: int | None = None,
    progress: bool = False,
) -> list[str]:
    """Decode latents to SMILES (greedy decoding of each latent).

    Args:
        num_samples: how many strings to return (with `valid_only`: at most this many).
        around: a SMILES to sample near: latents mu(around) + N(0, radius^2 I). Without it, latents come from
            the prior N(0, scale^2 I).
        radius, scale: the noise scale around a molecule / the prior's scale.
        seed: seed of the latent noise, for reproducible samples.
        max_new_tokens: longest output; default the model's maximum length.
        valid_only: keep drawing latents until `num_samples` distinct molecules that RDKit parses are found,
            returned as RDKit-canonical SMILES in the order found (needs RDKit); with `around`, the seed
            molecule itself does not count. Without it the raw decoded strings are returned, valid or not
            (see `cmim_hf.evaluation.metrics.validity`).
        max_draws: with `valid_only`, the most latents to decode (default 100 * num_samples); when they run out
            fewer molecules are returned, with a warning saying how many were found.
        progress: with `valid_only`, a tqdm bar over the molecules found.

    Returns:
        The decoded strings.
    """
    check_number("num_samples", num_samples, integer=True, minimum=1, maximum=MAX_GENERATED_SAMPLES)
    check_number("radius", radius, minimum=0)
    check_number("scale", scale, minimum=0)
    if seed is not None:
        check_number("seed", seed, integer=True, minimum=0, maximum=MAX_SEED)
    max_draws = 100 * num_samples if max_draws is None else max_draws
    if isinstance(max_draws, bool) or not isinstance(max_draws, int) or max_draws < num_samples:
        raise ValueError(f"max_draws must be an int >= num_samples={num_samples}, got {max_draws!r}")
    _require_cmim(model, "generate_smiles")
    if valid_only:
        require_rdkit("generate_smiles(valid_only=True)")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    kwargs = generation_length(model, max_new_tokens)
    device = next(model.parameters()).device
    encoded = None
    if around is not None:
        [seed_smiles] = check_texts([around], tokenizer=tokenizer, max_length=max_input_length(model, tokenizer),
                                    on_unknown="warn", on_too_long="raise", name="around")
        encoded = tokenizer([seed_smiles], return_tensors="pt").to(device)

    def draw(n: int) -> list[str]:
        texts = []
        for start in range(0, n, DECODE_BATCH_SIZE):  # memory bounded by the batch, not by n
            size = min(DECODE_BATCH_SIZE, n - start)
            if encoded is None:
                ids = model.sample_prior(size, scale=scale, generator=generator, **kwargs)
            else:
                ids = model.sample_around(encoded["input_ids"], encoded["attention_mask"], radius=radius,
                                          num_samples=size, generator=generator, **kwargs)
            texts += tokenizer.batch_decode(ids, skip_special_tokens=True)
        return texts

    if not valid_only:
        return draw(num_samples)
    found: dict[str, None] = {}  # canonical SMILES, in the order found
    excluded = {canonicalize(around)} if around is not None else set()
    drawn = 0
    with tqdm(total=num_samples, desc="valid molecules", disable=not progress) as bar:
        while len(found) < num_samples and drawn < max_draws:
            # Rounds of at least 64 latents: decoding is batched, and most latents may decode to invalid strings.
            n = min(max_draws - drawn, max(64, 4 * (num_samples - len(found))))
            for text in draw(n):
                molecule = canonicalize(text)
                if molecule is not None and molecule not in found and molecule not in excluded \
                        and len(found) < num_samples:
                    found[molecule] = None
                    bar.update(1)
            drawn += n
    if len(found) < num_samples:
        warnings.warn(f"found {len(found)} distinct valid molecules of the {num_samples} asked for in {drawn} "
                      f"decoded latents (max_draws={max_draws}); raise max_draws, or sample closer with a smaller "
                      "radius / scale", UserWarning, stacklevel=2)
    return list(found)


def interpolate_smiles(model, tokenizer, start: str, end: str, num_steps: int = 7, *,
                       max_new_tokens: int | None = None) -> list[str]:
    """Decode `num_steps` latents evenly spaced on the line from mu(start) to mu(end), both ends included
    (greedy decoding; the ends are the model's reconstructions of `start` and `end`).

    Returns:
        `num_steps` decoded strings, from start to end (not checked for chemical validity).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2 (the two ends included), got {num_steps!r}")
    _require_cmim(model, "interpolate_smiles")
    ends = check_texts([start, end], tokenizer=tokenizer, max_length=max_input_length(model, tokenizer),
                       on_unknown="warn", on_too_long="raise", name="between")
    device = next(model.parameters()).device
    encoded = tokenizer(ends, padding=True, return_tensors="pt").to(device)
    kwargs = generation_length(model, max_new_tokens)
    ids = model.interpolate(encoded["input_ids"], encoded["attention_mask"], num_steps=num_steps, **kwargs)
    return tokenizer.batch_decode(ids, skip_special_tokens=True)
