"""Configuration of the cMIM sequence auto-encoder.

This file travels to the Hub with every saved model (remote code): it imports only transformers.
"""

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

OBJECTIVES = ("cmim", "mim", "vae", "ae", "infonce")
LATENT_POOLINGS = ("perceiver", "mean")
REDUCTIONS = ("mean", "sum")


class CMIMConfig(PreTrainedConfig):
    r"""Configuration of [`CMIMModel`] and [`CMIMForConditionalGeneration`].

    The encoder maps a token sequence of any length to a fixed-size Gaussian latent of `latent_tokens` (K)
    tokens of `latent_size` (D) dimensions; the decoder is an autoregressive Transformer that cross-attends
    to those K latent tokens. The defaults are MolMIM's geometry (K=1, D=512, 6+6 layers of width 512).

    With `backbone_config` (the config of one of transformers' encoder-decoders: BART, T5, MBart, Marian,
    Pegasus, ...) the encoder and decoder are that model's, built by `AutoModelForSeq2SeqLM`; the latent head
    reads the backbone encoder's states and z, projected to the backbone's width, is the K-token memory its
    decoder cross-attends to. The geometry fields (widths, layers, heads, vocabulary, special token ids) are
    then copied from the backbone config and any values given for them are ignored.

    Args:
        vocab_size: number of tokens of the tokenizer.
        max_position_embeddings: longest sequence (in tokens, specials included) the model accepts.
        encoder_hidden_size, encoder_layers, encoder_attention_heads, encoder_ffn_dim: encoder geometry.
        decoder_hidden_size, decoder_layers, decoder_attention_heads, decoder_ffn_dim: decoder geometry.
        latent_tokens: K, the number of latent tokens.
        latent_size: D, the dimension of each latent token.
        latent_pooling: "perceiver" (K learned queries cross-attend to the encoder states, as in MolMIM)
            or "mean" (masked mean of the encoder states, then a linear head).
        dropout, attention_dropout, activation_function: regularisation and FFN non-linearity.
        objective: one of "cmim", "mim", "vae", "ae", "infonce" (see the method notes in the README).
        reconstruction_weight: weight of the reconstruction term (MIM, cMIM, InfoNCE).
        reconstruction_reduction: "mean" (per-sequence mean over real tokens: every sample weighs the same,
            MolMIM's choice) or "sum" (sum over tokens).
        latent_reduction: "mean" (average the latent log-densities / KL over the K*D dims, MolMIM's choice,
            the default) or "sum" (sum over dims, as in the reference cMIM code).
        contrastive_temperature: tau of the cMIM and InfoNCE terms (> 0).
        contrastive_weight: weight of the cMIM / InfoNCE term.
        gather_latents_across_processes: under torch.distributed (DDP), draw the contrastive negatives from
            the latents of every process (differentiable all-gather; equal per-process batch sizes), not
            only from the local batch.
        decoder_input_dropout: word dropout: in training mode, this fraction of the real teacher-forcing
            inputs (after the start token) is replaced by `mask_token_id`, so the decoder leans on the latent.
        vae_beta: weight of the KL term of the VAE objective.
        min_log_scale: lower clamp of log sigma (numerical stability).
        init_std: standard deviation of the normal weight initialisation (of the backbone-free parts).
        tie_word_embeddings: the output layer shares the decoder's input embedding matrix (default True); the
            encoder always has its own token embedding. `resize_token_embeddings` resizes all of them.
        backbone_config: a transformers encoder-decoder config (or its dict) to build the encoder and decoder
            from; None (default) for this package's own architecture.
    """

    model_type = "cmim"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(AutoConfig, model_type="bart", optional=True)}
    # transformers' generic code (caches, generation) reads these names from the decoder's side.
    attribute_map = {
        "hidden_size": "decoder_hidden_size",
        "num_hidden_layers": "decoder_layers",
        "num_attention_heads": "decoder_attention_heads",
    }

    vocab_size: int = 64
    max_position_embeddings: int = 128
    encoder_hidden_size: int = 512
    encoder_layers: int = 6
    encoder_attention_heads: int = 8
    encoder_ffn_dim: int = 2048
    decoder_hidden_size: int = 512
    decoder_layers: int = 6
    decoder_attention_heads: int = 8
    decoder_ffn_dim: int = 2048
    latent_tokens: int = 1
    latent_size: int = 512
    latent_pooling: str = "perceiver"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_function: str = "gelu"
    objective: str = "cmim"
    reconstruction_weight: float = 1.0
    reconstruction_reduction: str = "mean"
    latent_reduction: str = "mean"
    contrastive_temperature: float = 0.1
    contrastive_weight: float = 1.0
    gather_latents_across_processes: bool = False
    decoder_input_dropout: float = 0.0
    vae_beta: float = 1.0
    min_log_scale: float = -6.0
    init_std: float = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    decoder_start_token_id: int | None = 1
    mask_token_id: int | None = None  # what word dropout writes; None: the pad token
    is_encoder_decoder: bool = True
    use_cache: bool = True
    tie_word_embeddings: bool = True
    backbone_config: PreTrainedConfig | dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.backbone_config is not None:
            self._copy_backbone_geometry()
        self._check_values()

    def _copy_backbone_geometry(self) -> None:
        """Make the geometry fields describe the backbone (BART-style and T5-style names both exist)."""
        backbone = self.backbone_config
        if not getattr(backbone, "is_encoder_decoder", False):
            raise ValueError(f"CMIMConfig: `backbone_config` must be an encoder-decoder config (BART, T5, MBart, "
                             f"Marian, Pegasus, ...), got a {type(backbone).__name__} (model_type "
                             f"{getattr(backbone, 'model_type', None)!r}) that is not one")

        def first(*names):
            return next((getattr(backbone, n) for n in names if getattr(backbone, n, None) is not None), None)

        width = first("d_model", "hidden_size")
        self.encoder_hidden_size = self.decoder_hidden_size = width
        self.encoder_layers = first("encoder_layers", "num_layers", "num_hidden_layers")
        self.decoder_layers = first("decoder_layers", "num_decoder_layers") or self.encoder_layers
        self.encoder_attention_heads = first("encoder_attention_heads", "num_heads", "num_attention_heads")
        self.decoder_attention_heads = first("decoder_attention_heads", "num_heads", "num_attention_heads")
        self.encoder_ffn_dim = self.decoder_ffn_dim = first("encoder_ffn_dim", "d_ff", "intermediate_size") or 4 * width
        self.vocab_size = backbone.vocab_size
        if getattr(backbone, "max_position_embeddings", None):  # T5's relative positions have no limit
            self.max_position_embeddings = backbone.max_position_embeddings
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            setattr(self, name, getattr(backbone, name, None))
        # T5-style configs may leave the start token unset: their decoders start from the pad token.
        self.decoder_start_token_id = first("decoder_start_token_id", "pad_token_id")

    def _check_values(self) -> None:
        """Reject out-of-range settings at construction time, naming the field and the value."""

        def require(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(f"CMIMConfig: {message}")

        def positive_int(name: str) -> None:
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                    f"`{name}` must be an integer >= 1, got {value!r}")

        for name in ("vocab_size", "max_position_embeddings", "encoder_hidden_size", "encoder_layers",
                     "encoder_attention_heads", "encoder_ffn_dim", "decoder_hidden_size", "decoder_layers",
                     "decoder_attention_heads", "decoder_ffn_dim", "latent_tokens", "latent_size"):
            positive_int(name)
        for side in ("encoder", "decoder"):
            width, heads = getattr(self, f"{side}_hidden_size"), getattr(self, f"{side}_attention_heads")
            require(width % heads == 0,
                    f"`{side}_hidden_size` ({width}) must be divisible by `{side}_attention_heads` ({heads})")
        require(self.objective in OBJECTIVES, f"`objective` must be one of {OBJECTIVES}, got {self.objective!r}")
        require(self.latent_pooling in LATENT_POOLINGS,
                f"`latent_pooling` must be one of {LATENT_POOLINGS}, got {self.latent_pooling!r}")
        for name in ("reconstruction_reduction", "latent_reduction"):
            require(getattr(self, name) in REDUCTIONS,
                    f"`{name}` must be one of {REDUCTIONS}, got {getattr(self, name)!r}")
        require(self.contrastive_temperature > 0,
                f"`contrastive_temperature` must be > 0, got {self.contrastive_temperature!r}")
        for name in ("reconstruction_weight", "contrastive_weight", "vae_beta", "attention_dropout"):
            require(getattr(self, name) >= 0, f"`{name}` must be >= 0, got {getattr(self, name)!r}")
        for name in ("dropout", "decoder_input_dropout"):
            require(0 <= getattr(self, name) < 1, f"`{name}` must be in [0, 1), got {getattr(self, name)!r}")
        require(self.init_std > 0, f"`init_std` must be > 0, got {self.init_std!r}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "mask_token_id"):
            value = getattr(self, name)
            require(value is None or 0 <= value < self.vocab_size,
                    f"`{name}` ({value}) must lie in [0, vocab_size={self.vocab_size})")

    @property
    def latent_dim(self) -> int:
        """Size of the flattened latent, K * D."""
        return self.latent_tokens * self.latent_size

    @property
    def embedding_size(self) -> int:
        """Size of the informative embedding [mu ; pooled decoder states], K * D + decoder width."""
        return self.latent_dim + self.decoder_hidden_size


CMIMConfig.register_for_auto_class()  # puts AutoConfig into the saved auto_map

__all__ = ["CMIMConfig"]
