"""ONNX export of the embedding forward pass: `export_onnx(model, output_dir)` and `cmim-hf export`.

An export folder holds everything a deployment needs to embed without torch or transformers:

    OUT/
      model.onnx         input_ids, attention_mask (B, T) int64, right-padded -> one (B, E_kind) float32 output
                         per embedding kind (or the one kind chosen at export); batch and sequence axes dynamic
      tokenizer.json     the model's tokenizer (the `tokenizers` library reads it), tokenizer_config.json
      cmim_onnx.json     what the graph is and how to feed it (`ONNX_CONFIG_NAME`, below)
      README.md, card_data.json   the source model's card, when it has one

Route: `torch.onnx.export` with the TorchScript tracer (`dynamo=False`). torch.export (the dynamo exporter, the
default since torch 2.9) refuses the model: `teacher_forcing_inputs` checks that inputs are right-padded and
`labels_from_input_ids` drops a leading start token when every row has one, two data-dependent Python branches
(GuardOnDataDependentSymNode). The tracer records the branch taken for the export example instead; both are the
same for every input of the model's own tokenizer (it puts the same special token first in every row), so the
traced graph is the model's function for all inputs the tokenizer makes. optimum's exporter was not used: it
needs a custom OnnxConfig for a model type it does not know and would wrap the same torch.onnx call.
The example batch holds two molecules of different lengths so that the traced attention keeps its padding mask
(transformers drops an all-ones mask while tracing); tests check other batch sizes and lengths.

int8: `onnxruntime.quantization.quantize_dynamic` (int8 weights of MatMul/Gemm with one scale per output channel,
activations quantised per batch at run time), after onnxruntime's `quant_pre_process` (shape inference and graph optimisation).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

from .embedding_store import file_sha256

__all__ = ["DEFAULT_OPSET", "EXPORT_FORMATS", "OPSET_RANGE", "ONNX_CONFIG_NAME", "ONNX_FILE_NAME", "ONNX_FORMAT", "QUANTIZATIONS", "export_onnx",
           "file_sha256", "read_onnx_config", "require_onnx"]

ONNX_CONFIG_NAME = "cmim_onnx.json"
ONNX_FILE_NAME = "model.onnx"
ONNX_FORMAT = "cmim-hf-onnx"  # the `format` field of cmim_onnx.json
FORMAT_VERSION = 1
EXPORT_FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)  # --quantize values; each needs an ONNX Runtime backend
DEFAULT_OPSET = 17
OPSET_RANGE = (14, 20)  # opsets the export is tested with (dynamic axes, the tracer's ops)
INPUT_NAMES = ("input_ids", "attention_mask")
CARD_FILES = ("README.md", "card_data.json")
# Two molecules of different lengths: the traced graph must see padding (see the module notes).
_EXAMPLE_TEXTS = ("CCO", "CC(=O)Nc1ccc(O)cc1")


def require_onnx(what: str):
    """The `onnx` and `onnxruntime` modules, or ImportError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise ImportError(f"{what} needs onnx and onnxruntime ({error}): pip install 'cmim-hf[onnx]'") from None
    return onnx, onnxruntime


def _check_options(export_format: str, quantize: str | None, kind: str | None) -> None:
    from .modeling.names import EMBEDDING_KINDS

    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {export_format!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize {quantize!r} is not supported: the ONNX Runtime backend quantises to "
                         f"{' or '.join(QUANTIZATIONS)} (or leave quantize out for float32)")
    if kind is not None and kind not in EMBEDDING_KINDS:
        raise ValueError(f"kind must be one of {EMBEDDING_KINDS} (or None for all), got {kind!r}")


