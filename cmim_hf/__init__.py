"""cmim-hf: contrastive Mutual Information Machine (cMIM) sequence auto-encoders for Hugging Face transformers.

Importing the package registers the model family with the Auto classes, so saved folders load with
`AutoModel.from_pretrained(folder)` without `trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .modeling import (
    CMIMConfig,
    CMIMFeatureExtractionPipeline,
    CMIMForConditionalGeneration,
    CMIMModel,
    labels_from_input_ids,
)

AutoConfig.register(CMIMConfig.model_type, CMIMConfig, exist_ok=True)
AutoModel.register(CMIMConfig, CMIMModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(CMIMConfig, CMIMForConditionalGeneration, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "CMIMConfig",
    "CMIMFeatureExtractionPipeline",
    "CMIMForConditionalGeneration",
    "CMIMModel",
    "labels_from_input_ids",
]
