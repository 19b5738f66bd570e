"""cmim-hf: contrastive Mutual Information Machine (cMIM) sequence auto-encoders for Hugging Face transformers.

Importing the package registers the model family with the Auto classes, so saved folders load with
`AutoModel.from_pretrained(folder)` without `trust_remote_code`.

The package imports lazily: `import cmim_hf` itself loads no torch, transformers, scikit-learn or datasets, so
the `cmim-hf` command (whose module lives in this package) answers `--help` at once. Each name below is
imported from its module on first use (PEP 562), and the Auto-class registration happens as soon as
transformers' Auto classes load, or at once if they already are (see `_registration.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._registration import register_when_transformers_loads

__version__ = "0.1.0"

# module -> the public names it provides
_EXPORTS: dict[str, tuple[str, ...]] = {
    "cards": ("CMIMCardData", "render_model_card", "write_model_card"),
    "chem": ("randomized_smiles_views", "validate_smiles"),
    "data": ("list_datasets", "load_named_dataset", "load_text_dataset", "tokenize_dataset"),
    "embeddings": ("embed_smiles", "generate_smiles", "interpolate_smiles", "load_pretrained"),
    "estimator": ("CMIMEmbedder",),
    "hub": ("resolve_model",),
    "library": ("BatchEmbedder", "embed_to_disk"),
    "modeling": ("CMIMConfig", "CMIMFeatureExtractionPipeline", "CMIMForConditionalGeneration", "CMIMModel",
                 "labels_from_input_ids", "seq2seq_embedding"),
    "onnx_backend": ("ONNXEmbedder",),
    "onnx_export": ("export_onnx",),
    "optimization": ("OptimizationResult", "optimize_molecules"),
    "publishing": ("push_folder",),
    "pretrained": ("list_pretrained", "pretrained_path"),
    "search": ("LibraryIndex", "build_index", "search_library"),
    "tokenization": ("build_smiles_tokenizer", "check_texts", "default_smiles_tokenizer"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .cards import CMIMCardData, render_model_card, write_model_card
    from .chem import randomized_smiles_views, validate_smiles
    from .data import list_datasets, load_named_dataset, load_text_dataset, tokenize_dataset
    from .embeddings import embed_smiles, generate_smiles, interpolate_smiles, load_pretrained
    from .estimator import CMIMEmbedder
    from .hub import resolve_model
    from .library import BatchEmbedder, embed_to_disk
    from .modeling import (
        CMIMConfig,
        CMIMFeatureExtractionPipeline,
        CMIMForConditionalGeneration,
        CMIMModel,
        labels_from_input_ids,
        seq2seq_embedding,
    )
    from .onnx_backend import ONNXEmbedder
    from .onnx_export import export_onnx
    from .optimization import OptimizationResult, optimize_molecules
    from .pretrained import list_pretrained, pretrained_path
    from .publishing import push_folder
    from .search import LibraryIndex, build_index, search_library
    from .tokenization import build_smiles_tokenizer, check_texts, default_smiles_tokenizer




register_when_transformers_loads()
