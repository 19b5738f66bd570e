"""The model family: config validation, loss terms against hand-computed values, shapes, generation with and
without the cache, the objectives switch, embeddings' invariances, and a tiny model overfitting real SMILES."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from torch.distributions import Normal, kl_divergence

from cmim_hf import CMIMConfig, CMIMForConditionalGeneration, CMIMModel, labels_from_input_ids
from cmim_hf.modeling.modeling_cmim import (
    IGNORE_INDEX,
    cmim_contrastive_log_prob,
    gaussian_kl_to_standard_normal,
    gaussian_log_density,
    infonce_log_prob,
    reconstruction_nll,
    shift_tokens_right,
    standard_normal_log_density,
    token_accuracy,
)


# ---------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("objective", "elbo", "`objective` must be one of"),
    ("encoder_hidden_size", 30, "divisible by `encoder_attention_heads`"),
    ("decoder_attention_heads", 5, "divisible by `decoder_attention_heads`"),
    ("contrastive_temperature", 0.0, "`contrastive_temperature` must be > 0"),
    ("latent_tokens", 0, "`latent_tokens` must be an integer >= 1"),
    ("latent_size", 2.5, "`latent_size` must be an integer >= 1"),
    ("latent_pooling", "max", "`latent_pooling` must be one of"),
    ("latent_reduction", "median", "`latent_reduction` must be one of"),
    ("dropout", 1.0, "`dropout` must be in [0, 1)"),
    ("vae_beta", -1.0, "`vae_beta` must be >= 0"),
    ("pad_token_id", 500, "`pad_token_id` (500) must lie in [0, vocab_size"),
])
def test_config_rejects_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        CMIMConfig(vocab_size=64, **{field: value})


def test_config_round_trip_and_derived_sizes(tmp_path):
    config = tiny_config(objective="vae", latent_tokens=3, latent_size=5)
    config.save_pretrained(tmp_path)
    loaded = CMIMConfig.from_pretrained(tmp_path)
    assert loaded.objective == "vae" and loaded.latent_tokens == 3
    assert loaded.latent_dim == 15 and loaded.embedding_size == 15 + 32
    # transformers' cache and generation code read the decoder's geometry under the generic names
    assert loaded.num_hidden_layers == loaded.decoder_layers and loaded.hidden_size == 32


# ---------------------------------------------------------------------------------------------------------
# Loss terms against hand-computed values
# ---------------------------------------------------------------------------------------------------------


def test_cmim_term_matches_hand_computation_with_averaged_negatives():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    tau = 0.5
    unit = z / z.norm(dim=1, keepdim=True)
    expected = []
    for i in range(3):
        negatives = [math.exp(float(unit[i] @ unit[j]) / tau) for j in range(3) if j != i]
        # the positive is the sample itself (cos = 1); the negatives are averaged: sum / (B - 1)
        expected.append(1 / tau - math.log(math.exp(1 / tau) + sum(negatives) / 2))
    assert torch.allclose(cmim_contrastive_log_prob(z, tau), torch.tensor(expected), atol=1e-6)


def test_cmim_term_is_zero_for_a_batch_of_one():
    assert cmim_contrastive_log_prob(torch.randn(1, 8), 0.1).tolist() == [0.0]


def test_cmim_term_is_bounded_while_infonce_grows_like_log_batch():
    generator = torch.Generator().manual_seed(0)
    cmim_means, infonce_means = [], []
    for batch in (2, 16, 128, 512):
        z = F.normalize(torch.randn(batch, 64, generator=generator), dim=-1)
        cmim = cmim_contrastive_log_prob(z, 0.1)
        assert cmim.min() >= -math.log(2) - 1e-6 and cmim.max() <= 0
        cmim_means.append(cmim.mean().item())
        # two unrelated views: the positive is no better than a negative, so -log p ~ log(2B - 1)
        z2 = F.normalize(torch.randn(batch, 64, generator=generator), dim=-1)
        infonce_means.append(-infonce_log_prob(z, z2, 1.0).mean().item())
    assert max(cmim_means) - min(cmim_means) < 0.1
    for batch, value in zip((2, 16, 128, 512), infonce_means):
        assert value == pytest.approx(math.log(2 * batch - 1), rel=0.1)


def test_infonce_matches_hand_computation():
    z_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_b = torch.tensor([[1.0, 0.2], [0.3, 1.0]])
    tau = 0.5
    reps = F.normalize(torch.cat([z_a, z_b]), dim=-1)
    sims = (reps @ reps.T / tau).tolist()
    expected = []
    for i in range(2):
        directions = []
        for anchor, positive in ((i, i + 2), (i + 2, i)):
            denominator = sum(math.exp(sims[anchor][j]) for j in range(4) if j != anchor)
            directions.append(sims[anchor][positive] - math.log(denominator))
        expected.append(sum(directions) / 2)
    assert torch.allclose(infonce_log_prob(z_a, z_b, tau), torch.tensor(expected), atol=1e-6)


def test_gaussian_terms_match_torch_distributions():
    generator = torch.Generator().manual_seed(1)
    mean, log_scale, z = (torch.randn(4, 2, 3, generator=generator) for _ in range(3))
    posterior, prior = Normal(mean, log_scale.exp()), Normal(torch.zeros_like(z), torch.ones_like(z))
    assert torch.allclose(gaussian_log_density(z, mean, log_scale, "sum"), posterior.log_prob(z).sum((1, 2)),
                          atol=1e-5)
    assert torch.allclose(gaussian_log_density(z, mean, log_scale, "mean"), posterior.log_prob(z).mean((1, 2)),
                          atol=1e-5)
    assert torch.allclose(standard_normal_log_density(z, "sum"), prior.log_prob(z).sum((1, 2)), atol=1e-5)
    assert torch.allclose(gaussian_kl_to_standard_normal(mean, log_scale, "sum"),
                          kl_divergence(posterior, prior).sum((1, 2)), atol=1e-5)


def test_reconstruction_is_a_per_sample_mean_over_real_tokens():
    logits = torch.log(torch.tensor([
        [[0.5, 0.5], [0.9, 0.1], [0.5, 0.5]],
        [[0.2, 0.8], [0.5, 0.5], [0.5, 0.5]],
    ]))
    labels = torch.tensor([[0, 0, 1], [1, IGNORE_INDEX, IGNORE_INDEX]])
    per_token_0 = [-math.log(0.5), -math.log(0.9), -math.log(0.5)]
    assert reconstruction_nll(logits, labels, "mean").tolist() == pytest.approx(
        [sum(per_token_0) / 3, -math.log(0.8)], abs=1e-6)
    assert reconstruction_nll(logits, labels, "sum").tolist() == pytest.approx(
        [sum(per_token_0), -math.log(0.8)], abs=1e-6)
    # argmax hits: sample 0 -> tokens 0 (tie picks 0), 0, 0 vs labels 0, 0, 1: 2 of 3; sample 1: 1 of 1.
    # Token accuracy pools the batch's real tokens: 3 of 4 (not the mean of 2/3 and 1).
    assert token_accuracy(logits, labels).item() == pytest.approx(3 / 4)


def test_labels_and_decoder_inputs_from_bos_prefixed_inputs():
    input_ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    labels = labels_from_input_ids(input_ids, (input_ids != 0).long(), decoder_start_token_id=1)
    assert labels.tolist() == [[5, 6, 2], [7, 2, IGNORE_INDEX]]
    assert shift_tokens_right(labels, 0, 1).tolist() == [[1, 5, 6], [1, 7, 2]]
    # a tokenizer without <bos>: nothing is dropped
    plain = torch.tensor([[5, 6, 2]])
    assert labels_from_input_ids(plain, None, decoder_start_token_id=1).tolist() == [[5, 6, 2]]


# ---------------------------------------------------------------------------------------------------------
# The objectives switch
# ---------------------------------------------------------------------------------------------------------


def _batch(tokenizer, smiles):
    encoded = tokenizer(smiles, padding=True, return_tensors="pt")
    labels = labels_from_input_ids(encoded["input_ids"], encoded["attention_mask"], tokenizer.bos_token_id)
    return dict(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], labels=labels)


EXPECTED_PARTS = {
    "cmim": {"latent_log_q", "latent_log_prior", "contrastive_log_prob"},
    "mim": {"latent_log_q", "latent_log_prior"},
    "vae": {"kl"},
    "ae": set(),
    "infonce": {"latent_log_q", "latent_log_prior", "contrastive_log_prob"},
}


@pytest.mark.parametrize("objective", sorted(EXPECTED_PARTS))
def test_each_objective_reports_its_parts_and_combines_them(objective, smiles_tokenizer, moses_smiles):
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config(objective=objective, contrastive_weight=0.7,
                                                     reconstruction_weight=1.3, vae_beta=0.4))
    batch = _batch(smiles_tokenizer, moses_smiles[:6])
    if objective == "infonce":
        batch.update(input_ids_view2=batch["input_ids"], attention_mask_view2=batch["attention_mask"])
    out = model(**batch, latent_loss_weight=0.5)
    present = {name for name in ("latent_log_q", "latent_log_prior", "contrastive_log_prob", "kl")
               if getattr(out, name) is not None}
    assert present == EXPECTED_PARTS[objective]
    r = out.reconstruction_loss
    if objective == "ae":
        expected = r
        # AE decodes the mean: no sampling noise, the latent fed to the decoder is mu itself
        assert torch.equal(out.latent_sample, out.latent_mean)
    elif objective == "vae":
        expected = r + 0.5 * 0.4 * out.kl
    else:
        expected = 1.3 * r - 0.5 * 0.5 * (out.latent_log_q + out.latent_log_prior)
        if objective != "mim":
            expected = expected - 0.7 * out.contrastive_log_prob
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for p in model.model.encoder.parameters() if p.requires_grad)


def test_infonce_without_second_view_says_what_is_missing(smiles_tokenizer, moses_smiles):
    model = CMIMForConditionalGeneration(tiny_config(objective="infonce"))
    with pytest.raises(ValueError, match="input_ids_view2"):
        model(**_batch(smiles_tokenizer, moses_smiles[:2]))


def test_too_long_input_is_rejected_with_expected_and_actual_length():
    model = CMIMModel(tiny_config(max_position_embeddings=16))
    with pytest.raises(ValueError, match="length 20, longer than the model's max_position_embeddings=16"):
        model(torch.ones(1, 20, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------------------


def test_embedding_shapes_and_parts(smiles_tokenizer, moses_smiles):
    config = tiny_config()
    model = CMIMModel(config).eval()
    encoded = smiles_tokenizer(moses_smiles[:3], padding=True, return_tensors="pt")
    out = model(**encoded)
    assert out.embedding.shape == (3, config.embedding_size)
    assert out.latent_mean.shape == (3, config.latent_tokens, config.latent_size)
    # [mu ; pooled decoder states], in that order
    assert torch.equal(out.embedding[:, :config.latent_dim], out.latent_mean.flatten(1))
    assert torch.equal(out.embedding[:, config.latent_dim:], out.decoder_pooled)
    assert torch.equal(model.embed(**encoded, kind="latent"), out.latent_mean.flatten(1))
    assert torch.equal(model.embed(**encoded, kind="decoder"), out.decoder_pooled)
    with pytest.raises(ValueError, match="`kind` must be one of"):
        model.embed(**encoded, kind="pooled")


def test_embeddings_do_not_depend_on_batch_order_padding_or_training_mode(smiles_tokenizer, moses_smiles):
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config(dropout=0.3)).train()
    smiles = moses_smiles[:8]
    alone = torch.cat([model.embed(**smiles_tokenizer([s], return_tensors="pt")) for s in smiles])
    batched = model.embed(**smiles_tokenizer(smiles, padding=True, return_tensors="pt"))
    order = [5, 2, 7, 0, 1, 6, 3, 4]
    shuffled = model.embed(**smiles_tokenizer([smiles[i] for i in order], padding="max_length", max_length=64,
                                              return_tensors="pt"))
    assert torch.allclose(alone, batched, atol=1e-5)
    assert torch.allclose(shuffled, batched[order], atol=1e-5)
    assert model.training  # embed runs in eval mode and restores the mode


# ---------------------------------------------------------------------------------------------------------
# Training a tiny model on real molecules; generation with and without the cache
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def overfitted(smiles_tokenizer, moses_smiles):
    """A tiny cMIM model trained on 32 real MOSES molecules until it reconstructs them (about 20 s)."""
    torch.manual_seed(0)
    smiles = moses_smiles[:32]
    model = CMIMForConditionalGeneration(tiny_config(
        encoder_hidden_size=64, decoder_hidden_size=64, encoder_ffn_dim=128, decoder_ffn_dim=128,
        latent_tokens=1, latent_size=32, latent_pooling="mean"))
    batch = _batch(smiles_tokenizer, smiles)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(600):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), smiles


def test_tiny_model_overfits_32_molecules_to_exact_greedy_reconstruction(overfitted, smiles_tokenizer):
    model, smiles = overfitted
    encoded = smiles_tokenizer(smiles, padding=True, return_tensors="pt")
    generated = model.generate(**encoded)
    decoded = smiles_tokenizer.batch_decode(generated, skip_special_tokens=True)
    assert decoded == smiles


def test_generate_with_cache_equals_without_and_a_manual_argmax_loop(overfitted, smiles_tokenizer):
    model, smiles = overfitted
    encoded = smiles_tokenizer(smiles[:4], padding=True, return_tensors="pt")
    cached = model.generate(**encoded, max_new_tokens=20)
    uncached = model.generate(**encoded, max_new_tokens=20, use_cache=False)
    assert torch.equal(cached, uncached)
    encoder_outputs = model.get_encoder()(**encoded)
    tokens = torch.full((4, 1), model.config.decoder_start_token_id)
    for _ in range(20):
        logits = model(encoder_outputs=encoder_outputs, decoder_input_ids=tokens).logits
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    finished = torch.zeros(4, dtype=torch.bool)  # generate pads after <eos>
    for step in range(1, tokens.shape[1]):
        tokens[finished, step] = model.config.pad_token_id
        finished |= tokens[:, step] == model.config.eos_token_id
    assert torch.equal(cached, tokens[:, :cached.shape[1]])


def test_beam_search_and_sampling_run(overfitted, smiles_tokenizer):
    model, smiles = overfitted
    encoded = smiles_tokenizer(smiles[:2], padding=True, return_tensors="pt")
    beams = model.generate(**encoded, num_beams=3, num_return_sequences=2)
    assert beams.shape[0] == 4
    assert smiles_tokenizer.decode(beams[0], skip_special_tokens=True) == smiles[0]
    sampled = model.generate(**encoded, do_sample=True, top_k=5, max_new_tokens=10)
    assert sampled.shape[0] == 2


def test_latent_api(overfitted, smiles_tokenizer):
    model, smiles = overfitted
    config = model.config
    encoded = smiles_tokenizer(smiles[:2], padding=True, return_tensors="pt")
    mean, log_scale = model.encode(**encoded)
    assert mean.shape == log_scale.shape == (2, config.latent_tokens, config.latent_size)
    assert (log_scale >= config.min_log_scale).all()
    # decoding the means reproduces the inputs; flattened latents are accepted too
    for latents in (mean, mean.flatten(1)):
        assert smiles_tokenizer.batch_decode(model.decode_latents(latents), skip_special_tokens=True) == smiles[:2]
    with pytest.raises(ValueError, match=r"latents must have shape \(batch, 1, 32\)"):
        model.decode_latents(torch.zeros(2, 7))
    generator = torch.Generator().manual_seed(0)
    assert model.sample_prior(3, generator=generator, max_new_tokens=8).shape[0] == 3
    # radius 0 is the molecule itself; num_samples per input, contiguous
    around = model.sample_around(**encoded, radius=0.0, num_samples=2)
    decoded = smiles_tokenizer.batch_decode(around, skip_special_tokens=True)
    assert decoded == [smiles[0], smiles[0], smiles[1], smiles[1]]
    path = smiles_tokenizer.batch_decode(model.interpolate(**encoded, num_steps=4), skip_special_tokens=True)
    assert len(path) == 4 and path[0] == smiles[0] and path[-1] == smiles[1]
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        model.interpolate(**smiles_tokenizer(smiles[:3], padding=True, return_tensors="pt"))


def test_any_tokenizer_works_on_plain_text():
    """The model is not tied to SMILES: a character-level English tokenizer without <bos>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = "abcdefghijklmnopqrstuvwxyz ."
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, **{c: i + 3 for i, c in enumerate(alphabet)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[PAD]"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", eos_token="[SEP]")
    sentences = ["the cat sat.", "a dog ran far."]
    encoded = tokenizer(sentences, padding=True, return_tensors="pt")
    config = CMIMConfig(vocab_size=len(vocab), pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        decoder_start_token_id=1, **{k: v for k, v in tiny_config().to_dict().items()
                                                     if k in ("encoder_hidden_size", "decoder_hidden_size")},
                        encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
                        encoder_ffn_dim=64, decoder_ffn_dim=64, latent_size=8, max_position_embeddings=32)
    model = CMIMForConditionalGeneration(config)
    labels = labels_from_input_ids(encoded["input_ids"], encoded["attention_mask"], 1)
    assert torch.equal(labels[0, :12], encoded["input_ids"][0, :12])  # nothing dropped: no <bos> to drop
    out = model(**encoded, labels=labels)
    assert torch.isfinite(out.loss)
    assert model.embed(**encoded).shape == (2, config.embedding_size)
    assert model.generate(**encoded, max_new_tokens=5).shape == (2, 6)


