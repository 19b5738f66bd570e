"""The training loop's evaluation: validation loss and its parts (latent sampled, the true objective), token
accuracy and exact greedy reconstruction (from z = mu, `cmim_hf.evaluation.reconstruction`, the same
definitions `cmim-hf evaluate` reports).

It runs with its own fixed RNG stream (forked), so it neither perturbs training nor varies between
evaluations; the validation loss uses latent-loss weight 1. Every figure is an exact sum over the evaluated
rows (or tokens) of every process, divided once.
"""

from __future__ import annotations

import contextlib
import logging

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.utils.data import DataLoader

from cmim_hf.evaluation.reconstruction import count_reconstructed_tokens, fork_rng, greedy_reconstructions

from .collator import CMIMDataCollator, LengthGroupedBatchSampler
from .model import training_objective

__all__ = ["evaluate", "loss_parts", "reconstruction_examples"]

logger = logging.getLogger("cmim_hf.training")


def loss_parts(objective: str) -> tuple[str, ...]:
    """Output fields logged for an objective (the others are None for it). A plain encoder-decoder (objective
    `plain`) reports its loss; its token accuracy is measured in evaluation."""
    if objective == "plain":
        return ("loss",)
    parts = ["loss", "reconstruction_loss", "token_accuracy"]
    if objective in ("mim", "cmim", "infonce"):
        parts += ["latent_log_q", "latent_log_prior"]
    if objective in ("cmim", "infonce"):
        parts.append("contrastive_log_prob")
    if objective == "vae":
        parts.append("kl")
    return tuple(parts)


def _local_shard(dataset: datasets.Dataset, n: int, accelerator: Accelerator) -> datasets.Dataset:
    """The first `n` rows (rounded down to a multiple of the process count, so every process runs the same
    number of batches), this process's contiguous share."""
    n = min(n, len(dataset))
    n -= n % accelerator.num_processes
    rows = dataset.select(range(n))
    return rows.shard(num_shards=accelerator.num_processes, index=accelerator.process_index, contiguous=True)


def _loss_and_tokens(model, shard: datasets.Dataset, collator: CMIMDataCollator, accelerator: Accelerator,
                     parts: tuple[str, ...], batch_size: int) -> torch.Tensor:
    """Sums over this process's rows: each loss part times the rows, the rows, then the correct and the real
    tokens of teacher-forced decoding from z = mu. (len(parts) + 3,) float64."""
    device = accelerator.device
    sums = torch.zeros(len(parts) + 3, device=device, dtype=torch.float64)
    sampler = LengthGroupedBatchSampler(shard["length"], batch_size, shuffle=False)
    for batch in DataLoader(shard, batch_sampler=sampler, collate_fn=collator):
        batch = {k: v.to(device) for k, v in batch.items()}
        with accelerator.autocast():
            outputs = model(**batch)  # the latent sampled: the objective
            correct, real = count_reconstructed_tokens(model, batch["input_ids"], batch["attention_mask"])
        rows = batch["input_ids"].shape[0]
        sums[:len(parts)] += torch.stack([getattr(outputs, p).detach().double() for p in parts]) * rows
        sums[len(parts):] += torch.stack([torch.as_tensor(rows, device=device), correct, real]).double()
    return sums


def _reconstruction_pairs(model, rows: datasets.Dataset, collator: CMIMDataCollator, tokenizer, batch_size: int, *,
                          synced: bool = False, autocast=contextlib.nullcontext,
                          device: torch.device | None = None) -> list[tuple[str, str]]:
    """(input text, greedy reconstruction from z = mu) of each row, in order."""
    device = device or next(model.parameters()).device
    plain = CMIMDataCollator(collator.pad_token_id, collator.decoder_start_token_id, collator.pad_to_multiple_of,
                             collator.max_length, with_labels=False)
    pairs = []
    for batch in DataLoader(rows.select_columns(["input_ids"]), batch_size=batch_size, collate_fn=plain):
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        with autocast():
            predicted = greedy_reconstructions(model, tokenizer, ids, mask, synced_gpus=synced)
        pairs.extend(zip(tokenizer.batch_decode(ids, skip_special_tokens=True), predicted))
    return pairs


