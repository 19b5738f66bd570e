"""Refreshing a release: re-save model folders with this package's code and card, keeping what they learned.

A saved folder carries copies of `modeling/` (remote code), a config written by it, and a card generated from
its files (`cmim_hf.cards`). After a change to `modeling/`, to the card template or to a folder's evaluation,
`cmim-hf refresh FOLDER...` (`cmim_hf/commands/refresh.py`; or `--shipped` for the checkpoints inside the package) re-saves each folder:
code copies, config and generation config from the package, weights in the dtype they were stored in,
tokenizer and every other file (recipe, evaluation, plots, logs) kept, and the card (README.md, with its
settings in card_data.json) regenerated. For the shipped checkpoints the card is also copied to
`model_cards/<name>.md`. It refuses to write a folder whose embeddings would change: the same molecules are
embedded before and after, and the two must agree exactly.

Run it with the Hub not switched off (HF_HUB_OFFLINE unset; nothing is downloaded): transformers records the
offline setting in the re-saved `tokenizer_config.json` (`local_files_only`), which would change that file.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["EmbeddingsChangedError", "refresh_model_folder", "shipped_card_copy", "shipped_location"]

# Files that `save_pretrained` / `tokenizer.save_pretrained` write; everything else in a folder is carried over.
_REWRITTEN = {"config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
              "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"}
# Probe molecules: short and long, rings, charges, stereo and a piece a MOSES vocabulary lacks.
PROBE_SMILES = ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "Cn1c(=O)c2c(ncn2C)n(C)c1=O",
                "C[C@H](N)C(=O)O", "O=[N+]([O-])c1ccc(Cl)cc1", "CCCCCCCCCCCCCCCCCCCC(=O)O")


class EmbeddingsChangedError(RuntimeError):
    """A re-saved folder would embed differently from the folder it replaces."""


def _stored_dtype(folder: Path):
    """The floating-point torch dtype the folder's weights are stored in (float16 for cmim-moses-small)."""
    import torch

    from .cards import stored_weights

    return getattr(torch, stored_weights([folder / "model.safetensors"])[1])


def _probe_embeddings(folder: Path):
    import numpy as np

    from .embeddings import embed_smiles, load_pretrained
    from .modeling import EMBEDDING_KINDS

    model, tokenizer = load_pretrained(folder, device="cpu")
    return {kind: embed_smiles(model, tokenizer, list(PROBE_SMILES), kind=kind, on_invalid="ignore",
                               on_unknown="ignore", on_too_long="truncate")
            for kind in EMBEDDING_KINDS}, np


def shipped_card_copy(name: str) -> Path:
    """Where the card of the shipped checkpoint `name` is kept next to the template: `model_cards/<name>.md`."""
    from .cards import model_card_template_path

    return model_card_template_path().parent / f"{name}.md"


def shipped_location(folder: Path) -> str:
    """A shipped checkpoint's path from the root of a cmim-hf clone (where its card's usage code runs)."""
    import cmim_hf

    return folder.resolve().relative_to(Path(cmim_hf.__file__).resolve().parent.parent).as_posix()


def refresh_model_folder(folder: str | os.PathLike, *, allow_embedding_change: bool = False,
                         location: str | None = None) -> dict[str, float]:
    """Re-save `folder` in place with this package's code and a regenerated card (see the module notes). Returns
    the largest absolute change of each embedding kind on the probe molecules (0.0 when nothing changed).

    location: where the card's usage code finds the model when its card_data.json does not say (default: the
        path as given).

    Raises:
        EmbeddingsChangedError: an embedding would change and `allow_embedding_change` is False; the folder is
            left as it was.
    """
    from transformers.utils import logging as transformers_logging

    from .cards import card_data_from_folder, write_model_card
    from .embeddings import load_pretrained
    from .saving import replace_folder, save_model_folder

    transformers_logging.disable_progress_bar()  # four loads per folder: their bars are noise
    folder = Path(folder)
    before, np = _probe_embeddings(folder)
    model, tokenizer = load_pretrained(folder, device="cpu")
    attachments = {path.relative_to(folder).as_posix(): path.read_bytes()
                   for path in sorted(folder.rglob("*")) if path.is_file()
                   and path.name not in _REWRITTEN and path.suffix != ".py" and "__pycache__" not in path.parts}
    staging = folder.with_name(f".{folder.name}.refresh")
    save_model_folder(model, tokenizer, staging, extra_files=attachments, storage_dtype=_stored_dtype(folder))
    try:
        resolved = folder.resolve()
        card = card_data_from_folder(staging, location=location or str(folder),
                                     name=resolved.parent.name if resolved.name == "final" else resolved.name)
        write_model_card(staging, card)
        after, _ = _probe_embeddings(staging)
        changes = {kind: float(np.abs(after[kind] - before[kind]).max()) for kind in before}
        if any(changes.values()) and not allow_embedding_change:
            raise EmbeddingsChangedError(
                f"re-saving {folder} would change its embeddings (largest change per kind: {changes}); the folder "
                "is unchanged. Pass --allow_embedding_change if the change is intended, and say so in the release "
                "notes.")
        replace_folder(staging, folder)
    finally:
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    return changes
