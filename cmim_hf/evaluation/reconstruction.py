"""Reconstruction, measured through the model's own `forward` and `generate` (torch only, no RDKit).

The one definition of each figure, used by the training loop's evaluation, `cmim-hf evaluate` and the cards:
- token accuracy: teacher-forced next-token accuracy decoding from z = mu (`forward(..., sample_latent=False)`),
  pooled over all real tokens (`count_correct_tokens`): sum the counts of every batch, then divide once.
- exact reconstruction: the share of rows whose greedy decoding from z = mu (`generate`), as text without
  special tokens, equals the input text.
A plain encoder-decoder (BART, T5, ...) is measured the same way, its decoder reading the encoder's states.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..modeling import IGNORE_INDEX, count_correct_tokens, labels_from_input_ids
from ..modeling.modeling_cmim import decoder_start_token
from .metrics import exact_match_rate

__all__ = ["count_reconstructed_tokens", "fork_rng", "greedy_reconstructions", "reconstruction_metrics"]

# Longest greedy output beyond the input's padded width: enough for every exact reconstruction (which has the
# input's length), short enough that a runaway decoding stops early.
_EXTRA_TOKENS = 8


def fork_rng(device: torch.device):
    """`torch.random.fork_rng` for the CPU and, on CUDA, `device`: random draws inside leave the caller's
    generators as they were."""
    if device.type == "cuda":
        return torch.random.fork_rng(devices=[device.index or 0], device_type="cuda")
    return torch.random.fork_rng(devices=[])


@torch.no_grad()
def count_reconstructed_tokens(model, input_ids: torch.Tensor,
                               attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Correctly predicted and real tokens of teacher-forced decoding from z = mu. (B, T), (B, T) -> (), ().

    The targets are the model's reconstruction labels (`labels_from_input_ids`); their ratio is token
    accuracy (see the module notes).
    """
    return count_correct_tokens(*_teacher_forced(model, input_ids, attention_mask))


def _teacher_forced(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, T', V) of teacher-forced decoding from z = mu and the labels (B, T') they predict."""
    labels = labels_from_input_ids(input_ids, attention_mask, decoder_start_token(model.config))
    deterministic = {"sample_latent": False} if model.config.model_type == "cmim" else {}  # plain ones have no z
    logits = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **deterministic).logits
    return logits, labels


def _add_by_position(counts: tuple[np.ndarray, np.ndarray], input_ids: torch.Tensor, logits: torch.Tensor,
                     labels: torch.Tensor) -> None:
    """Add a batch's teacher-forced hits and real targets to `counts` (two int arrays indexed by the target's
    1-based position, <bos> at 1), the per-position form of `count_correct_tokens`."""
    real = labels != IGNORE_INDEX
    first = input_ids.shape[1] - labels.shape[1] + 1  # position of labels[:, 0] (2 when <bos> was dropped)
    counts[0][first:first + labels.shape[1]] += ((logits.argmax(-1) == labels) & real).sum(0).cpu().numpy()
    counts[1][first:first + labels.shape[1]] += real.sum(0).cpu().numpy()


@torch.no_grad()
def greedy_reconstructions(model, tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                           synced_gpus: bool = False) -> list[str]:
    """Greedy decoding of each row from z = mu, as text without special tokens. (B, T) -> B strings.

    synced_gpus: keep every process decoding until all are done (needed under FSDP, where each forward is a
        collective).
    """
    positions = getattr(model.config, "max_position_embeddings", None)  # T5-style models have no limit
    max_new_tokens = input_ids.shape[1] + _EXTRA_TOKENS if positions is None else \
        min(positions - 1, input_ids.shape[1] + _EXTRA_TOKENS)
    generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False, num_beams=1,
                               max_new_tokens=max_new_tokens, synced_gpus=synced_gpus)
    return tokenizer.batch_decode(generated, skip_special_tokens=True)


def reconstruction_metrics(model, tokenizer, smiles: Sequence[str], *, batch_size: int = 64,
                           progress: bool = False, desc: str = "reconstruct", num_examples: int = 16,
                           position_counts: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Token accuracy and exact greedy reconstruction of `smiles` (both from z = mu, see `reconstruction.py`).

    Exact match is reported on the raw strings and after RDKit canonicalisation of both sides; `examples` holds
    the first `num_examples` [input, reconstruction] pairs (the model cards show them). `position_counts`: two int
    arrays of length max_input_length + 1 to which the same forward passes add their hits and real targets by
    target position (the length evaluation's table).
    """
    from ..embeddings import max_input_length

    max_length = max_input_length(model, tokenizer)
    correct = total = 0
    decoded: list[str] = []
    for start in tqdm(range(0, len(smiles), batch_size), desc=desc, disable=not progress):
        batch = tokenizer(list(smiles[start:start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        ids, mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)
        logits, labels = _teacher_forced(model, ids, mask)
        hits, real = count_correct_tokens(logits, labels)
        correct, total = correct + int(hits), total + int(real)
        if position_counts is not None:
            _add_by_position(position_counts, ids, logits, labels)
        decoded.extend(greedy_reconstructions(model, tokenizer, ids, mask))
    return {
        "n": len(smiles),
        "token_accuracy": correct / max(total, 1),
        "exact": exact_match_rate(list(smiles), decoded),
        "exact_canonical": exact_match_rate(list(smiles), decoded, canonical=True),
        "examples": [[a, b] for a, b in zip(smiles[:num_examples], decoded)],
    }