def _check_target(output_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier export (it may be the user's model or data)."""
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / ONNX_CONFIG_NAME).is_file():
        raise FileExistsError(f"output folder {output_dir} exists and is not an ONNX export (no {ONNX_CONFIG_NAME}); "
                              "choose a new or empty folder")


def _graph_module(model, kinds: tuple[str, ...]):
    """A torch module: (input_ids, attention_mask) -> one (B, E_kind) tensor per kind of `kinds`, computed in one
    pass (cMIM: one `CMIMModel.forward` gives every kind; a plain encoder-decoder: the informative embedding is
    [encoder ; decoder], so its two halves are the other kinds)."""
    import torch

    from .embeddings import embedding_size, is_cmim
    from .modeling import seq2seq_embedding

    class EmbeddingGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            if len(kinds) == 1:
                return seq2seq_embedding(self.model, input_ids, attention_mask, kind=kinds[0])
            if is_cmim(self.model.config):
                out = self.model.model(input_ids, attention_mask, return_dict=True)
                values = {"informative": out.embedding, "latent": out.latent_mean.flatten(1),
                          "decoder": out.decoder_pooled, "encoder": out.encoder_pooled}
            else:
                informative = seq2seq_embedding(self.model, input_ids, attention_mask, kind="informative")
                split = embedding_size(self.model.config, "encoder")
                values = {"informative": informative, "encoder": informative[:, :split],
                          "decoder": informative[:, split:]}
            return tuple(values[k] for k in kinds)

    return EmbeddingGraph().eval()  # the class is made here so that importing this module loads no torch


def _fix_output_widths(path: Path, widths: dict[str, int]) -> None:
    """Write each output's width into the graph (the tracer leaves some symbolic, e.g. after a concatenation), so
    that users and `ONNXEmbedder` read (batch, E) from the graph itself; then check the model."""
    import onnx

    graph = onnx.load(str(path))
    for output in graph.graph.output:
        dims = output.type.tensor_type.shape.dim
        dims[1].Clear()
        dims[1].dim_value = widths[output.name]
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))


def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = source.with_name("model.prepared.onnx")
    quant_pre_process(str(source), str(prepared))
    # per-channel weight scales: on cmim-moses-tiny they raise the worst cosine to float32 above one scale per
    # tensor's, for every kind but the encoder's (results/onnx/agreement.md)
    quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=True)
    prepared.unlink()


