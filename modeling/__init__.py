"""cmim_hf.modeling: the cMIM model family. These files also travel to the Hub as remote code, so they import
only torch, transformers and each other (single-dot relative imports)."""

from .configuration_cmim import CMIMConfig
from .modeling_cmim import (
    CMIMEncoderOutput,
    CMIMForConditionalGeneration,
    CMIMModel,
    CMIMModelOutput,
    CMIMPreTrainedModel,
    CMIMSeq2SeqLMOutput,
    labels_from_input_ids,
    shift_tokens_right,
)
from .pipeline_cmim import CMIMFeatureExtractionPipeline

__all__ = [
    "CMIMConfig",
    "CMIMEncoderOutput",
    "CMIMFeatureExtractionPipeline",
    "CMIMForConditionalGeneration",
    "CMIMModel",
    "CMIMModelOutput",
    "CMIMPreTrainedModel",
    "CMIMSeq2SeqLMOutput",
    "labels_from_input_ids",
    "shift_tokens_right",
]
