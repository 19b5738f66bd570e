"""The model of a training run: built from the recipe's model section and the tokenizer (`build_model`), or from
a config (`model_from_config`, for the final save under FSDP)."""

from __future__ import annotations

import dataclasses

from cmim_hf.modeling import CMIMConfig, CMIMForConditionalGeneration

from .errors import TrainingError


def build_model(model_args, tokenizer) -> CMIMForConditionalGeneration:
    """A freshly initialised model (seed the global RNG first) with the geometry and objective of `model_args`
    (a `ModelArguments`) and the vocabulary and special ids of `tokenizer`.

    Word dropout writes the tokenizer's mask token (else its unknown token, else padding).

    Raises:
        TrainingError: the fields do not make a valid config (the message names the field).
    """
    try:
        config = CMIMConfig(**dataclasses.asdict(model_args), vocab_size=len(tokenizer),
                            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id,
                            decoder_start_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None
                            else tokenizer.pad_token_id,
                            mask_token_id=next(i for i in (tokenizer.mask_token_id, tokenizer.unk_token_id,
                                                           tokenizer.pad_token_id) if i is not None))
    except ValueError as error:
        raise TrainingError(str(error)) from error
    return model_from_config(config)


def model_from_config(config) -> CMIMForConditionalGeneration:
    """A freshly initialised model of the class `config` describes."""
    return CMIMForConditionalGeneration(config)