def export_onnx(model: str | os.PathLike, output_dir: str | os.PathLike, *, quantize: str | None = None,
                kind: str | None = None, opset: int = DEFAULT_OPSET, export_format: str = "onnx") -> Path:
    """Export the embedding forward pass of a model to an ONNX folder (see the module notes for its files).

    Args:
        model: a shipped checkpoint name, a saved model folder (cMIM or a plain BART/T5/... encoder-decoder,
            whose informative embedding is `cmim_hf.modeling.seq2seq_embedding`'s) or a Hub repo id.
        output_dir: the folder to write; it is written to a temporary sibling and renamed into place, so an
            interrupted export leaves nothing half-written. An earlier export there is replaced; any other
            non-empty folder is refused.
        quantize: None (float32) or "int8" (onnxruntime dynamic quantisation).
        kind: one embedding kind for a single-output graph; None exports every kind the model offers.
        opset: the ONNX opset.

    Returns:
        The output folder.

    Raises:
        FileNotFoundError: `model` is not a model folder, shipped name or reachable repo id.
        ValueError: an unsupported format, quantisation or kind.
        FileExistsError: `output_dir` is a non-empty folder that is not an ONNX export.
    """
    _check_options(export_format, quantize, kind)
    from .checks import check_output_dir, check_number

    check_number("opset", opset, integer=True, minimum=OPSET_RANGE[0], maximum=OPSET_RANGE[1])
    output_dir = check_output_dir(Path(output_dir).resolve(), "output_dir")
    _check_target(output_dir)

    onnx, onnxruntime = require_onnx("export_onnx")
    import torch
    import transformers

    from . import __version__
    from .embedding_store import model_fingerprint
    from .embeddings import load_pretrained, max_input_length
    from .hub import resolve_model
    from .modeling import check_embedding_kind, embedding_kinds, embedding_size
    from .saving import staged_folder

    folder = resolve_model(model)
    net, tokenizer = load_pretrained(folder, device="cpu", dtype="float32")
    if kind is not None:
        check_embedding_kind(kind, net.config)
    kinds = embedding_kinds(net.config) if kind is None else (kind,)
    widths = {k: embedding_size(net.config, k) for k in kinds}
    max_length = max_input_length(net, tokenizer)
    example = tokenizer.pad({"input_ids": [tokenizer(t)["input_ids"] for t in _EXAMPLE_TEXTS]}, padding=True,
                            padding_side="right", return_tensors="pt")

    with staged_folder(output_dir) as staging:
        traced = staging / ("model.fp32.onnx" if quantize else ONNX_FILE_NAME)
        dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
        dynamic.update({k: {0: "batch"} for k in kinds})
        with warnings.catch_warnings(), torch.no_grad():
            # TracerWarnings name the branches discussed in the module notes; the DeprecationWarning is the route
            warnings.simplefilter("ignore")
            torch.onnx.export(_graph_module(net, kinds), (example["input_ids"], example["attention_mask"]),
                              str(traced), input_names=list(INPUT_NAMES), output_names=list(kinds),
                              dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True)
        _fix_output_widths(traced, widths)
        if quantize:
            _quantize_int8(traced, staging / ONNX_FILE_NAME)
            traced.unlink()
        tokenizer.save_pretrained(staging)
        for name in CARD_FILES:  # the model's card travels with it (its licence, and molfeat's ModelInfo)
            if (folder / name).is_file():
                shutil.copyfile(folder / name, staging / name)
        special = {name: getattr(tokenizer, name) for name in ("pad_token", "unk_token", "bos_token", "eos_token")}
        config = {
            "format": ONNX_FORMAT,
            "format_version": FORMAT_VERSION,
            "onnx_file": ONNX_FILE_NAME,
            "onnx_sha256": file_sha256(staging / ONNX_FILE_NAME),
            "inputs": list(INPUT_NAMES),
            "input_dtype": "int64",
            "outputs": widths,  # kind -> width, in the graph's output order
            "opset": opset,
            "quantization": quantize,
            "exporter": "torch.onnx.export (TorchScript tracer, dynamo=False)",
            "source_model": {"name": str(model), "model_type": net.config.model_type,
                             "fingerprint": model_fingerprint(folder)},
            "max_length": max_length,
            "padding_side": "right",
            "truncation": "inputs longer than max_length tokens are cut to max_length, special tokens kept",
            "special_tokens": special,
            **{f"{name}_id": getattr(tokenizer, f"{name}_id") for name in special},
            "versions": {"cmim_hf": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                         "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        }
        (staging / ONNX_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return output_dir


def read_onnx_config(folder: str | os.PathLike) -> dict:
    """The checked `cmim_onnx.json` of an export folder.

    Raises:
        FileNotFoundError: not a folder, or no cmim_onnx.json / model.onnx / tokenizer.json in it.
        ValueError: the JSON is not an export's, or model.onnx is not the file this export wrote (its SHA-256
            differs: an ONNX file from another export or model was put there).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"ONNX folder {folder} does not exist (or is not a folder)")
    path = folder / ONNX_CONFIG_NAME
    if not path.is_file():
        hint = " (it is a model folder: export it first with cmim-hf export)" if (folder / "config.json").is_file() \
            else ""
        raise FileNotFoundError(f"{folder} holds no {ONNX_CONFIG_NAME}: not an ONNX export of cmim-hf{hint}")
    try:
        config = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    required = ("format", "onnx_file", "onnx_sha256", "inputs", "outputs", "max_length", "pad_token_id",
                "source_model")
    if not isinstance(config, dict) or config.get("format") != ONNX_FORMAT or \
            any(key not in config for key in required):
        raise ValueError(f"{path} is not an export's {ONNX_CONFIG_NAME} (format {ONNX_FORMAT!r} with fields "
                         f"{', '.join(required)})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {config.get('format_version')!r}; this cmim-hf reads "
                         f"{FORMAT_VERSION}. Export the model again")
    for name in (config["onnx_file"], "tokenizer.json"):
        if Path(name).name != name or not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing (the ONNX export is incomplete)")
    actual = file_sha256(folder / config["onnx_file"])
    if actual != config["onnx_sha256"]:
        raise ValueError(f"{folder / config['onnx_file']} is not the graph this export wrote (SHA-256 "
                         f"{actual[:12]}..., {ONNX_CONFIG_NAME} says {config['onnx_sha256'][:12]}...): an ONNX "
                         "file from another export or model; export again")
    return config
