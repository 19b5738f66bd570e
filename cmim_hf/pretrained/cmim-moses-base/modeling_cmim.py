"""cMIM sequence auto-encoder: encoder, Gaussian latent head, latent-conditioned decoder, objectives, heads.

This file travels to the Hub with every saved model (remote code): it imports only torch, transformers and
same-folder modules. Reading order: outputs, objectives, attention, layers, pretrained base, encoder,
decoder, transformers backbones, informative embeddings of any encoder-decoder, base model (embeddings),
generation head (losses and the latent API).

Shapes: B batch, T tokens, K latent tokens, D latent dims, H model width, V vocabulary.
"""

import inspect
import json
import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSeq2SeqLM, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPastAndCrossAttentions, BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_cmim import CMIMConfig

IGNORE_INDEX = -100
# "informative": [summary ; decoder], the summary being mu for cMIM models and the encoder mean otherwise;
# "latent": mu (cMIM models); "decoder": the teacher-forced decoder states' mean; "encoder": the encoder
# states' mean (what users of a plain encoder-decoder usually take).
EMBEDDING_KINDS = ("informative", "latent", "decoder", "encoder")
# Written into every saved config so the folder loads with the Auto classes and `pipeline(...)` wherever
# transformers is installed, with trust_remote_code=True.
AUTO_MAP = {
    "AutoConfig": "configuration_cmim.CMIMConfig",
    "AutoModel": "modeling_cmim.CMIMModel",
    "AutoModelForSeq2SeqLM": "modeling_cmim.CMIMForConditionalGeneration",
}
# The pipeline file is copied next to the weights by `save_pretrained` (it imports this file, not the other way
# round, so that loading a model never loads the pipeline's module).
PIPELINE_FILE = "pipeline_cmim.py"
CUSTOM_PIPELINES = {
    "feature-extraction": {
        "impl": "pipeline_cmim.CMIMFeatureExtractionPipeline",
        "pt": ["AutoModel"],
        "type": "text",
    }
}


def sentence_transformers_files(config: CMIMConfig) -> dict[str, object]:
    """The files that make a saved folder a sentence-transformers model (>= 6): one Transformer module whose
    text embedding is `CMIMModel.get_text_features(...).pooler_output`, the informative embedding, so that
    `SentenceTransformer(folder, trust_remote_code=True).encode(texts)` equals `embed`."""
    return {
        "modules.json": [{"idx": 0, "name": "0", "path": "",
                          "type": "sentence_transformers.base.modules.transformer.Transformer"}],
        "sentence_bert_config.json": {
            "transformer_task": "feature-extraction", "max_seq_length": config.max_position_embeddings,
            "modality_config": {"text": {"method": "get_text_features", "method_output_name": "pooler_output"}},
            "module_output_name": "sentence_embedding"},
        "config_sentence_transformers.json": {"model_type": "SentenceTransformer", "prompts": {},
                                              "default_prompt_name": None, "similarity_fn_name": "cosine"},
    }


# ---------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------


@dataclass
class CMIMEncoderOutput(ModelOutput):
    """What the encoder hands to the decoder (and to `generate`).

    Args:
        last_hidden_state: (B, K, D) the latent the decoder is conditioned on: `latent_mean`, or a sample
            from q(z|x) when sampling. It is the first field because `generate` reads the batch size and the
            cross-attention length from it and expands it for beams.
        latent_mean: (B, K, D) mu(x).
        latent_log_scale: (B, K, D) log sigma(x), clamped below at `config.min_log_scale`.
        encoder_states: (B, T, H) the encoder's last hidden states, which the latent head pooled.
        hidden_states: with `output_hidden_states`, the encoder's states after the embeddings and after each
            layer (the last one after the final norm), each (B, T, H).
        attentions: with `output_attentions`, each encoder layer's self-attention weights (B, heads, T, T).
    """

    last_hidden_state: torch.FloatTensor | None = None
    latent_mean: torch.FloatTensor | None = None
    latent_log_scale: torch.FloatTensor | None = None
    encoder_states: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class CMIMModelOutput(ModelOutput):
    """Output of [`CMIMModel`]. `embedding` comes first so that the stock feature-extraction pipeline,
    which returns `outputs[0]`, gives one vector per input.

    Args:
        embedding: (B, K*D + H) the informative embedding [mu ; masked mean of the decoder's last states].
        latent_mean: (B, K, D) mu(x).
        latent_log_scale: (B, K, D) log sigma(x).
        last_hidden_state: (B, T', H) the decoder's last hidden states, teacher-forced on x given mu.
        decoder_pooled: (B, H) their masked mean over the positions that predict a real token.
        encoder_pooled: (B, H) masked mean of the encoder's last hidden states.
        decoder_hidden_states, decoder_attentions, cross_attentions, encoder_last_hidden_state,
            encoder_hidden_states, encoder_attentions: as in transformers' `Seq2SeqModelOutput` (the per-layer
            ones only with `output_hidden_states` / `output_attentions`).
    """

    embedding: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    latent_mean: torch.FloatTensor | None = None
    latent_log_scale: torch.FloatTensor | None = None
    decoder_pooled: torch.FloatTensor | None = None
    encoder_pooled: torch.FloatTensor | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class CMIMSeq2SeqLMOutput(ModelOutput):
    """Output of [`CMIMForConditionalGeneration`]. With `labels`, `loss` and its parts are batch means
    (the parts are those of the chosen objective; the others stay None).

    Args:
        loss: () the objective.
        logits: (B, T, V) next-token logits.
        cache: the decoder's key/value cache when `use_cache`.
        reconstruction_loss: () mean over samples of the per-sample negative log-likelihood R_i.
        latent_log_q: () mean of log q(z|x) (MIM, cMIM, InfoNCE).
        latent_log_prior: () mean of log P(z) (MIM, cMIM, InfoNCE).
        contrastive_log_prob: () mean of log p(k=1|z,x) (cMIM) or of the NT-Xent log-probability (InfoNCE).
        kl: () mean KL(q(z|x) || P(z)) (VAE).
        token_accuracy: () teacher-forced next-token accuracy, pooled over the batch's real tokens.
        latent_mean, latent_log_scale: (B, K, D) the posterior parameters.
        latent_sample: (B, K, D) the latent the decoder was conditioned on.
        decoder_hidden_states, decoder_attentions, cross_attentions, encoder_last_hidden_state,
            encoder_hidden_states, encoder_attentions: as in transformers' `Seq2SeqLMOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    latent_log_q: torch.FloatTensor | None = None
    latent_log_prior: torch.FloatTensor | None = None
    contrastive_log_prob: torch.FloatTensor | None = None
    kl: torch.FloatTensor | None = None
    token_accuracy: torch.FloatTensor | None = None
    latent_mean: torch.FloatTensor | None = None
    latent_log_scale: torch.FloatTensor | None = None
    latent_sample: torch.FloatTensor | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------------
# Objectives: per-sample terms, each (B,). The model combines them in CMIMForConditionalGeneration.forward.
# ---------------------------------------------------------------------------------------------------------


def _reduce_latent_dims(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B, K, D) -> (B,) by summing or averaging over the K*D latent dims."""
    values = values.flatten(1)
    return values.mean(-1) if reduction == "mean" else values.sum(-1)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                         reduction: str = "mean") -> torch.Tensor:
    """log N(z; mean, exp(log_scale)^2) per sample. z, mean, log_scale: (B, K, D) -> (B,)."""
    standardized = (z - mean) * torch.exp(-log_scale)
    per_dim = -0.5 * standardized.pow(2) - log_scale - 0.5 * math.log(2 * math.pi)
    return _reduce_latent_dims(per_dim, reduction)


def standard_normal_log_density(z: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """log N(z; 0, I) per sample, the prior P(z). z: (B, K, D) -> (B,)."""
    return _reduce_latent_dims(-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi), reduction)


