"""cmim_hf.modeling: the cMIM model family. These files also travel to the Hub as remote code, so they import
only torch, transformers and each other (single-dot relative imports).

Names are imported from their modules on first use (PEP 562): `import cmim_hf.modeling.names` (the model's names,
for the commands' `--help`) loads neither torch nor transformers.
"""

import importlib
from typing import TYPE_CHECKING

# module -> the public names it provides
_EXPORTS = {
    "configuration_cmim": ("OBJECTIVES", "CMIMConfig"),
    "modeling_cmim": ("EMBEDDING_KINDS", "IGNORE_INDEX", "CMIMEncoderOutput", "CMIMForConditionalGeneration",
                      "CMIMModel", "CMIMModelOutput", "CMIMPreTrainedModel", "CMIMSeq2SeqLMOutput",
                      "check_embedding_kind", "check_encoder_decoder", "count_correct_tokens", "embedding_kinds",
                      "embedding_size", "is_cmim", "labels_from_input_ids", "seq2seq_embedding",
                      "shift_tokens_right"),
    "pipeline_cmim": ("CMIMFeatureExtractionPipeline",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
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
        check_embedding_kind,
        check_encoder_decoder,
        count_correct_tokens,
        embedding_kinds,
        embedding_size,
        is_cmim,
        labels_from_input_ids,
        seq2seq_embedding,
        shift_tokens_right,
    )
    from .pipeline_cmim import CMIMFeatureExtractionPipeline
