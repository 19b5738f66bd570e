"""Batching: dynamic padding to a multiple of 8 and length-grouped, reproducible batch order.

The collator turns rows of token ids (as `tokenize_dataset` writes them, unpadded) into the model's
training inputs: `input_ids`, `attention_mask`, `labels` (the input itself, see `labels_from_input_ids`)
and, for the InfoNCE objective, `input_ids_view2` / `attention_mask_view2`.

The batch sampler's order is a pure function of `(seed, epoch)`, so a run resumed mid-epoch sees exactly
the batches the uninterrupted run would have seen (`accelerate.skip_first_batches` skips the done ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field

import torch
from torch.utils.data import Sampler

from cmim_hf.modeling import labels_from_input_ids
from cmim_hf.tokenization import pad_sequences

__all__ = ["CMIMDataCollator", "LengthGroupedBatchSampler"]


@dataclass
class CMIMDataCollator:
    """Collate tokenized rows into a training batch for `CMIMForConditionalGeneration(**batch)`.

    Args:
        pad_token_id: the tokenizer's padding id.
        decoder_start_token_id: the model's decoder start id (the SMILES tokenizer's <bos>); a leading one is
            dropped from the labels, since the decoder is fed it.
        pad_to_multiple_of: pad each batch to a multiple of this many tokens (8 suits tensor cores).
        max_length: the model's max_position_embeddings; padding never goes beyond it.
        with_labels: add `labels` (training and validation loss).

    Rows are mappings with `input_ids` (and optionally `input_ids_view2`); other keys are ignored.
    """

    pad_token_id: int
    decoder_start_token_id: int
    pad_to_multiple_of: int | None = 8
    max_length: int | None = None
    with_labels: bool = True

    def __call__(self, rows: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_sequences([row["input_ids"] for row in rows], self.pad_token_id,
                                                  self.pad_to_multiple_of, self.max_length)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.with_labels:
            batch["labels"] = labels_from_input_ids(input_ids, attention_mask, self.decoder_start_token_id)
        if "input_ids_view2" in rows[0]:
            view2, mask2 = pad_sequences([row["input_ids_view2"] for row in rows], self.pad_token_id,
                                         self.pad_to_multiple_of, self.max_length)
            batch["input_ids_view2"], batch["attention_mask_view2"] = view2, mask2
        return batch


@dataclass(eq=False)
class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of rows of similar length, in an order fixed by `(seed, epoch)`.

    With `shuffle`: the rows are permuted, cut into mega-batches of `megabatch_size` batches, each mega-batch
    is sorted by length and cut into batches, and the batches of a mega-batch are shuffled (so lengths do not
    sweep long-to-short); the batch holding the longest row goes first, so a run that would run out of memory
    does so at once. Without `shuffle`: rows sorted by length, longest first (evaluation).

    Call `set_epoch(epoch)` before each epoch (Accelerate's data loader does it too).
    """

    lengths: Sequence[int]  # tokens per row; stored as a tensor
    batch_size: int
    _: KW_ONLY
    shuffle: bool = True
    seed: int = 0
    megabatch_size: int = 50
    group_by_length: bool = True
    drop_last: bool = False
    epoch: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.lengths = torch.as_tensor(list(self.lengths), dtype=torch.long)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = torch.argsort(self.lengths, descending=True, stable=True) if self.group_by_length \
                else torch.arange(n)
            batches = list(order.split(self.batch_size))
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=generator)
            if not self.group_by_length:
                batches = list(order.split(self.batch_size))
            else:
                batches = []
                for mega in order.split(self.batch_size * self.megabatch_size):
                    mega = mega[torch.argsort(self.lengths[mega], descending=True, stable=True)]
                    chunks = list(mega.split(self.batch_size))
                    full = [c for c in chunks if len(c) == self.batch_size]
                    partial = [c for c in chunks if len(c) < self.batch_size]  # only in the last mega-batch
                    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
                    batches.extend(shuffled + partial)
                if batches:  # the batch with the longest row first (fail fast on memory)
                    longest = max(range(len(batches)), key=lambda i: int(self.lengths[batches[i]].max()))
                    batches[0], batches[longest] = batches[longest], batches[0]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return [b.tolist() for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()
