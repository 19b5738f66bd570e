"""Embedding with ONNX Runtime: an export folder (`cmim-hf export ... --format onnx`) in place of the torch model.

    embedder = ONNXEmbedder("tiny-onnx")                 # the folder cmim-hf export wrote
    X = embedder.embed(["CCO", "c1ccccc1O"])             # (2, E) float32, as embed_smiles gives
    CMIMEmbedder(model="tiny-onnx", backend="onnx")      # scikit-learn, the same numbers
    cmim-hf embed --backend onnx --model tiny-onnx CCO   # the command

The inputs go through the same checks and tokenization as `embed_smiles` (`cmim_hf.embeddings.prepare_ids`: the
same warnings and errors naming `smiles[i]`, the same truncation) and the same length-sorted batching
(`embed_ids`); only the forward pass runs in ONNX Runtime. Deployments without torch use the snippet of
docs/onnx.md instead (onnxruntime, tokenizers and numpy).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .onnx_export import ONNX_CONFIG_NAME, read_onnx_config, require_onnx

BACKENDS = ("torch", "onnx")  # CMIMEmbedder(backend=...), embed --backend; "onnx" reads a cmim-hf export folder

__all__ = ["ONNXEmbedder", "backend_fingerprint", "load_embedder"]


class ONNXEmbedder:
    """An ONNX export folder, loaded for embedding.

    Args:
        folder: the export folder (model.onnx, tokenizer files, cmim_onnx.json).
        threads: ONNX Runtime's intra-op threads (default: its own choice, one per physical core).
        expected_fingerprint: the `model_fingerprint` of the model the caller means (e.g. the one an embedded
            library or an index was made with); a folder exported from other weights is refused.

    Attributes:
        folder, config (cmim_onnx.json), kinds, max_length, fingerprint (of the source model's weights),
        tokenizer (transformers, from the folder), session (onnxruntime.InferenceSession).

    Raises:
        FileNotFoundError / ValueError: not an export folder, an incomplete one, a model.onnx that is not the
            file the export wrote, a graph whose inputs or outputs differ from cmim_onnx.json, or another model's
            export (`expected_fingerprint`).
    """

    def __init__(self, folder: str | os.PathLike, *, threads: int | None = None,
                 expected_fingerprint: str | None = None):
        self.folder = Path(folder)
        self.threads = threads
        self.config = read_onnx_config(self.folder)
        self.fingerprint = self.config["source_model"].get("fingerprint")
        if expected_fingerprint is not None and expected_fingerprint != self.fingerprint:
            raise ValueError(f"ONNX folder {self.folder} was exported from another model (weights fingerprint "
                             f"{str(self.fingerprint)[:12]}..., expected {expected_fingerprint[:12]}...)")
        self.kinds = tuple(self.config["outputs"])
        self.max_length = int(self.config["max_length"])
        self._open()

    def _open(self) -> None:
        _, onnxruntime = require_onnx("the onnx backend")
        from transformers import AutoTokenizer

        options = onnxruntime.SessionOptions()
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(self.folder / self.config["onnx_file"]), options,
                                                    providers=["CPUExecutionProvider"])
        graph_inputs = [node.name for node in self.session.get_inputs()]
        graph_outputs = {node.name: node.shape[-1] for node in self.session.get_outputs()}
        expected = {kind: int(width) for kind, width in self.config["outputs"].items()}
        if graph_inputs != list(self.config["inputs"]) or graph_outputs != expected:
            raise ValueError(f"{self.folder / self.config['onnx_file']} does not match {ONNX_CONFIG_NAME}: the graph "
                             f"takes {graph_inputs} and gives {graph_outputs}, the JSON says {self.config['inputs']} "
                             f"and {expected}")
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        if self.tokenizer.pad_token_id != self.config["pad_token_id"]:
            raise ValueError(f"the tokenizer in {self.folder} pads with id {self.tokenizer.pad_token_id}, "
                             f"{ONNX_CONFIG_NAME} says {self.config['pad_token_id']}: the files come from two exports")

    def __getstate__(self) -> dict:  # an InferenceSession does not pickle: the folder is reopened instead
        state = self.__dict__.copy()
        del state["session"], state["tokenizer"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def width(self, kind: str = "informative") -> int:
        self._check_kind(kind)
        return int(self.config["outputs"][kind])

    def _check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ValueError(f"kind {kind!r} is not in the ONNX export {self.folder}, which gives {self.kinds} "
                             "(export again without --kind for every kind)")

    def embed(self, smiles, *, kind: str = "informative", batch_size: int = 64, progress: bool = False,
              on_unknown: str = "warn", on_too_long: str = "warn", on_invalid: str = "warn") -> np.ndarray:
        """Embed SMILES as `cmim_hf.embed_smiles` does (same options, checks, warnings and truncation). Returns
        (N, E) float32 in the input order."""
        from .embeddings import embed_ids, prepare_ids

        forward = self.forward(kind)
        all_ids = prepare_ids(self.tokenizer, smiles, max_length=self.max_length, batch_size=batch_size,
                              on_unknown=on_unknown, on_too_long=on_too_long, on_invalid=on_invalid)
        return embed_ids(self.tokenizer, all_ids, forward, width=self.width(kind), batch_size=batch_size,
                         progress=progress)

    def forward(self, kind: str = "informative"):
        """The graph as a batch function: right-padded int64 arrays (B, T) input ids and attention mask ->
        float32 (B, E) of `kind` (what `cmim_hf.embeddings.embed_ids` and the library writer call)."""
        self._check_kind(kind)

        def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
            return self.session.run([kind], {"input_ids": input_ids, "attention_mask": attention_mask})[0]

        return run


def load_embedder(model: str | os.PathLike, *, backend: str = "torch", device: str | None = None,
                  dtype: str | None = None):
    """One embedding function for either backend, loaded once: `embed(smiles, **options) -> (N, E) float32`, the
    options those of `embed_smiles` (kind, batch_size, progress, on_unknown, on_too_long, on_invalid).

    backend "torch": `model` is a shipped name, model folder or repo id (`load_pretrained` with `device`, `dtype`);
    "onnx": `model` is an export folder, run by ONNX Runtime on the CPU (device and dtype must be unset, "cpu" or
    "float32"). `cmim-hf embed --backend` uses it; a writer of large libraries calls `embed` once per chunk.
    """
    from .embeddings import embed_smiles, load_pretrained

    check_backend(backend, device, dtype)
    if backend == "torch":
        net, tokenizer = load_pretrained(model, device=device, dtype=dtype)
        return lambda smiles, **options: embed_smiles(net, tokenizer, smiles, **options)
    return ONNXEmbedder(model).embed


def check_backend(backend: str, device: str | None = None, dtype: str | None = None) -> None:
    """Refuse an unknown backend, and device / dtype options the onnx backend cannot honour: it runs the exported
    graph on the CPU in the precision it was exported in."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "onnx" and (device not in (None, "cpu") or dtype not in (None, "float32")):
        raise ValueError("backend='onnx' runs the exported graph on the CPU in the precision it was exported in: "
                         f"leave device and dtype unset (got device={device!r}, dtype={dtype!r})")


def backend_fingerprint(model: str | os.PathLike, backend: str = "torch") -> str:
    """The `model_fingerprint` of the weights `model` embeds with: a model folder's own, or for an ONNX export the
    one of the model it was exported from. An embedded library's manifest records it, whatever the backend, so
    that a reader holding the torch model and one holding its export agree."""
    if backend == "onnx":
        return read_onnx_config(model)["source_model"]["fingerprint"]
    from .embedding_store import model_fingerprint
    from .hub import resolve_model

    return model_fingerprint(resolve_model(model))
