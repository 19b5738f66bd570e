"""The model of a training run: built from the recipe's model section and the tokenizer (`build_model`), or from
a config (`model_from_config`, for the final save under FSDP).

Three kinds of model train with the same loop:
- a native cMIM model (the default): `CMIMForConditionalGeneration` of the recipe's geometry;
- cMIM heads on a transformers encoder-decoder (`--backbone bart|t5` built from the recipe's geometry, or
  `--backbone PATH`, a pretrained folder whose weights are kept);
- that encoder-decoder alone, as a plain auto-encoder (`--objective plain`): no latent, the decoder reading the
  encoder's states, ordinary token-mean cross-entropy. Its final folder is a stock transformers folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from transformers import AutoConfig, AutoModelForSeq2SeqLM, BartConfig, T5Config

from cmim_hf.modeling import OBJECTIVES, CMIMConfig, CMIMForConditionalGeneration

from .errors import TrainingError

# `plain`: the backbone trained alone, without latent (needs a backbone).
TRAINING_OBJECTIVES = (*OBJECTIVES, "plain")
BACKBONE_FAMILIES = ("bart", "t5")  # built from the recipe's geometry; anything else is a folder


def training_objective(config) -> str:
    """The objective a model trains with: its cMIM objective, or `plain` for a transformers encoder-decoder."""
    return config.objective if getattr(config, "model_type", None) == "cmim" else "plain"


def build_model(model_args, tokenizer):
    """A freshly initialised model (seed the global RNG first) with the geometry and objective of `model_args`
    (a `ModelArguments`) and the vocabulary and special ids of `tokenizer` (see the module notes).

    Word dropout writes the tokenizer's mask token (else its unknown token, else padding).

    Raises:
        TrainingError: the fields do not make a valid model (the message names the field).
    """
    fields = dataclasses.asdict(model_args)
    backbone, objective = fields.pop("backbone"), fields["objective"]
    if objective not in TRAINING_OBJECTIVES:
        raise TrainingError(f"`objective` must be one of {TRAINING_OBJECTIVES}, got {objective!r}")
    if objective == "plain" and backbone is None:
        raise TrainingError("objective `plain` trains a transformers encoder-decoder without a latent: it needs "
                            "--backbone bart, t5 or the folder of a pretrained one")
    special = _special_ids(tokenizer)
    try:
        if backbone is None:
            return model_from_config(CMIMConfig(**fields, **special))
        if backbone in BACKBONE_FAMILIES:
            backbone_config = _backbone_config(backbone, fields, special)
            if objective == "plain":
                return AutoModelForSeq2SeqLM.from_config(backbone_config)
            return CMIMForConditionalGeneration(CMIMConfig(**fields, **special, backbone_config=backbone_config))
        pretrained = _pretrained_backbone(backbone, tokenizer)
        if objective == "plain":
            return pretrained
        geometry = {k: v for k, v in fields.items() if not k.startswith(("encoder_", "decoder_"))}
        return CMIMForConditionalGeneration.from_backbone(pretrained, **geometry,
                                                          decoder_input_dropout=fields["decoder_input_dropout"],
                                                          mask_token_id=special["mask_token_id"])
    except ValueError as error:
        raise TrainingError(str(error)) from error


def model_from_config(config):
    """A freshly initialised model of the class `config` describes."""
    if getattr(config, "model_type", None) == "cmim":
        return CMIMForConditionalGeneration(config)
    return AutoModelForSeq2SeqLM.from_config(config)


def _special_ids(tokenizer) -> dict:
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id
    return dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=start,
                mask_token_id=next(i for i in (tokenizer.mask_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id)
                                   if i is not None))


def _backbone_config(family: str, fields: dict, special: dict):
    """A BART or T5 config of the recipe's geometry (one width: BART and T5 share it between encoder and
    decoder) over the tokenizer's vocabulary, starting to decode from its <bos> like the native model."""
    width = fields["encoder_hidden_size"]
    if fields["decoder_hidden_size"] != width:
        raise TrainingError(f"backbone {family!r} has one width for encoder and decoder: set encoder_hidden_size "
                            f"({width}) and decoder_hidden_size ({fields['decoder_hidden_size']}) equal")
    ids = {k: special[k] for k in ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id",
                                   "decoder_start_token_id")}
    if family == "bart":
        return BartConfig(**ids, d_model=width, encoder_layers=fields["encoder_layers"],
                          decoder_layers=fields["decoder_layers"],
                          encoder_attention_heads=fields["encoder_attention_heads"],
                          decoder_attention_heads=fields["decoder_attention_heads"],
                          encoder_ffn_dim=fields["encoder_ffn_dim"], decoder_ffn_dim=fields["decoder_ffn_dim"],
                          max_position_embeddings=fields["max_position_embeddings"], dropout=fields["dropout"],
                          attention_dropout=fields["attention_dropout"],
                          activation_function=fields["activation_function"], init_std=fields["init_std"],
                          forced_eos_token_id=None)
    heads = fields["encoder_attention_heads"]
    return T5Config(**ids, d_model=width, num_layers=fields["encoder_layers"],
                    num_decoder_layers=fields["decoder_layers"], num_heads=heads, d_kv=width // heads,
                    d_ff=fields["encoder_ffn_dim"], dropout_rate=fields["dropout"],
                    feed_forward_proj=fields["activation_function"])


def _pretrained_backbone(path: str, tokenizer):
    """A pretrained encoder-decoder from a folder (or Hub id), checked against the training tokenizer."""
    if not Path(path).exists() and "/" not in path:
        raise TrainingError(f"--backbone {path!r} is neither one of {BACKBONE_FAMILIES} nor an existing folder")
    config = AutoConfig.from_pretrained(path)
    if not getattr(config, "is_encoder_decoder", False):
        raise TrainingError(f"--backbone {path} holds a {type(config).__name__} (model_type {config.model_type!r}), "
                            "not an encoder-decoder such as BART, T5, MBart, Marian or Pegasus")
    if len(tokenizer) > config.vocab_size:
        raise TrainingError(f"the tokenizer has {len(tokenizer)} tokens but the backbone {path} only {config.vocab_size}: "
                            f"train with the backbone's own tokenizer (--tokenizer {path})")
    return AutoModelForSeq2SeqLM.from_pretrained(path)
