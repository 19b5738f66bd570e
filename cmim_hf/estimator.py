"""`CMIMEmbedder`: the scikit-learn transformer (SMILES in, embeddings out) over either backend, PyTorch
(`cmim_hf.embeddings`) or ONNX Runtime (`cmim_hf.onnx_backend`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .embeddings import DEFAULT_MODEL, embed_smiles, load_pretrained
from .modeling import check_embedding_kind, embedding_size
from .onnx_backend import check_backend

__all__ = ["CMIMEmbedder", "as_smiles_list"]


def as_smiles_list(X, name: str = "X") -> list:
    """A list of items from a list, tuple, 1-D array, pandas Series, or a single-column 2-D array/DataFrame."""
    if isinstance(X, str):
        raise TypeError(f"{name} must be a sequence of SMILES strings, got a single str {X[:40]!r}; wrap it in a list")
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(f"{name} must have exactly one column of SMILES, got {X.shape[1]} columns")
        return list(X.iloc[:, 0])
    if isinstance(X, np.ndarray) or hasattr(X, "__array__") and not isinstance(X, Sequence):
        array = np.asarray(X, dtype=object)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one SMILES per sample) or one column, got shape {array.shape}")
        return array.tolist()
    if isinstance(X, Iterable):
        return list(X)
    raise TypeError(f"{name} must be a sequence of SMILES strings, got {type(X).__name__}")


class CMIMEmbedder(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: SMILES in, cMIM embeddings out.

        make_pipeline(CMIMEmbedder("cmim-moses-tiny"), StandardScaler(), Ridge())

    The parameters are only stored by `__init__` (so `clone`, `get_params`, `set_params` and grid searches
    work); `fit` loads the model into `model_` / `tokenizer_` (nothing is learned: the embedding is
    pretrained), `transform` embeds with `embed_smiles`.

    Args:
        model: a checkpoint name (`cmim_hf.list_pretrained()`), a saved folder, or a Hub repo id: a cMIM model or
            any transformers encoder-decoder (BART, T5, ...).
        kind: "informative", "latent" (cMIM only), "decoder" or "encoder".
        batch_size: molecules per forward pass.
        device: default CUDA when available, else CPU.
        dtype: "float32" (default), "bfloat16" or "float16"; see `load_pretrained`. The output is float32.
        on_unknown, on_too_long, on_invalid: see `embed_smiles`.
        backend: "torch" (default), or "onnx": `model` is then a folder written by `cmim-hf export --format onnx`
            (`cmim_hf.onnx_backend.ONNXEmbedder`, run by ONNX Runtime on the CPU; device and dtype stay None).
    """

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, kind: str = "informative", batch_size: int = 64,
                 device: str | None = None, dtype: str | None = None, on_unknown: str = "warn",
                 on_too_long: str = "warn", on_invalid: str = "warn", backend: str = "torch"):
        self.model = model
        self.kind = kind
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.on_unknown = on_unknown
        self.on_too_long = on_too_long
        self.on_invalid = on_invalid
        self.backend = backend

    def fit(self, X=None, y=None):
        """Load the model (once per fitted estimator). `X` and `y` are accepted for the API and ignored."""
        check_embedding_kind(self.kind)
        check_backend(self.backend, self.device, self.dtype)
        if self.backend == "onnx":
            from .onnx_backend import ONNXEmbedder

            self.model_ = ONNXEmbedder(self.model)
            self.tokenizer_ = self.model_.tokenizer
            self.n_features_out_ = self.model_.width(self.kind)
            return self
        self.model_, self.tokenizer_ = load_pretrained(self.model, device=self.device, dtype=self.dtype)
        check_embedding_kind(self.kind, self.model_.config)
        self.n_features_out_ = embedding_size(self.model_.config, self.kind)
        return self

    def transform(self, X) -> np.ndarray:
        """Embed the SMILES in `X` (list, 1-D array, Series, or one column); returns (n_samples, E) float32."""
        check_is_fitted(self, "model_")
        if self.backend == "onnx":
            return self.model_.embed(as_smiles_list(X), kind=self.kind, batch_size=self.batch_size,
                                     on_unknown=self.on_unknown, on_too_long=self.on_too_long,
                                     on_invalid=self.on_invalid)
        return embed_smiles(self.model_, self.tokenizer_, as_smiles_list(X), kind=self.kind,
                            batch_size=self.batch_size, on_unknown=self.on_unknown, on_too_long=self.on_too_long,
                            on_invalid=self.on_invalid)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """`cmim_<kind>_0`, `cmim_<kind>_1`, ... one per embedding dimension."""
        check_is_fitted(self, "n_features_out_")
        return np.asarray([f"cmim_{self.kind}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
