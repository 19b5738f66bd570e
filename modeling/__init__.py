"""cmim_hf.modeling: the cMIM model family. These files also travel to the Hub as remote code, so they import
only torch, transformers and each other (single-dot relative imports)."""

from .configuration_cmim import OBJECTIVES, CMIMConfig
from .modeling_cmim import (
    EMBEDDING_KINDS,
    IGNORE_INDEX,
    CMIMEncoderOutput,
    CMIMForConditionalGeneration,
    CMIMModel,
    CMIMModelOutput,
    CMIMPreTrainedModel,
    CMIMSeq2SeqLMOutput,
    check_encoder_decoder,
    count_correct_tokens,
    labels_from_input_ids,
    seq2seq_embedding,
    shift_tokens_right,
)
from .pipeline_cmim import CMIMFeatureExtractionPipeline

__all__ = [
    "EMBEDDING_KINDS",
    "IGNORE_INDEX",
    "OBJECTIVES",
    "CMIMConfig",
    "CMIMEncoderOutput",
    "CMIMFeatureExtractionPipeline",
    "CMIMForConditionalGeneration",
    "CMIMModel",
    "CMIMModelOutput",
    "CMIMPreTrainedModel",
    "CMIMSeq2SeqLMOutput",
    "check_encoder_decoder",
    "count_correct_tokens",
    "labels_from_input_ids",
    "seq2seq_embedding",
    "shift_tokens_right",
]
