"""Analytic FLOP count of a cMIM training step, for model FLOPs utilisation (MFU).

Only matrix products are counted (linear layers, attention scores and attention-weighted values, the LM head,
the contrastive similarity matrix), at 2 FLOPs per multiply-add; layer norms, activations, softmax, the
losses and the optimizer are left out, as in the usual MFU convention (PaLM, Megatron). Attention is counted
dense (every query against every key, the causal half included), which is also what
`torch.utils.flop_counter.FlopCounterMode` counts for SDPA. Shapes are the ones the model computes on: the
padded batch (B rows, T encoder tokens, T' decoder tokens), so padding counts as work; the benchmark reports the
padding share next to it.

Forward FLOPs, with H/F the width/FFN size of each side, K latent tokens of D dims, V the vocabulary:

    encoder, per layer:  B*T*(8*He^2 + 4*He*Fe) + 4*B*T^2*He       (qkv 6H^2, out 2H^2, FFN 4HF; QK^T, AV)
    latent head, perceiver: B*(4*K*He^2 + 4*T*He^2 + 4*K*T*He + 4*K*He*Fe + 4*K*He*D)
                           (q and out projections of the K queries, k/v projection of the T encoder states,
                            attention, FFN on K tokens, the (mu, log sigma) head)
    latent head, mean:   B*4*He*K*D
    decoder input:       B*2*K*D*Hd                                  (latent projection)
    decoder, per layer:  B*T'*(12*Hd^2 + 4*Hd*Fd) + 4*B*T'^2*Hd     (self qkv/out 8H^2, cross q/out 4H^2, FFN)
                         + B*4*K*Hd^2 + 4*B*T'*K*Hd                  (cross k/v of the K latents; cross attention)
    LM head:             2*B*T'*Hd*V
    cMIM term:           2*B^2*K*D                                   (cosine-similarity matrix)

With a single latent token (K = 1) the decoder's cross-attention may skip its queries: a softmax over one key is
exactly 1, so every position receives the projected value of the latent. Such a layer costs B*4*Hd^2 (value
and output projections of the one latent) instead of B*T'*4*Hd^2 + B*4*Hd^2 + 4*B*T'*Hd; pass
`cross_attention_queries=False` (the suite detects it from the model: no `q_proj` in the decoder's
cross-attention).

A training step (forward, backward, optimizer) counts 3x the forward: the backward of every product computes
a gradient for each of its two operands, each as costly as the forward product.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepFlops", "bart_training_step_flops", "cmim_forward_flops", "cmim_training_step_flops",
           "decoder_cross_attention_queries"]


@dataclass(frozen=True)
class StepFlops:
    """Forward FLOPs of each part of the model; `total` is their sum."""

    encoder: int
    latent_head: int
    decoder: int
    lm_head: int
    contrastive: int

    @property
    def total(self) -> int:
        return self.encoder + self.latent_head + self.decoder + self.lm_head + self.contrastive


def _get(config, name):
    return config[name] if isinstance(config, dict) else getattr(config, name)


def cmim_forward_flops(config, batch_size: int, encoder_length: int, decoder_length: int | None = None,
                       *, contrastive: bool | None = None, cross_attention_queries: bool = True) -> StepFlops:
    """Forward matmul FLOPs of `CMIMForConditionalGeneration` on a (B, T) batch with T' decoder positions.

    config: a `CMIMConfig` or a dict with its fields. decoder_length defaults to T - 1 (the training labels
    drop the leading <bos>). contrastive: count the cMIM similarity matrix (default: objective == "cmim").
    cross_attention_queries: False for a decoder whose single-latent-token cross-attention skips the queries.
    """
    b, t = int(batch_size), int(encoder_length)
    td = t - 1 if decoder_length is None else int(decoder_length)
    he, fe, le = _get(config, "encoder_hidden_size"), _get(config, "encoder_ffn_dim"), _get(config, "encoder_layers")
    hd, fd, ld = _get(config, "decoder_hidden_size"), _get(config, "decoder_ffn_dim"), _get(config, "decoder_layers")
    k, d, v = _get(config, "latent_tokens"), _get(config, "latent_size"), _get(config, "vocab_size")
    pooling = _get(config, "latent_pooling")
    if contrastive is None:
        contrastive = _get(config, "objective") == "cmim"

    encoder = le * (b * t * (8 * he * he + 4 * he * fe) + 4 * b * t * t * he)
    if pooling == "perceiver":
        latent_head = b * (4 * k * he * he + 4 * t * he * he + 4 * k * t * he + 4 * k * he * fe + 4 * k * he * d)
    else:
        latent_head = b * 4 * he * k * d
    if cross_attention_queries:  # q and out projections of T' positions, k/v of the K latents, attention
        cross = b * td * 4 * hd * hd + b * 4 * k * hd * hd + 4 * b * td * k * hd
    else:  # value and output projections of the K latents only
        cross = b * 4 * k * hd * hd
    decoder = b * 2 * k * d * hd + ld * (b * td * (8 * hd * hd + 4 * hd * fd) + 4 * b * td * td * hd + cross)
    lm_head = 2 * b * td * hd * v
    return StepFlops(encoder=encoder, latent_head=latent_head, decoder=decoder, lm_head=lm_head,
                     contrastive=2 * b * b * k * d if contrastive else 0)


def cmim_training_step_flops(config, batch_size: int, encoder_length: int, decoder_length: int | None = None,
                             *, cross_attention_queries: bool = True) -> int:
    """FLOPs of one training step (forward + backward = 3x forward) on a padded (B, T) batch."""
    return 3 * cmim_forward_flops(config, batch_size, encoder_length, decoder_length,
                                  cross_attention_queries=cross_attention_queries).total


def decoder_cross_attention_queries(model) -> bool:
    """Whether a cMIM model's decoder cross-attention projects queries (False: the single-latent shortcut)."""
    for name, module in model.named_modules():
        if name.endswith("decoder.layers.0.cross_attn"):
            return hasattr(module, "q_proj")
    return True


def bart_training_step_flops(config, batch_size: int, encoder_length: int, decoder_length: int) -> int:
    """The same count for an equal-geometry `BartForConditionalGeneration` (BartConfig fields): its decoder
    cross-attends to all T encoder states instead of K latent tokens, and it has no latent head."""
    b, t, td = int(batch_size), int(encoder_length), int(decoder_length)
    h, v = config.d_model, config.vocab_size
    encoder = config.encoder_layers * (b * t * (8 * h * h + 4 * h * config.encoder_ffn_dim) + 4 * b * t * t * h)
    decoder = config.decoder_layers * (b * td * (12 * h * h + 4 * h * config.decoder_ffn_dim) + 4 * b * td * td * h
                                       + b * t * 4 * h * h + 4 * b * td * t * h)
    return 3 * (encoder + decoder + 2 * b * td * h * v)
