"""Feature-extraction pipeline saved with every cMIM model: one embedding vector per input string.

This file travels to the Hub with every saved model (remote code): it imports only torch, transformers and
the model file. `pipeline("feature-extraction", model=folder_or_repo, trust_remote_code=True)` resolves to it
through the `custom_pipelines` entry of the saved config. It also embeds with any plain transformers
encoder-decoder (BART, T5, ...): `pipeline("feature-extraction", model=folder,
pipeline_class=CMIMFeatureExtractionPipeline)` (see `seq2seq_embedding`).
"""

import warnings

import torch
from transformers import Pipeline

from .modeling_cmim import EMBEDDING_KINDS, seq2seq_embedding

ON_TOO_LONG = ("truncate", "warn", "raise")
ON_UNKNOWN = ("ignore", "warn", "raise")


class CMIMFeatureExtractionPipeline(Pipeline):
    """Embeds strings (SMILES by default) with a cMIM model, or with any transformers encoder-decoder.

    Call options (also accepted when the pipeline is built):
        kind: "informative" (default), "latent", "decoder" or "encoder" (see `seq2seq_embedding`).
        normalize: L2-normalise each vector (default False).
        on_too_long: inputs longer than the model's maximum length are "truncate"d silently, truncated with a
            "warn"ing (default), or "raise" a ValueError.
        on_unknown: inputs with pieces the tokenizer does not know are embedded anyway with a "warn"ing
            (default, as `embed_smiles` and `cmim-hf embed`), silently ("ignore"), or "raise" a ValueError
            naming the unknown pieces.
        truncation, tokenize_kwargs, return_tensors: as in transformers' `FeatureExtractionPipeline`:
            `truncation=True` truncates silently (`False` raises on too long inputs), `tokenize_kwargs` go to
            the tokenizer (e.g. `max_length`), `return_tensors=True` returns a tensor (E,) instead of a list.
        batch_size: the usual pipeline batching; embeddings do not depend on it.

    Returns one list of floats per input (a list of lists for a list of inputs).
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __call__(self, inputs, *args, **kwargs):
        """Embed one string (-> list of floats) or a list of strings (-> list of lists); an empty list gives []
        (the options are still checked)."""
        if isinstance(inputs, (list, tuple)) and not inputs:  # transformers' Pipeline would index inputs[0]
            self._sanitize_parameters(**kwargs)
            return []
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(self, kind=None, normalize=None, on_too_long=None, on_unknown=None, truncation=None,
                             tokenize_kwargs=None, return_tensors=None):
        preprocess, forward, postprocess = {}, {}, {}
        if kind is not None:
            if kind not in EMBEDDING_KINDS:
                raise ValueError(f"`kind` must be one of {EMBEDDING_KINDS}, got {kind!r}")
            forward["kind"] = kind
        if truncation is not None:
            if on_too_long is not None:
                raise ValueError("pass `truncation` or `on_too_long`, not both")
            on_too_long = "truncate" if truncation else "raise"
        if on_too_long is not None:
            if on_too_long not in ON_TOO_LONG:
                raise ValueError(f"`on_too_long` must be one of {ON_TOO_LONG}, got {on_too_long!r}")
            preprocess["on_too_long"] = on_too_long
        if on_unknown is not None:
            if on_unknown not in ON_UNKNOWN:
                raise ValueError(f"`on_unknown` must be one of {ON_UNKNOWN}, got {on_unknown!r}")
            preprocess["on_unknown"] = on_unknown
        if tokenize_kwargs is not None:
            if not isinstance(tokenize_kwargs, dict):
                raise TypeError(f"`tokenize_kwargs` must be a dict, got {type(tokenize_kwargs).__name__}")
            preprocess["tokenize_kwargs"] = tokenize_kwargs
        if normalize is not None:
            postprocess["normalize"] = bool(normalize)
        if return_tensors is not None:
            postprocess["return_tensors"] = bool(return_tensors)
        return preprocess, forward, postprocess

    def preprocess(self, text, on_too_long="warn", on_unknown="warn", tokenize_kwargs=None):
        if not isinstance(text, str):
            raise TypeError(f"CMIMFeatureExtractionPipeline expects strings, got {type(text).__name__}: {text!r}")
        if not text.strip():
            raise ValueError(f"cannot embed an empty string: {text!r}")
        tokenize_kwargs = dict(tokenize_kwargs or {})
        tokenize_kwargs.pop("truncation", None)  # decided by on_too_long / truncation
        # T5-style models have no position limit; their tokenizer's is the one that counts
        max_length = tokenize_kwargs.pop("max_length", None) or \
            getattr(self.model.config, "max_position_embeddings", None) or self.tokenizer.model_max_length
        encoded = self.tokenizer(text, return_tensors="pt", **tokenize_kwargs)
        length = encoded["input_ids"].shape[1]
        if length > max_length:
            message = f"input {text!r} has {length} tokens, more than the maximum of {max_length}"
            if on_too_long == "raise":
                raise ValueError(message)
            if on_too_long == "warn":
                warnings.warn(message + "; it was truncated", stacklevel=2)
            encoded = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length,
                                     **tokenize_kwargs)
        if on_unknown != "ignore":
            self._check_unknown(text, encoded, on_unknown)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _check_unknown(self, text, encoded, on_unknown):
        unk_id = self.tokenizer.unk_token_id
        ids = encoded["input_ids"][0].tolist()
        if unk_id is None or unk_id not in ids:
            return
        offsets = encoded.encodings[0].offsets if encoded.encodings else None
        pieces = [text[offsets[i][0]:offsets[i][1]] if offsets else "?" for i, t in enumerate(ids) if t == unk_id]
        message = f"input {text!r} contains pieces unknown to the tokenizer: {pieces}"
        if on_unknown == "raise":
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)

    def _forward(self, model_inputs, kind="informative"):
        return {"embedding": seq2seq_embedding(self.model, model_inputs["input_ids"], model_inputs["attention_mask"],
                                               kind=kind)}

    def postprocess(self, model_outputs, normalize=False, return_tensors=False):
        embedding = model_outputs["embedding"][0].float()  # (E,)
        if normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=-1)
        return embedding if return_tensors else embedding.tolist()