def test_contrastive_terms_stay_fp32_under_bf16_autocast():
    z = torch.randn(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cmim = cmim_contrastive_log_prob(z.bfloat16(), 0.1)
        infonce = infonce_log_prob(z.bfloat16(), z.bfloat16(), 0.1)
    assert cmim.dtype == infonce.dtype == torch.float32
    assert torch.allclose(cmim, cmim_contrastive_log_prob(z.bfloat16().float(), 0.1), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# K=1: exact single-key cross-attention
# ---------------------------------------------------------------------------------------------------------


def test_single_key_cross_attention_equals_full_attention_for_any_query_projection():
    """With one latent token the softmax is 1: the shortcut must equal real attention whatever q_proj is."""
    from cmim_hf.modeling.modeling_cmim import CMIMAttention

    config = tiny_config(latent_tokens=1)
    model = CMIMForConditionalGeneration(config).eval()
    layer = model.model.decoder.layers[0]
    assert layer.cross_attn.single_key and not hasattr(layer.cross_attn, "q_proj")
    full = CMIMAttention(config, 32, 4, is_causal=False, is_cross_attention=True).eval()
    full.kv_proj.load_state_dict(layer.cross_attn.kv_proj.state_dict())
    full.out_proj.load_state_dict(layer.cross_attn.out_proj.state_dict())
    queries, memory = torch.randn(3, 7, 32), torch.randn(3, 1, 32)
    torch.testing.assert_close(layer.cross_attn(queries, memory=memory)[0], full(queries, memory=memory)[0])


def test_single_key_attention_dropout_drops_whole_heads_per_query():
    from cmim_hf.modeling.modeling_cmim import CMIMAttention

    attention = CMIMAttention(tiny_config(latent_tokens=1, attention_dropout=0.5), 32, 4, is_causal=False,
                              is_cross_attention=True, single_key=True).train()
    with torch.no_grad():  # out_proj = identity, so the output is the mixed values themselves
        attention.out_proj.weight.copy_(torch.eye(32))
        attention.out_proj.bias.zero_()
    memory = torch.randn(2, 1, 32)
    value = F.linear(memory, attention.kv_proj.weight[32:], attention.kv_proj.bias[32:]).view(2, 1, 4, 8)
    heads = attention(torch.randn(2, 50, 32), memory=memory)[0].view(2, 50, 4, 8)
    dropped = (heads == 0).all(-1)
    kept = torch.isclose(heads, 2 * value.expand_as(heads)).all(-1)
    assert (dropped | kept).all() and 0.3 < dropped.float().mean() < 0.7


def test_k1_model_generates_the_same_with_and_without_cache_and_loads_old_checkpoints(tmp_path, smiles_tokenizer,
                                                                                     moses_smiles):
    from safetensors.torch import load_file, save_file

    model = CMIMForConditionalGeneration(tiny_config(latent_tokens=1)).eval()
    encoded = smiles_tokenizer(moses_smiles[:4], padding=True, return_tensors="pt")
    assert torch.equal(model.generate(**encoded, max_new_tokens=12),
                       model.generate(**encoded, max_new_tokens=12, use_cache=False))
    # A K=1 checkpoint from before the shortcut also holds a query projection and a norm for it.
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    for i in range(model.config.decoder_layers):
        prefix = f"model.decoder.layers.{i}."
        weights[prefix + "cross_attn.q_proj.weight"] = torch.randn(32, 32)
        weights[prefix + "cross_attn.q_proj.bias"] = torch.randn(32)
        weights[prefix + "cross_attn_norm.weight"] = torch.randn(32)
        weights[prefix + "cross_attn_norm.bias"] = torch.randn(32)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    old, info = CMIMForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"]
    torch.testing.assert_close(old.embed(**encoded), model.embed(**encoded))  # decoder states at z = mu
    assert torch.equal(old.generate(**encoded, max_new_tokens=12), model.generate(**encoded, max_new_tokens=12))