def _exact_reconstructions(model, rows: datasets.Dataset, collator: CMIMDataCollator, accelerator: Accelerator,
                           tokenizer, batch_size: int) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """(exact, rows) on this process and its (target, prediction) pairs, target = the row's text."""
    examples = _reconstruction_pairs(model, rows, collator, tokenizer, batch_size, autocast=accelerator.autocast,
                                     synced=accelerator.distributed_type == DistributedType.FSDP,
                                     device=accelerator.device)
    exact = sum(target == prediction for target, prediction in examples)
    return torch.tensor([exact, len(examples)], device=accelerator.device, dtype=torch.float64), examples


@torch.no_grad()
def reconstruction_examples(model, eval_dataset: datasets.Dataset | None, collator: CMIMDataCollator, tokenizer,
                            num_examples: int = 8) -> list[list[str]]:
    """[input, greedy reconstruction from z = mu] of the first validation rows, for the model card. Call it on one
    process with the plain (unwrapped) model: it runs no collective."""
    if eval_dataset is None or num_examples <= 0 or len(eval_dataset) == 0:
        return []
    was_training = model.training
    model.eval()
    with fork_rng(next(model.parameters()).device):
        rows = eval_dataset.select(range(min(num_examples, len(eval_dataset))))
        pairs = _reconstruction_pairs(model, rows, collator, tokenizer, batch_size=num_examples)
    model.train(was_training)
    return [list(pair) for pair in pairs]


@torch.no_grad()
def evaluate(model, eval_dataset: datasets.Dataset, collator: CMIMDataCollator, accelerator: Accelerator, *,
             tokenizer, batch_size: int, num_reconstruction_samples: int, seed: int = 0,
             max_samples: int | None = None) -> dict[str, float]:
    """`eval/<part>` for each loss part of the objective (`eval/token_accuracy` pooled over the real tokens,
    from z = mu), `eval/num_samples`, and with `num_reconstruction_samples` > 0 the exact greedy reconstruction
    of the first rows, `eval/exact_reconstruction` and `eval/num_reconstruction_samples`."""
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)  # eval mode: no recompiles
    objective = training_objective(unwrapped.config)
    losses = tuple(p for p in loss_parts(objective) if p != "token_accuracy")
    was_training = unwrapped.training
    unwrapped.eval()
    recon = torch.zeros(2, device=accelerator.device, dtype=torch.float64)
    examples = []
    with fork_rng(accelerator.device):
        torch.manual_seed(seed)  # the same latent noise at every evaluation
        shard = _local_shard(eval_dataset, max_samples or len(eval_dataset), accelerator)
        sums = _loss_and_tokens(unwrapped, shard, collator, accelerator, losses, batch_size)
        if num_reconstruction_samples > 0:
            rows = _local_shard(eval_dataset, num_reconstruction_samples, accelerator)
            recon, examples = _exact_reconstructions(unwrapped, rows, collator, accelerator, tokenizer, batch_size)
    unwrapped.train(was_training)
    totals = accelerator.reduce(torch.cat([sums, recon]), "sum").tolist()
    values = dict(zip(losses, totals))
    n, correct, real, exact, recon_rows = totals[len(losses):]
    metrics = {f"eval/{p}": correct / max(real, 1.0) if p == "token_accuracy" else values[p] / max(n, 1.0)
               for p in (*losses, "token_accuracy")}
    metrics["eval/num_samples"] = n
    if num_reconstruction_samples > 0:
        metrics["eval/exact_reconstruction"] = exact / max(recon_rows, 1.0)
        metrics["eval/num_reconstruction_samples"] = recon_rows
        if accelerator.is_main_process:
            for target, predicted in [(t, p) for t, p in examples if t != p][:3]:
                logger.info(f"  reconstruction example: {target} -> {predicted}")
    return metrics