def gaussian_kl_to_standard_normal(mean: torch.Tensor, log_scale: torch.Tensor,
                                   reduction: str = "mean") -> torch.Tensor:
    """Analytic KL(N(mean, exp(log_scale)^2) || N(0, I)) per sample. (B, K, D) -> (B,)."""
    per_dim = 0.5 * (mean.pow(2) + torch.exp(2 * log_scale) - 1) - log_scale
    return _reduce_latent_dims(per_dim, reduction)


def reconstruction_nll(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Per-sample negative log-likelihood R_i of `labels` under `logits`.

    logits: (B, T, V); labels: (B, T) with IGNORE_INDEX at padding. "mean" averages over each sample's real
    tokens (every sample weighs the same whatever its length), "sum" sums them. Returns (B,).
    """
    token_nll = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX,
                                reduction="none").view_as(labels)  # (B, T)
    total = token_nll.sum(-1)
    if reduction == "sum":
        return total
    return total / (labels != IGNORE_INDEX).sum(-1).clamp(min=1)


def count_correct_tokens(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced next-token hits and real tokens of a batch. (B, T, V), (B, T) -> (), ().

    Token accuracy, everywhere in this package, is their ratio: pooled over all real tokens (a long sequence
    counts more than a short one), so sums over batches give the exact figure for a whole data set.
    """
    real = labels != IGNORE_INDEX
    return ((logits.argmax(-1) == labels) & real).sum(), real.sum()


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Teacher-forced next-token accuracy over the real tokens of a batch (see `count_correct_tokens`). ()."""
    correct, total = count_correct_tokens(logits, labels)
    return correct.float() / total.clamp(min=1)


def drop_decoder_inputs(decoder_input_ids: torch.Tensor, rate: float, replacement_id: int,
                        pad_token_id: int) -> torch.Tensor:
    """Word dropout (Bowman et al.): a `rate` fraction of the real teacher-forcing inputs after the start token
    replaced by `replacement_id`, so the decoder must lean on the latent. Draws from the global RNG on the
    inputs' device. (B, T') -> (B, T')."""
    droppable = decoder_input_ids != pad_token_id
    droppable[:, 0] = False
    dropped = droppable & (torch.rand(decoder_input_ids.shape, device=decoder_input_ids.device) < rate)
    return decoder_input_ids.masked_fill(dropped, replacement_id)


def gather_across_processes(z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' latents, differentiably, and the offset of this process's rows in them.

    z: (B, L) with the same B on every process. Returns (world * B, L) and rank * B; (z, 0) when not
    distributed. Gradients flow back to every process's latents through the gather.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return z, 0
    if torch.distributed.get_world_size() == 1:
        return z, 0
    from torch.distributed.nn.functional import all_gather

    # Its suggested replacement lives in a private torch module; the public autograd gather works on every
    # torch this package supports, so only its FutureWarning (printed on every step) is silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        gathered = all_gather(z.contiguous())
    return torch.cat(gathered), torch.distributed.get_rank() * z.shape[0]


def cmim_contrastive_log_prob(z: torch.Tensor, temperature: float, candidates: torch.Tensor | None = None,
                              offset: int = 0) -> torch.Tensor:
    """cMIM's augmentation-free contrastive term log p(k=1 | z_i, x_i), per sample.

    The positive is the sample itself (cosine 1); the N-1 negatives are the other samples, *averaged* (the
    -log(N-1) offset), which keeps the term in [-log 2, 0] whatever the batch size:
        log p_i = 1/tau - logsumexp([1/tau] + [cos(z_i, z_j)/tau - log(N-1) for j != i])

    z: (B, L) flattened latents. candidates: (N, L) the pool of negatives, holding z itself at rows
    offset..offset+B (latents gathered across processes); by default z itself. Returns (B,); zeros when
    N = 1 (no negatives).
    """
    candidates = z if candidates is None else candidates
    batch, pool = z.shape[0], candidates.shape[0]
    if pool == 1:
        return z.new_zeros(batch, dtype=torch.float32)
    unit = F.normalize(z.float(), dim=-1)
    unit_candidates = F.normalize(candidates.float(), dim=-1)
    with torch.autocast(z.device.type, enabled=False):  # 1/tau = 10 scales: keep the logits in fp32
        scaled = unit @ unit_candidates.T / temperature - math.log(pool - 1)  # (B, N)
    own = torch.arange(batch, device=z.device)
    negatives = scaled.index_put((own, own + offset), scaled.new_tensor(float("-inf")))
    positive = torch.full((batch, 1), 1.0 / temperature, device=z.device)
    return positive.squeeze(1) - torch.logsumexp(torch.cat([positive, negatives], dim=1), dim=1)


def infonce_log_prob(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float,
                     candidates: tuple[torch.Tensor, torch.Tensor] | None = None, offset: int = 0) -> torch.Tensor:
    """NT-Xent (SimCLR) log-probability of the positive view, per sample; negatives are *summed*.

    z_a, z_b: (B, L) latents of two views of the same B samples. Each latent scores its other view against
    all other latents of both views (2N-2 negatives); the two directions are averaged. `candidates`: both
    views gathered across processes, (N, L) each, holding this process's rows at offset..offset+B.
    Returns (B,). For random latents it falls like -log(2N-1): the batch-size dependence cMIM avoids.
    """
    all_a, all_b = candidates if candidates is not None else (z_a, z_b)
    batch, pool = z_a.shape[0], all_a.shape[0]
    anchors = F.normalize(torch.cat([z_a, z_b]).float(), dim=-1)  # (2B, L)
    pool_units = F.normalize(torch.cat([all_a, all_b]).float(), dim=-1)  # (2N, L)
    with torch.autocast(z_a.device.type, enabled=False):  # keep the logits in fp32 under mixed precision
        scaled = anchors @ pool_units.T / temperature  # (2B, 2N)
    local = torch.arange(batch, device=z_a.device) + offset
    own = torch.cat([local, local + pool])  # each anchor's own column
    partner = torch.cat([local + pool, local])  # its other view's column
    rows = torch.arange(2 * batch, device=z_a.device)
    scaled = scaled.index_put((rows, own), scaled.new_tensor(float("-inf")))
    log_prob = scaled[rows, partner] - torch.logsumexp(scaled, dim=1)  # (2B,)
    return 0.5 * (log_prob[:batch] + log_prob[batch:])


def sample_gaussian(mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Reparameterised sample of N(mean, exp(log_scale)^2), differentiable in both. (B, K, D) -> (B, K, D)."""
    return mean + torch.randn_like(mean) * log_scale.exp()


def labels_from_input_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                          decoder_start_token_id: int) -> torch.Tensor:
    """Reconstruction targets for an auto-encoder: the input itself, padding set to IGNORE_INDEX.

    When every row starts with the decoder start token (the SMILES tokenizer's <bos>), it is dropped, since
    the decoder is fed it and never has to predict it. (B, T) -> (B, T) or (B, T-1).
    """
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX) if attention_mask is not None \
        else input_ids.clone()
    if input_ids.shape[1] > 1 and bool((input_ids[:, 0] == decoder_start_token_id).all()):
        labels = labels[:, 1:].contiguous()  # contiguous: transformers' own losses `view` their labels
    return labels


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher-forcing decoder inputs: [start, labels[:-1]] with IGNORE_INDEX replaced by padding. (B, T)."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_token_id)


# ---------------------------------------------------------------------------------------------------------
# Attention and layers (pre-LayerNorm Transformer blocks)
# ---------------------------------------------------------------------------------------------------------


def eager_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                            **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention. query: (B, heads, Tq, hd); key, value: (B, heads, Tk, hd) -> (B, Tq, heads, hd)."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, heads, Tq, Tk)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
        else:
            weights = weights + attention_mask
    elif getattr(module, "is_causal", False) and query.shape[2] > 1:
        causal = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool, device=query.device).tril()
        weights = weights.masked_fill(~causal, torch.finfo(weights.dtype).min)
    weights = F.dropout(weights.softmax(-1), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class CMIMAttention(nn.Module):
    """Multi-head attention with fused projections, through transformers' attention interface (SDPA by
    default). Self-attention projects q, k, v with one matmul; cross-attention projects q from the queries
    and k, v (one matmul) from the memory: the encoder states (latent pooling) or the K latent tokens
    (decoder), so decoder cross-attention costs O(T*K).
    """

    def __init__(self, config: CMIMConfig, hidden_size: int, num_heads: int, *, is_causal: bool,
                 is_cross_attention: bool, layer_idx: int | None = None, single_key: bool = False):
        super().__init__()
        self.config = config
        # Cross-attention to a memory of one position (the decoder with K=1 latent token): the softmax over
        # one key is 1, so every query receives that key's value and no query projection exists.
        self.single_key = single_key
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim ** -0.5
        self.is_causal = is_causal  # SDPA reads this; a missing attribute counts as causal
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx
        self.dropout = config.attention_dropout
        if is_cross_attention:
            if not single_key:
                self.q_proj = nn.Linear(hidden_size, hidden_size)
            self.kv_proj = nn.Linear(hidden_size, 2 * hidden_size)  # with a single key only v is used
        else:
            self.qkv_proj = nn.Linear(hidden_size, 3 * hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, heads, T, hd)."""
        return states.view(*states.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor, memory: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, cache: Cache | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states: (B, T, H); memory: (B, S, H) for cross-attention. Returns the output (B, T, H) and,
        with `output_attentions` (computed by the eager path then), the weights (B, heads, T, S)."""
        batch, length, _ = hidden_states.shape
        if self.single_key:
            weights = hidden_states.new_ones(batch, self.num_heads, length, 1) if output_attentions else None
            return self._attend_to_single_key(batch, length, memory), weights
        layer_cache, cross_is_cached = None, False
        if cache is not None:
            if isinstance(cache, EncoderDecoderCache):
                cross_is_cached = self.is_cross_attention and cache.is_updated.get(self.layer_idx, False)
                layer_cache = cache.cross_attention_cache if self.is_cross_attention else cache.self_attention_cache
            else:
                layer_cache = cache

        if self.is_cross_attention:
            query = self._heads(self.q_proj(hidden_states))
            if cross_is_cached:  # the latent memory does not change while decoding: reuse its keys/values
                key = layer_cache.layers[self.layer_idx].keys
                value = layer_cache.layers[self.layer_idx].values
            else:
                key, value = self.kv_proj(memory).chunk(2, dim=-1)
                key, value = self._heads(key), self._heads(value)
                if layer_cache is not None:
                    key, value = layer_cache.update(key, value, self.layer_idx)
                    cache.is_updated[self.layer_idx] = True
        else:
            query, key, value = (self._heads(part) for part in self.qkv_proj(hidden_states).chunk(3, dim=-1))
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)

        attention: Callable = eager_attention_forward if output_attentions else \
            ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        output, weights = attention(self, query, key, value, attention_mask, scaling=self.scaling,
                                    dropout=self.dropout if self.training else 0.0)
        return self.out_proj(output.reshape(batch, length, -1)), weights  # (B, T, H)

    def _attend_to_single_key(self, batch: int, length: int, memory: torch.Tensor) -> torch.Tensor:
        """Exact attention to a memory of one position (B, 1, H): out_proj(v) for every query, so the
        query projection, the (T x 1) scores and T copies of out_proj are never computed. Returns (B, T, H)."""
        if memory.shape[1] != 1:
            raise ValueError(f"single-key cross-attention needs a memory of 1 position, got {tuple(memory.shape)}")
        width = self.out_proj.in_features
        value = F.linear(memory, self.kv_proj.weight[width:], self.kv_proj.bias[width:])  # (B, 1, H)
        if self.training and self.dropout > 0:
            # Attention dropout drops the single weight of each (query, head) pair.
            keep = F.dropout(value.new_ones(batch, length, self.num_heads, 1), self.dropout, training=True)
            mixed = (keep * value.view(batch, 1, self.num_heads, self.head_dim)).reshape(batch, length, width)
            return self.out_proj(mixed)
        return self.out_proj(value).expand(batch, length, width)


class CMIMFeedForward(nn.Module):
    def __init__(self, config: CMIMConfig, hidden_size: int, ffn_dim: int):
        super().__init__()
        self.fc_in = nn.Linear(hidden_size, ffn_dim)
        self.act = ACT2FN[config.activation_function]
        self.fc_out = nn.Linear(ffn_dim, hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.dropout(self.act(self.fc_in(hidden_states))))


class CMIMEncoderLayer(GradientCheckpointingLayer):
    """Bidirectional self-attention + feed-forward, pre-LayerNorm."""

    def __init__(self, config: CMIMConfig):
        super().__init__()
        width = config.encoder_hidden_size
        self.self_attn_norm = nn.LayerNorm(width)
        self.self_attn = CMIMAttention(config, width, config.encoder_attention_heads, is_causal=False,
                                       is_cross_attention=False)
        self.ffn_norm = nn.LayerNorm(width)
        self.ffn = CMIMFeedForward(config, width, config.encoder_ffn_dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the new states (B, T, H) and the self-attention weights (with `output_attentions`)."""
        attended, weights = self.self_attn(self.self_attn_norm(hidden_states), attention_mask=attention_mask,
                                           output_attentions=output_attentions)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.ffn(self.ffn_norm(hidden_states))), weights


class CMIMDecoderLayer(GradientCheckpointingLayer):
    """Causal self-attention + cross-attention to the K latent tokens + feed-forward, pre-LayerNorm."""

    def __init__(self, config: CMIMConfig, layer_idx: int):
        super().__init__()
        width, heads = config.decoder_hidden_size, config.decoder_attention_heads
        self.self_attn_norm = nn.LayerNorm(width)
        self.self_attn = CMIMAttention(config, width, heads, is_causal=True, is_cross_attention=False,
                                       layer_idx=layer_idx)
        single_key = config.latent_tokens == 1  # then the cross-attention ignores its queries: no norm for them
        self.cross_attn_norm = nn.Identity() if single_key else nn.LayerNorm(width)
        self.cross_attn = CMIMAttention(config, width, heads, is_causal=False, is_cross_attention=True,
                                        layer_idx=layer_idx, single_key=single_key)
        self.ffn_norm = nn.LayerNorm(width)
        self.ffn = CMIMFeedForward(config, width, config.decoder_ffn_dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor, latent_memory: torch.Tensor,
                attention_mask: torch.Tensor | None = None, cache: Cache | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns the new states (B, T, H) and the self- and cross-attention weights (with
        `output_attentions`)."""
        attended, self_weights = self.self_attn(self.self_attn_norm(hidden_states), attention_mask=attention_mask,
                                                cache=cache, output_attentions=output_attentions)
        hidden_states = hidden_states + self.dropout(attended)
        attended, cross_weights = self.cross_attn(self.cross_attn_norm(hidden_states), memory=latent_memory,
                                                  cache=cache, output_attentions=output_attentions)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.ffn(self.ffn_norm(hidden_states))), self_weights, cross_weights


class CMIMLatentHead(nn.Module):
    """Pools the variable-length encoder states into the K x D Gaussian posterior parameters.

    "perceiver": K learned queries cross-attend to the encoder states (MolMIM's pooling), then a
    feed-forward block; "mean": masked mean over tokens, then a linear map to K latent tokens.
    """

    def __init__(self, config: CMIMConfig):
        super().__init__()
        width, k, d = config.encoder_hidden_size, config.latent_tokens, config.latent_size
        self.pooling = config.latent_pooling
        self.latent_tokens = k
        self.min_log_scale = config.min_log_scale
        if self.pooling == "perceiver":
            self.queries = nn.Parameter(torch.empty(k, width))
            self.query_norm = nn.LayerNorm(width)
            self.cross_attn = CMIMAttention(config, width, config.encoder_attention_heads, is_causal=False,
                                            is_cross_attention=True)
            self.ffn_norm = nn.LayerNorm(width)
            self.ffn = CMIMFeedForward(config, width, config.encoder_ffn_dim)
            self.to_params = nn.Linear(width, 2 * d)
        else:
            self.to_params = nn.Linear(width, 2 * k * d)
        self.out_norm = nn.LayerNorm(width)

    def forward(self, encoder_states: torch.Tensor, attention_mask: torch.Tensor | None,
                config: CMIMConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """encoder_states: (B, T, H); attention_mask: (B, T). Returns mean, log_scale: (B, K, D)."""
        batch = encoder_states.shape[0]
        if self.pooling == "perceiver":
            queries = self.queries.unsqueeze(0).expand(batch, -1, -1)  # (B, K, H)
            cross_mask = create_bidirectional_mask(config=config, inputs_embeds=queries,
                                                   attention_mask=attention_mask,
                                                   encoder_hidden_states=encoder_states)
            pooled = queries + self.cross_attn(self.query_norm(queries), memory=encoder_states,
                                               attention_mask=cross_mask)[0]
            pooled = pooled + self.ffn(self.ffn_norm(pooled))  # (B, K, H)
            params = self.to_params(self.out_norm(pooled))  # (B, K, 2D)
        else:
            if attention_mask is None:
                pooled = encoder_states.mean(1)
            else:
                weights = attention_mask.to(encoder_states.dtype).unsqueeze(-1)  # (B, T, 1)
                pooled = (encoder_states * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, H)
            params = self.to_params(self.out_norm(pooled)).view(batch, self.latent_tokens, -1)  # (B, K, 2D)
        mean, log_scale = params.chunk(2, dim=-1)
        return mean, log_scale.clamp(min=self.min_log_scale)


# ---------------------------------------------------------------------------------------------------------
# Pretrained base
# ---------------------------------------------------------------------------------------------------------


class CMIMPreTrainedModel(PreTrainedModel):
    config: CMIMConfig
    config_class = CMIMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CMIMEncoderLayer", "CMIMDecoderLayer"]
    _supports_sdpa = True
    # K=1 checkpoints saved before single-key cross-attention hold a query projection and norm that the exact
    # single-key path does not need (its output never depended on them).
    _keys_to_ignore_on_load_unexpected = [r"cross_attn\.q_proj\.", r"cross_attn_norm\."]

    def _init_weights(self, module: nn.Module) -> None:
        """Every weight is initialised here: normal(init_std) for projections and embeddings, LayerNorm to
        identity, biases to zero."""
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, CMIMLatentHead) and module.pooling == "perceiver":
            init.normal_(module.queries, mean=0.0, std=std)
        elif isinstance(module, (CMIMDecoder, CMIMLatentMemory)):
            init.normal_(module.latent_positions, mean=0.0, std=std)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the auto classes and the feature-extraction pipeline in the
        config, so that the folder loads without this package."""
        self.config.auto_map = dict(AUTO_MAP)
        pipeline_source = self._pipeline_source()
        if pipeline_source is None:
            warnings.warn(f"{PIPELINE_FILE} was found neither beside {Path(__file__).name} nor in "
                          f"{self.name_or_path!r}: the folder is saved without its feature-extraction pipeline",
                          stacklevel=2)
        self.config.custom_pipelines = dict(CUSTOM_PIPELINES) if pipeline_source is not None else None
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if pipeline_source is not None:
            shutil.copyfile(pipeline_source, Path(save_directory) / PIPELINE_FILE)
        for name, content in sentence_transformers_files(self.config).items():
            (Path(save_directory) / name).write_text(json.dumps(content, indent=2) + "\n")
        return result

    def _pipeline_source(self) -> Path | None:
        """The pipeline file to copy: beside this module (an installed package), else in the folder or Hub repo
        the model was loaded from (a model loaded as remote code: transformers copies only the model's own
        files into its module cache)."""
        beside = Path(__file__).with_name(PIPELINE_FILE)
        if beside.is_file():
            return beside
        if not self.name_or_path:
            return None
        from transformers.utils import cached_file

        found = cached_file(self.name_or_path, PIPELINE_FILE, _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
        return Path(found) if found else None

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """`PreTrainedModel.resize_token_embeddings` for every token matrix: the encoder's own embedding, the
        decoder's and the output layer tied to it (a backbone resizes its shared embedding and head itself).
        Returns the decoder's new input embedding."""
        base = getattr(self, self.base_model_prefix, self)  # the CMIMModel, under a head or itself
        if base.has_backbone:
            embeddings = base.backbone.resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        else:
            embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
            base.encoder.embed_tokens = self._get_resized_embeddings(base.encoder.embed_tokens,
                                                                     embeddings.num_embeddings,
                                                                     mean_resizing=mean_resizing)
        self.config.vocab_size = embeddings.num_embeddings
        return embeddings

    def _check_input_ids(self, input_ids: torch.Tensor | None, name: str = "input_ids") -> None:
        """Fail early with expected vs actual instead of an opaque index error deep inside."""
        if input_ids is None:
            return
        if input_ids.dim() != 2:
            raise ValueError(f"`{name}` must have shape (batch, length), got {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"`{name}` has length {input_ids.shape[1]}, longer than the model's "
                             f"max_position_embeddings={self.config.max_position_embeddings}; truncate it")


# ---------------------------------------------------------------------------------------------------------
# Encoder and decoder
# ---------------------------------------------------------------------------------------------------------


class CMIMEncoder(CMIMPreTrainedModel):
    """Tokens -> Transformer encoder -> latent head -> q(z|x) = N(mu, diag sigma^2) over K x D."""

    def __init__(self, config: CMIMConfig):
        super().__init__(config)
        width = config.encoder_hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, width)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([CMIMEncoderLayer(config) for _ in range(config.encoder_layers)])
        self.final_norm = nn.LayerNorm(width)
        self.latent_head = CMIMLatentHead(config)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                sample_latent: bool = False, output_hidden_states: bool = False, output_attentions: bool = False,
                **kwargs) -> CMIMEncoderOutput:
        """input_ids, attention_mask: (B, T). With `sample_latent`, `last_hidden_state` is a reparameterised
        sample of q(z|x); otherwise it is the mean. `**kwargs` absorbs what `generate` passes."""
        self._check_input_ids(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.dropout(self.embed_tokens(input_ids) + self.embed_positions(positions))  # (B, T, H)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)
        all_states, all_weights = [hidden], []
        for layer in self.layers:
            hidden, weights = layer(hidden, attention_mask=mask, output_attentions=output_attentions)
            all_states.append(hidden)
            all_weights.append(weights)
        states = self.final_norm(hidden)
        mean, log_scale = self.latent_head(states, attention_mask, self.config)  # (B, K, D)
        return CMIMEncoderOutput(last_hidden_state=sample_gaussian(mean, log_scale) if sample_latent else mean,
                                 latent_mean=mean, latent_log_scale=log_scale, encoder_states=states,
                                 hidden_states=tuple(all_states[:-1]) + (states,) if output_hidden_states else None,
                                 attentions=tuple(all_weights) if output_attentions else None)


class CMIMDecoder(CMIMPreTrainedModel):
    """Autoregressive Transformer decoder that cross-attends to the K latent tokens projected to its width."""

    def __init__(self, config: CMIMConfig):
        super().__init__(config)
        width = config.decoder_hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, width)
        self.latent_proj = nn.Linear(config.latent_size, width)
        self.latent_positions = nn.Parameter(torch.empty(config.latent_tokens, width))
        self.latent_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([CMIMDecoderLayer(config, i) for i in range(config.decoder_layers)])
        self.final_norm = nn.LayerNorm(width)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, latents: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: Cache | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> BaseModelOutputWithPastAndCrossAttentions:
        """input_ids: (B, T) decoder inputs; latents: (B, K, D). Returns the last hidden states (B, T, H) and,
        when asked, every layer's states (the last one after the final norm) and attention weights.

        `attention_mask` may be left None for right-padded batches: with causal attention, padding only ever
        influences padding positions, which the losses and pooling ignore.
        """
        past_length = cache.get_seq_length() if cache is not None else 0
        positions = torch.arange(past_length, past_length + input_ids.shape[1], device=input_ids.device)
        hidden = self.dropout(self.embed_tokens(input_ids) + self.embed_positions(positions))  # (B, T, H)
        memory = self.latent_norm(self.latent_proj(latents.to(hidden.dtype)) + self.latent_positions)  # (B, K, H)
        self_attn_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        mask = create_causal_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask,
                                  cache=self_attn_cache)
        all_states, self_weights, cross_weights = [hidden], [], []
        for layer in self.layers:
            hidden, weights, cross = layer(hidden, memory, attention_mask=mask, cache=cache,
                                           output_attentions=output_attentions)
            all_states.append(hidden)
            self_weights.append(weights)
            cross_weights.append(cross)
        hidden = self.final_norm(hidden)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden, cache=cache,
            hidden_states=tuple(all_states[:-1]) + (hidden,) if output_hidden_states else None,
            attentions=tuple(self_weights) if output_attentions else None,
            cross_attentions=tuple(cross_weights) if output_attentions else None)


# ---------------------------------------------------------------------------------------------------------
# Transformers backbones: BART, T5, MBart, Marian, Pegasus, ... as the encoder and decoder
# ---------------------------------------------------------------------------------------------------------


def check_encoder_decoder(model: PreTrainedModel, what: str = "the model") -> None:
    """Refuse a model that is not an encoder-decoder whose decoder can cross-attend to a given memory."""
    config = model.config
    if not getattr(config, "is_encoder_decoder", False) or not hasattr(model, "get_encoder"):
        raise ValueError(f"{what} is a {type(model).__name__} (model_type {getattr(config, 'model_type', None)!r}), "
                         "not an encoder-decoder: expected a transformers sequence-to-sequence model such as BART, "
                         "T5, MBart, Marian or Pegasus (an AutoModelForSeq2SeqLM)")
    decoder_inputs = inspect.signature(model.get_decoder().forward).parameters
    if "encoder_hidden_states" not in decoder_inputs:
        raise ValueError(f"{what} ({type(model).__name__}) has a decoder that cannot take a memory to cross-attend "
                         "to (its forward has no `encoder_hidden_states`), so it cannot be conditioned on the latent")


def build_backbone(backbone_config) -> PreTrainedModel:
    """A freshly initialised transformers encoder-decoder (with its language-model head) from its config."""
    backbone = AutoModelForSeq2SeqLM.from_config(backbone_config)
    check_encoder_decoder(backbone, "the backbone")
    return backbone


class CMIMLatentMemory(nn.Module):
    """z (B, K, D) -> the K memory tokens (B, K, H) a backbone's decoder cross-attends to: a projection to its
    width, a learned position per latent token, and a LayerNorm (as the native decoder does inline)."""

    def __init__(self, config: CMIMConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.latent_proj = nn.Linear(config.latent_size, width)
        self.latent_positions = nn.Parameter(torch.empty(config.latent_tokens, width))
        self.latent_norm = nn.LayerNorm(width)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.latent_norm(self.latent_proj(latents.to(self.latent_proj.weight.dtype)) + self.latent_positions)


class CMIMLatentEncoder(nn.Module):
    """What `get_encoder()` returns for a backbone model (generate calls it): input_ids -> CMIMEncoderOutput
    through the backbone's encoder and the latent head. It holds a plain reference to the model, so it is not
    a submodule and adds nothing to the state dict."""

    main_input_name = "input_ids"

    def __init__(self, model: "CMIMModel"):
        super().__init__()
        object.__setattr__(self, "owner", model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                sample_latent: bool = False, **kwargs) -> CMIMEncoderOutput:
        return self.owner.encode_latents(input_ids, attention_mask, sample_latent=sample_latent)


# ---------------------------------------------------------------------------------------------------------
# Informative embeddings of any encoder-decoder (cMIM or not), without training
# ---------------------------------------------------------------------------------------------------------


def masked_mean(states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `states` (B, T, H) over the positions where `mask` (B, T) is nonzero. Returns (B, H)."""
    if mask is None:
        return states.mean(1)
    weights = mask.to(states.dtype).unsqueeze(-1)  # (B, T, 1)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


def decoder_start_token(config) -> int:
    """The token a decoder starts from; T5-style configs that leave it unset start from the pad token."""
    start = getattr(config, "decoder_start_token_id", None)
    return config.pad_token_id if start is None else start


def teacher_forcing_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                           config) -> tuple[torch.Tensor, torch.Tensor]:
    """How the decoder half of an informative embedding reads the input: the decoder is teacher-forced on the
    input itself, and its states are pooled over the positions whose next token is a real one, i.e. exactly the
    positions that predict x. Returns the decoder inputs (B, T') and that pooling mask (B, T').

    Inputs must be right-padded: causal attention then keeps padding from influencing real positions, so the
    pooled states do not depend on padding or on the other rows of the batch.
    """
    if attention_mask is not None and input_ids.shape[1] > 0 and bool((attention_mask[:, 0] == 0).any()):
        raise ValueError("informative embeddings need right-padded inputs (or an all-padding row was given): "
                         "tokenize with padding_side='right'")
    start = decoder_start_token(config)
    labels = labels_from_input_ids(input_ids, attention_mask, start)
    return shift_tokens_right(labels, config.pad_token_id, start), labels != IGNORE_INDEX


def is_cmim(config) -> bool:
    """Whether a model config is a cMIM model's (else: a plain transformers encoder-decoder)."""
    return getattr(config, "model_type", None) == "cmim"


def embedding_kinds(config) -> tuple[str, ...]:
    """The embedding kinds a model offers: all of `EMBEDDING_KINDS` for cMIM models; a plain encoder-decoder
    has no latent."""
    return EMBEDDING_KINDS if is_cmim(config) else tuple(k for k in EMBEDDING_KINDS if k != "latent")


def check_embedding_kind(kind: str, config=None) -> None:
    """ValueError unless `kind` is an embedding kind (one the model of `config` offers, when it is given)."""
    kinds = EMBEDDING_KINDS if config is None else embedding_kinds(config)
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}"
                         + ("; 'latent' needs a cMIM model" if kind == "latent" else ""))


def embedding_size(config, kind: str = "informative") -> int:
    """Width of the `kind` embedding of a model with this config. cMIM: K*D + H, K*D, H or H_enc; a plain
    encoder-decoder of width H: informative [encoder ; decoder] 2H, decoder H, encoder H."""
    check_embedding_kind(kind, config)
    if is_cmim(config):
        return {"informative": config.embedding_size, "latent": config.latent_dim,
                "decoder": config.decoder_hidden_size, "encoder": config.encoder_hidden_size}[kind]
    width = getattr(config, "d_model", None) or config.hidden_size
    return 2 * width if kind == "informative" else width


@torch.no_grad()
def seq2seq_embedding(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      kind: str = "informative") -> torch.Tensor:
    """One vector per sequence from any transformers encoder-decoder, with no training (cMIM's "informative
    embeddings", which apply to any encoder-decoder). Computed in eval mode, without gradient.

    For a plain encoder-decoder (BART, T5, ...: an `AutoModel` or `AutoModelForSeq2SeqLM`):
        "encoder": masked mean of the encoder's last hidden states (B, H_enc);
        "decoder": the decoder teacher-forced on the input, conditioned on the full encoder output, its last
            hidden states mean-pooled over the positions that predict a real token (B, H_dec);
        "informative" (default): their concatenation [encoder ; decoder] (B, H_enc + H_dec).
    A cMIM model (`config.model_type == "cmim"`) uses its own `embed`, where the decoder is conditioned on
    z = mu and "informative" is [mu ; decoder]; it also offers "latent" (mu).

    input_ids, attention_mask: (B, T), right-padded. Returns (B, E).
    """
    if is_cmim(model.config):
        return model.embed(input_ids, attention_mask, kind=kind)
    if kind not in EMBEDDING_KINDS or kind == "latent":
        raise ValueError(f"`kind` must be one of ('informative', 'decoder', 'encoder') for a plain encoder-decoder "
                         f"({type(model).__name__}); 'latent' needs a cMIM model. Got {kind!r}")
    check_encoder_decoder(model)
    was_training = model.training
    model.eval()
    try:
        states = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        encoder_mean = masked_mean(states, attention_mask)  # (B, H_enc)
        if kind == "encoder":
            return encoder_mean

        decoder_inputs, predicts_real = teacher_forcing_inputs(input_ids, attention_mask, model.config)
        hidden = model.get_decoder()(input_ids=decoder_inputs, encoder_hidden_states=states,
                                     encoder_attention_mask=attention_mask, use_cache=False).last_hidden_state
        decoder_mean = masked_mean(hidden, predicts_real)  # (B, H_dec)
        return decoder_mean if kind == "decoder" else torch.cat([encoder_mean, decoder_mean], dim=-1)
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------------------
# Base model: embeddings
# ---------------------------------------------------------------------------------------------------------


class CMIMModel(CMIMPreTrainedModel):
    """Encoder + latent head + decoder, returning the informative embedding (`AutoModel`).

    The encoder and decoder are this package's (`CMIMEncoder`, `CMIMDecoder`) or, with
    `config.backbone_config`, a transformers encoder-decoder's (`self.backbone`, with `latent_head` on its
    encoder states and `latent_memory` feeding its decoder). The informative embedding runs the decoder
    teacher-forced on the input itself, conditioned on z = mu(x), masked-mean-pools its last hidden states and
    concatenates mu: e(x) = [mu(x) ; mean_t h_t(x, mu(x))] (see `teacher_forced_decoder_mean`).
    """

    def __init__(self, config: CMIMConfig):
        super().__init__(config)
        if config.backbone_config is None:
            self.encoder = CMIMEncoder(config)
            self.decoder = CMIMDecoder(config)
        else:
            self.backbone = build_backbone(config.backbone_config)
            config.backbone_config = self.backbone.config  # one object: a resize updates what is saved
            self.latent_head = CMIMLatentHead(config)
            self.latent_memory = CMIMLatentMemory(config)
        self.post_init()

    @property
    def has_backbone(self) -> bool:
        return self.config.backbone_config is not None

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.get_input_embeddings() if self.has_backbone else self.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        if self.has_backbone:
            self.backbone.set_input_embeddings(value)
        else:
            self.decoder.embed_tokens = value

    def get_encoder(self) -> nn.Module:
        return CMIMLatentEncoder(self) if self.has_backbone else self.encoder

    def encode_latents(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       sample_latent: bool = False, output_hidden_states: bool = False,
                       output_attentions: bool = False) -> CMIMEncoderOutput:
        """q(z|x): input_ids, attention_mask (B, T) -> CMIMEncoderOutput with mu, log sigma (B, K, D), the
        latent to decode from (a sample with `sample_latent`, else mu) and the encoder states (B, T, H)."""
        if not self.has_backbone:
            return self.encoder(input_ids, attention_mask, sample_latent=sample_latent,
                                output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        self._check_input_ids(input_ids)
        encoded = self.backbone.get_encoder()(input_ids=input_ids, attention_mask=attention_mask,
                                              output_hidden_states=output_hidden_states,
                                              output_attentions=output_attentions)
        states = encoded.last_hidden_state
        mean, log_scale = self.latent_head(states, attention_mask, self.config)  # (B, K, D)
        return CMIMEncoderOutput(last_hidden_state=sample_gaussian(mean, log_scale) if sample_latent else mean,
                                 latent_mean=mean, latent_log_scale=log_scale, encoder_states=states,
                                 hidden_states=encoded.hidden_states, attentions=encoded.attentions)

    def run_decoder(self, decoder_input_ids: torch.Tensor, latents: torch.Tensor, cache: Cache | None = None,
                    output_hidden_states: bool = False,
                    output_attentions: bool = False) -> BaseModelOutputWithPastAndCrossAttentions:
        """The decoder on inputs (B, T) given latents (B, K, D): last hidden states (B, T, H) and, when asked,
        every layer's states and attention weights."""
        if not self.has_backbone:
            return self.decoder(decoder_input_ids, latents, cache=cache, output_hidden_states=output_hidden_states,
                                output_attentions=output_attentions)
        return self.backbone.get_decoder()(input_ids=decoder_input_ids, encoder_hidden_states=self.latent_memory(latents),
                                           cache=cache, use_cache=cache is not None,
                                           output_hidden_states=output_hidden_states,
                                           output_attentions=output_attentions)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> CMIMModelOutput | tuple:
        """input_ids, attention_mask: (B, T), right-padded. Deterministic (z = mu): the decoder runs teacher-forced
        on the input. Extra tokenizer outputs such as `token_type_ids` are ignored so that any feature-extraction
        pipeline can call it. `output_hidden_states`, `output_attentions` and `return_dict` work as in BART."""
        config = self.config
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoded = self.encode_latents(input_ids, attention_mask, output_hidden_states=output_hidden_states,
                                      output_attentions=output_attentions)
        mean = encoded.latent_mean
        decoder_inputs, predicts_real = teacher_forcing_inputs(input_ids, attention_mask, config)
        decoded = self.run_decoder(decoder_inputs, mean, output_hidden_states=output_hidden_states,
                                   output_attentions=output_attentions)
        pooled = masked_mean(decoded.last_hidden_state, predicts_real)  # (B, H)
        output = CMIMModelOutput(
            embedding=torch.cat([mean.flatten(1), pooled], dim=-1),  # (B, K*D + H)
            last_hidden_state=decoded.last_hidden_state, latent_mean=mean,
            latent_log_scale=encoded.latent_log_scale, decoder_pooled=pooled,
            encoder_pooled=masked_mean(encoded.encoder_states, attention_mask),
            decoder_hidden_states=decoded.hidden_states, decoder_attentions=decoded.attentions,
            cross_attentions=decoded.cross_attentions, encoder_last_hidden_state=encoded.encoder_states,
            encoder_hidden_states=encoded.hidden_states, encoder_attentions=encoded.attentions)
        return output if (config.return_dict if return_dict is None else return_dict) else output.to_tuple()

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          **kwargs) -> BaseModelOutputWithPooling:
        """The informative embedding as `pooler_output` (B, E): what sentence-transformers reads (the saved
        folder's `sentence_bert_config.json` names this method)."""
        return BaseModelOutputWithPooling(pooler_output=self(input_ids, attention_mask, return_dict=True).embedding)

    @torch.no_grad()
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
              kind: str = "informative") -> torch.Tensor:
        """Deterministic embedding without gradient, computed in eval mode (no dropout).

        kind: "informative" [mu ; decoder] (B, K*D + H), "latent" mu flattened (B, K*D), "decoder" pooled
        decoder states (B, H) or "encoder" pooled encoder states (B, H_enc).
        """
        if kind not in EMBEDDING_KINDS:
            raise ValueError(f"`kind` must be one of {EMBEDDING_KINDS}, got {kind!r}")
        was_training = self.training
        self.eval()
        try:
            if kind in ("latent", "encoder"):
                encoded = self.encode_latents(input_ids, attention_mask)
                if kind == "latent":
                    return encoded.latent_mean.flatten(1)
                return masked_mean(encoded.encoder_states, attention_mask)
            outputs = self(input_ids, attention_mask, return_dict=True)
            return outputs.embedding if kind == "informative" else outputs.decoder_pooled
        finally:
            self.train(was_training)


# ---------------------------------------------------------------------------------------------------------
# Generation head: objectives and the latent API
# ---------------------------------------------------------------------------------------------------------


class CMIMForConditionalGeneration(CMIMPreTrainedModel, GenerationMixin):
    """The auto-encoder with a language-model head (`AutoModelForSeq2SeqLM`): training objectives,
    reconstruction through `generate`, and the latent API (encode, decode, sample, interpolate)."""

    _tied_weights_keys = {"lm_head.weight": "model.decoder.embed_tokens.weight"}

    def __init__(self, config: CMIMConfig):
        super().__init__(config)
        self.model = CMIMModel(config)
        if config.backbone_config is None:
            self.lm_head = nn.Linear(config.decoder_hidden_size, config.vocab_size, bias=False)
        else:  # the backbone keeps its own language-model head (and ties it as its config says)
            self._tied_weights_keys = None
        self.post_init()
        # SMILES are longer than generate's default of 20 new tokens; the start token takes one position.
        if self.generation_config is not None:
            self.generation_config.max_new_tokens = config.max_position_embeddings - 1

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.model.backbone.get_output_embeddings() if self.model.has_backbone else self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        if self.model.has_backbone:
            self.model.backbone.set_output_embeddings(value)
        else:
            self.lm_head = value

    def get_encoder(self) -> nn.Module:
        return self.model.get_encoder()

    @classmethod
    def from_backbone(cls, backbone: "str | PreTrainedModel", **config_kwargs) -> "CMIMForConditionalGeneration":
        """cMIM heads on a pretrained transformers encoder-decoder, keeping its weights bit for bit.

        backbone: a folder or Hub id of an `AutoModelForSeq2SeqLM` (BART, T5, MBart, Marian, Pegasus, ...), or
            the model itself. config_kwargs: the other `CMIMConfig` fields (latent_tokens, latent_size,
            latent_pooling, objective, ...). The latent head and the latent memory start fresh.
        """
        if not isinstance(backbone, PreTrainedModel):
            from transformers import AutoConfig

            backbone_config = AutoConfig.from_pretrained(backbone)
            if not getattr(backbone_config, "is_encoder_decoder", False):
                raise ValueError(f"{backbone} holds a {type(backbone_config).__name__} (model_type "
                                 f"{backbone_config.model_type!r}), not an encoder-decoder: expected a transformers "
                                 "sequence-to-sequence model such as BART, T5, MBart, Marian or Pegasus")
            backbone = AutoModelForSeq2SeqLM.from_pretrained(backbone)
        check_encoder_decoder(backbone, "the backbone")
        model = cls(CMIMConfig(backbone_config=backbone.config.to_dict(), **config_kwargs))
        model.model.backbone.load_state_dict(backbone.state_dict())
        return model.to(backbone.dtype)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        encoder_outputs: CMIMEncoderOutput | tuple | None = None,
        labels: torch.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool | None = None,
        input_ids_view2: torch.Tensor | None = None,
        attention_mask_view2: torch.Tensor | None = None,
        latent_loss_weight: float | torch.Tensor = 1.0,
        sample_latent: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CMIMSeq2SeqLMOutput | tuple:
        """Teacher-forced decoding of x given z, with the objective when `labels` are given.

        Args:
            input_ids, attention_mask: (B, T) the sequences to encode.
            decoder_input_ids: (B, T') decoder inputs; by default `labels` shifted right.
            encoder_outputs: a [`CMIMEncoderOutput`] (or tuple whose first item is the latent (B, K, D)) to
                decode from instead of encoding `input_ids`; `generate` passes it.
            labels: (B, T') reconstruction targets with IGNORE_INDEX at padding (see `labels_from_input_ids`).
                The auto-encoder habit `labels=input_ids` (pads at -100, as `DataCollatorForSeq2Seq` makes them)
                means the same: a leading decoder start token on every row is dropped, since the decoder is
                fed it and never predicts it. In training mode a `config.decoder_input_dropout` fraction of the
                teacher-forcing inputs made from the labels is replaced (word dropout).
            cache, use_cache: decoder key/value cache for generation.
            input_ids_view2, attention_mask_view2: (B, T2) a second view of each sample (InfoNCE only; outside
                training they may be left out, and the loss then leaves the InfoNCE term out).
            latent_loss_weight: multiplies the latent terms (MIM log-densities, VAE KL), for MolMIM's
                linear warm-up from 0 to 1; the reconstruction and contrastive terms are not scaled.
            sample_latent: decode from a sample of q(z|x) (True) or from z = mu (False, deterministic: how
                reconstruction is evaluated). Default: sample when `labels` are given, unless the objective
                is "ae".
            output_hidden_states, output_attentions, return_dict: as in BART.
        """
        config = self.config
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        if labels is not None:
            labels = self._as_targets(labels)
            if decoder_input_ids is not None and decoder_input_ids.shape != labels.shape:
                raise ValueError(f"`labels` {tuple(labels.shape)} and `decoder_input_ids` "
                                 f"{tuple(decoder_input_ids.shape)} must have the same shape (after dropping the "
                                 "labels' leading start token); pass labels only and the inputs are made from them")
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
            if self.training and config.decoder_input_dropout > 0:
                replacement = config.mask_token_id if config.mask_token_id is not None else config.pad_token_id
                decoder_input_ids = drop_decoder_inputs(decoder_input_ids, config.decoder_input_dropout,
                                                        replacement, config.pad_token_id)
        if decoder_input_ids is None:
            raise ValueError("pass `labels` (training) or `decoder_input_ids` (decoding) to "
                             "CMIMForConditionalGeneration.forward; for embeddings use `embed`")
        self._check_input_ids(decoder_input_ids, "decoder_input_ids")
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("pass `input_ids` or `encoder_outputs`")
            if sample_latent is None:
                sample_latent = labels is not None and config.objective != "ae"
            encoder_outputs = self.model.encode_latents(input_ids, attention_mask, sample_latent=sample_latent,
                                                        output_hidden_states=output_hidden_states,
                                                        output_attentions=output_attentions)
        elif not isinstance(encoder_outputs, CMIMEncoderOutput):
            encoder_outputs = CMIMEncoderOutput(*encoder_outputs)
        latent = encoder_outputs.last_hidden_state  # (B, K, D)

        if use_cache and cache is None and not self.training:
            cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
        output = self._decode(decoder_input_ids, latent, cache if use_cache else None, output_hidden_states,
                              output_attentions)
        output.latent_mean, output.latent_log_scale = encoder_outputs.latent_mean, encoder_outputs.latent_log_scale
        output.encoder_last_hidden_state = encoder_outputs.encoder_states
        output.encoder_hidden_states, output.encoder_attentions = encoder_outputs.hidden_states, encoder_outputs.attentions
        if labels is not None:
            self._add_loss(output, labels, attention_mask, input_ids_view2, attention_mask_view2,
                           latent_loss_weight)
        if not (config.return_dict if return_dict is None else return_dict):
            # fields filled after construction (the loss) must still come first, in the dataclass's order
            return type(output)(**{name: getattr(output, name) for name in output.__dataclass_fields__}).to_tuple()
        return output

    def _as_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels written as the input itself (every row starting with the decoder start token) lose that token."""
        start = self.config.decoder_start_token_id
        if labels.dim() == 2 and labels.shape[1] > 1 and bool((labels[:, 0] == start).all()):
            return labels[:, 1:]
        return labels

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """What `DataCollatorForSeq2Seq(model=...)` calls: the teacher-forcing inputs `forward` makes itself."""
        return shift_tokens_right(self._as_targets(labels), self.config.pad_token_id, self.config.decoder_start_token_id)

    def _decode(self, decoder_input_ids: torch.Tensor, latent: torch.Tensor, cache: Cache | None,
                output_hidden_states: bool, output_attentions: bool) -> CMIMSeq2SeqLMOutput:
        """Next-token logits (B, T', V) given the latent (B, K, D), with the decoder's states and attentions when
        asked. A backbone computes the logits with its own head (BART's final_logits_bias, T5's rescaling,
        ...), fed the latent memory as its encoder output."""
        if not self.model.has_backbone:
            decoded = self.model.run_decoder(decoder_input_ids, latent, cache=cache,
                                             output_hidden_states=output_hidden_states,
                                             output_attentions=output_attentions)
            return CMIMSeq2SeqLMOutput(logits=self.lm_head(decoded.last_hidden_state), cache=cache, latent_sample=latent,
                                       decoder_hidden_states=decoded.hidden_states,
                                       decoder_attentions=decoded.attentions, cross_attentions=decoded.cross_attentions)
        memory = BaseModelOutput(last_hidden_state=self.model.latent_memory(latent))  # (B, K, H)
        decoded = self.model.backbone(encoder_outputs=memory, decoder_input_ids=decoder_input_ids, cache=cache,
                                      use_cache=cache is not None, output_hidden_states=output_hidden_states,
                                      output_attentions=output_attentions)
        return CMIMSeq2SeqLMOutput(logits=decoded.logits, cache=cache, latent_sample=latent,
                                   decoder_hidden_states=decoded.decoder_hidden_states,
                                   decoder_attentions=decoded.decoder_attentions,
                                   cross_attentions=decoded.cross_attentions)

    def _add_loss(self, output: CMIMSeq2SeqLMOutput, labels: torch.Tensor, attention_mask: torch.Tensor | None,
                  input_ids_view2: torch.Tensor | None, attention_mask_view2: torch.Tensor | None,
                  latent_loss_weight: float | torch.Tensor) -> None:
        """Fill `loss` and its parts on `output` for the configured objective (see the method notes)."""
        config = self.config
        latent, mean, log_scale = output.latent_sample, output.latent_mean, output.latent_log_scale
        if mean is None or log_scale is None:
            raise ValueError("the loss needs the posterior parameters: pass `input_ids` or full `encoder_outputs`")
        recon = reconstruction_nll(output.logits, labels, config.reconstruction_reduction)  # (B,)
        output.reconstruction_loss = recon.mean()
        output.token_accuracy = token_accuracy(output.logits, labels)

        if config.objective == "ae":
            per_sample = recon
        elif config.objective == "vae":
            kl = gaussian_kl_to_standard_normal(mean, log_scale, config.latent_reduction)
            output.kl = kl.mean()
            per_sample = recon + latent_loss_weight * config.vae_beta * kl
        else:  # mim, cmim, infonce: A-MIM's latent terms on sampled z
            log_q = gaussian_log_density(latent, mean, log_scale, config.latent_reduction)
            log_prior = standard_normal_log_density(latent, config.latent_reduction)
            output.latent_log_q, output.latent_log_prior = log_q.mean(), log_prior.mean()
            per_sample = config.reconstruction_weight * recon - latent_loss_weight * 0.5 * (log_q + log_prior)
            flat = latent.flatten(1)  # (B, K*D)
            if config.objective == "cmim":
                candidates, offset = (gather_across_processes(flat) if config.gather_latents_across_processes
                                      else (flat, 0))
                contrastive = cmim_contrastive_log_prob(flat, config.contrastive_temperature, candidates, offset)
            elif config.objective == "infonce" and input_ids_view2 is None:
                if self.training:
                    raise ValueError("objective 'infonce' needs a second view of each sample: pass "
                                     "`input_ids_view2` and `attention_mask_view2`")
                contrastive = None  # evaluating reconstruction without views: the loss leaves the term out
            elif config.objective == "infonce":
                latent_view2 = self.model.encode_latents(input_ids_view2, attention_mask_view2,
                                                         sample_latent=True).last_hidden_state
                flat_view2 = latent_view2.flatten(1)
                candidates, offset = None, 0
                if config.gather_latents_across_processes:
                    (all_a, offset), (all_b, _) = gather_across_processes(flat), gather_across_processes(flat_view2)
                    candidates = (all_a, all_b)
                contrastive = infonce_log_prob(flat, flat_view2, config.contrastive_temperature, candidates, offset)
            if config.objective in ("cmim", "infonce") and contrastive is not None:
                output.contrastive_log_prob = contrastive.mean()
                per_sample = per_sample - config.contrastive_weight * contrastive
        output.loss = per_sample.mean()

    # -- embeddings -----------------------------------------------------------------------------------------

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
              kind: str = "informative") -> torch.Tensor:
        """See [`CMIMModel.embed`]. Returns (B, E)."""
        return self.model.embed(input_ids, attention_mask, kind=kind)

    # -- latent API -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters (mu, log sigma), each (B, K, D)."""
        encoded = self.model.encode_latents(input_ids, attention_mask)
        return encoded.latent_mean, encoded.latent_log_scale

    def _as_latent(self, latents: torch.Tensor) -> torch.Tensor:
        """Accept (B, K, D) or flattened (B, K*D) latents; return (B, K, D)."""
        k, d = self.config.latent_tokens, self.config.latent_size
        if latents.dim() == 2 and latents.shape[1] == k * d:
            latents = latents.view(-1, k, d)
        if latents.dim() != 3 or latents.shape[1:] != (k, d):
            raise ValueError(f"latents must have shape (batch, {k}, {d}) or (batch, {k * d}), "
                             f"got {tuple(latents.shape)}")
        return latents.to(device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, **generate_kwargs) -> torch.Tensor:
        """Generate sequences from latents (B, K, D) or (B, K*D). `generate_kwargs` go to `generate`
        (greedy by default; `num_beams`, `do_sample`, `max_new_tokens`, ...). Returns token ids (B', T)."""
        encoder_outputs = CMIMEncoderOutput(last_hidden_state=self._as_latent(latents))
        return self.generate(encoder_outputs=encoder_outputs, **generate_kwargs)

    @torch.no_grad()
    def sample_prior(self, num_samples: int, *, scale: float = 1.0, generator: torch.Generator | None = None,
                     **generate_kwargs) -> torch.Tensor:
        """Decode `num_samples` latents drawn from the prior N(0, scale^2 I). Returns token ids."""
        shape = (num_samples, self.config.latent_tokens, self.config.latent_size)
        latents = torch.randn(shape, generator=generator, device=generator.device if generator else "cpu") * scale
        return self.decode_latents(latents, **generate_kwargs)

    @torch.no_grad()
    def sample_around(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                      radius: float = 1.0, num_samples: int = 1, generator: torch.Generator | None = None,
                      **generate_kwargs) -> torch.Tensor:
        """Decode mu(x) + N(0, radius^2 I) noise, `num_samples` per input (MolMIM's "scaled radius").
        Returns token ids (B * num_samples, T'), the samples of each input contiguous."""
        mean, _ = self.encode(input_ids, attention_mask)
        mean = mean.repeat_interleave(num_samples, dim=0)  # (B*n, K, D)
        noise = torch.randn(mean.shape, generator=generator, device=generator.device if generator else "cpu")
        return self.decode_latents(mean + radius * noise.to(mean.device, mean.dtype), **generate_kwargs)

    @torch.no_grad()
    def interpolate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                    num_steps: int = 5, **generate_kwargs) -> torch.Tensor:
        """Decode `num_steps` latents evenly spaced on the line from mu(x_0) to mu(x_1), both ends included.
        input_ids: (2, T), the start and the end. Returns token ids (num_steps, T')."""
        if input_ids.shape[0] != 2 or num_steps < 2:
            raise ValueError(f"interpolate needs exactly 2 inputs (start, end) and num_steps >= 2, got "
                             f"{input_ids.shape[0]} inputs and num_steps={num_steps}")
        mean, _ = self.encode(input_ids, attention_mask)
        weights = torch.linspace(0, 1, num_steps, device=mean.device, dtype=mean.dtype).view(-1, 1, 1)
        return self.decode_latents((1 - weights) * mean[0] + weights * mean[1], **generate_kwargs)


# Saving then copies this file, its relative imports and the `auto_map` entry for each class.
CMIMModel.register_for_auto_class("AutoModel")
CMIMForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")

__all__ = [
    "EMBEDDING_KINDS",
    "IGNORE_INDEX",
    "CMIMPreTrainedModel",
    "CMIMEncoder",
    "CMIMDecoder",
    "CMIMModel",
    "CMIMForConditionalGeneration",
    "CMIMEncoderOutput",
    "CMIMModelOutput",
    "CMIMSeq2SeqLMOutput",
    "check_embedding_kind",
    "check_encoder_decoder",
    "embedding_kinds",
    "embedding_size",
    "is_cmim",
    "labels_from_input_ids",
    "seq2seq_embedding",
    "shift_tokens_right",
]
