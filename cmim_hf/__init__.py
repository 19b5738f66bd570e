"""cmim-hf: contrastive Mutual Information Machine (cMIM) sequence auto-encoders for Hugging Face transformers.

Importing the package registers the model family with the Auto classes, so saved folders load with
`AutoModel.from_pretrained(folder)` without `trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .data import list_datasets, load_named_dataset, load_text_dataset, randomized_smiles_views, tokenize_dataset
from .modeling import (
    CMIMConfig,
    CMIMFeatureExtractionPipeline,
    CMIMForConditionalGeneration,
    CMIMModel,
    labels_from_input_ids,
)
from .tokenization import build_smiles_tokenizer, check_texts, default_smiles_tokenizer, validate_smiles

AutoConfig.register(CMIMConfig.model_type, CMIMConfig, exist_ok=True)
AutoModel.register(CMIMConfig, CMIMModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(CMIMConfig, CMIMForConditionalGeneration, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "CMIMConfig",
    "CMIMFeatureExtractionPipeline",
    "CMIMForConditionalGeneration",
    "CMIMModel",
    "build_smiles_tokenizer",
    "check_texts",
    "default_smiles_tokenizer",
    "labels_from_input_ids",
    "list_datasets",
    "load_named_dataset",
    "load_text_dataset",
    "randomized_smiles_views",
    "tokenize_dataset",
    "validate_smiles",
]
