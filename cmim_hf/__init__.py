"""cmim-hf: contrastive Mutual Information Machine (cMIM) sequence auto-encoders for Hugging Face transformers.

Importing the package registers the model family with the Auto classes, so saved folders load with
`AutoModel.from_pretrained(folder)` without `trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .cards import CMIMCardData, render_model_card, write_model_card
from .chem import randomized_smiles_views, validate_smiles
from .data import list_datasets, load_named_dataset, load_text_dataset, tokenize_dataset
from .embeddings import CMIMEmbedder, embed_smiles, generate_smiles, interpolate_smiles, load_pretrained
from .hub import push_folder, resolve_model
from .modeling import (
    CMIMConfig,
    CMIMFeatureExtractionPipeline,
    CMIMForConditionalGeneration,
    CMIMModel,
    labels_from_input_ids,
    seq2seq_embedding,
)
from .optimization import OptimizationResult, optimize_molecules
from .pretrained import list_pretrained, pretrained_path
from .tokenization import build_smiles_tokenizer, check_texts, default_smiles_tokenizer

AutoConfig.register(CMIMConfig.model_type, CMIMConfig, exist_ok=True)
AutoModel.register(CMIMConfig, CMIMModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(CMIMConfig, CMIMForConditionalGeneration, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "CMIMCardData",
    "CMIMEmbedder",
    "CMIMConfig",
    "CMIMFeatureExtractionPipeline",
    "CMIMForConditionalGeneration",
    "CMIMModel",
    "build_smiles_tokenizer",
    "embed_smiles",
    "generate_smiles",
    "interpolate_smiles",
    "list_pretrained",
    "load_pretrained",
    "OptimizationResult",
    "optimize_molecules",
    "pretrained_path",
    "push_folder",
    "render_model_card",
    "resolve_model",
    "write_model_card",
    "check_texts",
    "default_smiles_tokenizer",
    "labels_from_input_ids",
    "seq2seq_embedding",
    "list_datasets",
    "load_named_dataset",
    "load_text_dataset",
    "randomized_smiles_views",
    "tokenize_dataset",
    "validate_smiles",
]
