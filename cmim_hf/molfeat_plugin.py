"""molfeat plugin: cMIM embeddings as a molfeat featurizer, `CMIMMolTransformer`.

molfeat finds it through this package's entry point (pyproject.toml, group `molfeat.trans.pretrained`, name
`cmim.CMIMMolTransformer`):

    from molfeat.plugins import load_registered_plugins
    load_registered_plugins(plugins=["cmim"])
    from molfeat.trans.pretrained import CMIMMolTransformer
    featurizer = CMIMMolTransformer(model="cmim-moses-tiny", kind="informative")
    X = featurizer(["CCO", "c1ccccc1O"])                  # (2, 384) float32

molfeat's stock `PretrainedHFTransformer` runs only `model.encoder(...)` of an encoder-decoder, so through it a
cMIM model gives encoder states, never the informative embedding; this class gives every kind `embed_smiles`
offers, of any shipped checkpoint, model folder or Hub repo id (or an ONNX export, backend="onnx").

As every molfeat pretrained transformer, it converts each input to a molecule and back to (RDKit-canonical)
SMILES before embedding (`_convert`), so its rows equal `embed_smiles` of the canonical SMILES. This module
imports molfeat at the top: only molfeat's plugin loader (or a user) imports it, never `cmim_hf` itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from molfeat.store.modelcard import ModelInfo
from molfeat.trans.pretrained.base import PretrainedMolTransformer

__all__ = ["CMIMMolTransformer", "model_info"]


def _card_description(text: str) -> str | None:
    """The first paragraph under a card's title (the model card's own summary), or None."""
    match = re.search(r"^# .+?\n+(.+?)(?:\n\s*\n|\n#|$)", text, flags=re.S | re.M)
    return match.group(1).strip() if match else None


def model_info(folder: str | os.PathLike, name: str) -> ModelInfo:
    """molfeat's ModelInfo card of a model (or ONNX export) folder, filled from the folder's own card:
    README.md (its YAML header: license, tags; its first paragraph: the description) and card_data.json. The
    checksum is the weights' `model_fingerprint` (an export's: the weights it was exported from)."""
    import json

    from . import __version__
    from .embedding_store import model_fingerprint
    from .onnx_export import ONNX_CONFIG_NAME, read_onnx_config

    folder = Path(folder)
    settings = json.loads((folder / "card_data.json").read_text()) if (folder / "card_data.json").is_file() else {}
    header, description = {}, None
    if (folder / "README.md").is_file():  # read once: its YAML header and its text
        from huggingface_hub import ModelCard

        card = ModelCard.load(folder / "README.md")
        header, description = card.data.to_dict(), _card_description(card.text)
    if (folder / ONNX_CONFIG_NAME).is_file():
        fingerprint = read_onnx_config(folder)["source_model"].get("fingerprint")
    else:
        fingerprint = model_fingerprint(folder)
    model_id = settings.get("model_id") or name
    return ModelInfo(
        name=f"cmim.{model_id}", inputs="smiles", type="pretrained", group="cmim",
        submitter=f"cmim-hf {__version__}",
        description=settings.get("description") or description or
        f"cMIM model {model_id}",
        representation="line-notation", tags=list(header.get("tags") or settings.get("tags") or []),
        authors=None, license=header.get("license") or settings.get("license"),
        reference=f"https://huggingface.co/{model_id}" if "/" in model_id else None,
        sha256sum=fingerprint,
        model_usage=f'from molfeat.trans.pretrained import CMIMMolTransformer\n'
                    f'featurizer = CMIMMolTransformer(model="{name}", kind="informative")\n'
                    f'features = featurizer(smiles)')


class CMIMMolTransformer(PretrainedMolTransformer):
    """cMIM embeddings for molfeat: molecules (SMILES or RDKit molecules) in, one float32 vector each out.

    Args:
        model: a shipped checkpoint name, a model folder or a Hub repo id (with backend="onnx": an export folder).
        kind: "informative" (default), "latent", "decoder" or "encoder" (see `cmim_hf.embed_smiles`).
        batch_size: molecules per forward pass (the result does not depend on it).
        backend: "torch" (default) or "onnx" (ONNX Runtime, see docs/onnx.md).
        device: torch device (default CUDA when available, else CPU); torch backend only.
        dtype: the output dtype, as for every molfeat transformer (default float32).
        **params: molfeat's (n_jobs, verbose, precompute_cache, ...).

    Parameters are stored by `__init__` (molfeat's `get_params`/`set_params`, so scikit-learn's `clone` and grid
    searches work); the model loads on first use and is left out of pickles (reloaded after unpickling).
    """

    def __init__(self, model: str = "cmim-moses-tiny", kind: str = "informative", batch_size: int = 64,
                 backend: str = "torch", device: str | None = None, dtype=np.float32, **params):
        from .modeling import check_embedding_kind
        from .onnx_backend import check_backend

        check_embedding_kind(kind)
        check_backend(backend)
        super().__init__(dtype=dtype, model=model, kind=kind, batch_size=batch_size, backend=backend, device=device,
                         **params)
        self._embed_fn = None

    def _preload(self) -> None:
        if self._embed_fn is None:
            from .onnx_backend import load_embedder

            self._embed_fn = load_embedder(self.model, backend=self.backend, device=self.device)
        self.preload = True

    def _update_params(self) -> None:  # set_params: a changed model or backend reloads on next use
        super()._update_params()
        self._embed_fn = None

    def _embed(self, smiles: list[str], **kwargs) -> list[np.ndarray]:
        self._preload()
        vectors = self._embed_fn(list(smiles), kind=self.kind, batch_size=self.batch_size, on_invalid="ignore")
        return list(vectors)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()  # the model is reloaded from `model` after unpickling
        state["_embed_fn"] = None
        state["precompute_cache"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._embed_fn = None

    @property
    def card(self) -> ModelInfo:
        """molfeat's ModelInfo card of the model, filled from the model folder's own card (`model_info`)."""
        from .hub import resolve_model

        folder = Path(self.model) if self.backend == "onnx" else resolve_model(self.model)
        return model_info(folder, str(self.model))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model!r}, kind={self.kind!r}, backend={self.backend!r}, "
                f"batch_size={self.batch_size!r})")
