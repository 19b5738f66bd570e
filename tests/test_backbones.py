"""cMIM heads on transformers' own encoder-decoders, and informative embeddings of any encoder-decoder."""

import json
import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoModelForSeq2SeqLM,
    BartConfig,
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    MarianConfig,
    PreTrainedTokenizerFast,
    T5Config,
    pipeline,
)

from cmim_hf import labels_from_input_ids
from cmim_hf.modeling import CMIMConfig, CMIMFeatureExtractionPipeline, CMIMForConditionalGeneration, seq2seq_embedding
from cmim_hf.modeling.modeling_cmim import check_encoder_decoder

SPECIALS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
BART_GEOMETRY = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)


def backbone_config(family: str, vocab_size: int):
    """Tiny random configs of three families over a given vocabulary and the SMILES tokenizer's special ids."""
    if family == "bart":
        return BartConfig(vocab_size=vocab_size, **SPECIALS, **BART_GEOMETRY)
    if family == "marian":  # Marian: sinusoidal positions, its own family of checkpoints
        return MarianConfig(vocab_size=vocab_size, **SPECIALS, **BART_GEOMETRY)
    # T5: relative positions, RMSNorm, rescaled tied head; it starts decoding from the pad token
    return T5Config(vocab_size=vocab_size, d_model=32, num_layers=2, num_heads=4, d_ff=64, d_kv=8,
                    pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)


FAMILIES = ("bart", "t5", "marian")


def _batch(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="pt")


@pytest.mark.parametrize("family", FAMILIES)
def test_cmim_heads_train_save_and_reload_without_cmim_hf(family, smiles_tokenizer, moses_smiles, tmp_path,
                                                          run_without_cmim_hf):
    torch.manual_seed(0)
    config = CMIMConfig(backbone_config=backbone_config(family, len(smiles_tokenizer)), latent_tokens=2,
                        latent_size=8, objective="cmim")
    assert config.decoder_layers == 2 and config.encoder_hidden_size == 32 and config.backbone_config.model_type == family
    model = CMIMForConditionalGeneration(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(3):
        batch = _batch(smiles_tokenizer, moses_smiles[16 * step:16 * step + 16])
        labels = labels_from_input_ids(batch["input_ids"], batch["attention_mask"], config.decoder_start_token_id)
        outputs = model(**batch, labels=labels)
        for part in ("loss", "reconstruction_loss", "latent_log_q", "latent_log_prior", "contrastive_log_prob"):
            assert torch.isfinite(getattr(outputs, part)), part
        assert -math.log(2) - 1e-6 <= outputs.contrastive_log_prob.item() <= 0
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    model.eval()
    probe = _batch(smiles_tokenizer, moses_smiles[:3])
    embeddings = {kind: model.embed(**probe, kind=kind) for kind in ("informative", "latent", "decoder", "encoder")}
    assert embeddings["informative"].shape == (3, 2 * 8 + 32) and embeddings["encoder"].shape == (3, 32)
    generated = model.generate(**probe, max_new_tokens=12)
    cached = model.generate(**probe, max_new_tokens=12, use_cache=False)
    assert torch.equal(generated, cached)  # the backbone's cache is used correctly
    # the latent API works on the backbone: prior samples, samples around inputs, interpolation
    assert model.sample_prior(2, generator=torch.Generator().manual_seed(0), max_new_tokens=4).shape[0] == 2
    assert model.sample_around(**probe, radius=0.5, num_samples=2, max_new_tokens=4).shape[0] == 6
    two = _batch(smiles_tokenizer, moses_smiles[:2])
    assert model.interpolate(**two, num_steps=3, max_new_tokens=4).shape[0] == 3
    assert torch.equal(model.decode_latents(model.encode(**probe)[0], max_new_tokens=12), generated)

    folder = tmp_path / "model"
    model.save_pretrained(folder)
    smiles_tokenizer.save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    assert saved["backbone_config"]["model_type"] == family and (folder / "pipeline_cmim.py").is_file()
    output = run_without_cmim_hf(f"""
        import json, torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
        folder = {str(folder)!r}
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        batch = tokenizer({moses_smiles[:3]!r}, padding=True, return_tensors="pt")
        out = {{kind: model.embed(**batch, kind=kind).tolist() for kind in ("informative", "latent", "decoder", "encoder")}}
        out["generated"] = model.generate(**batch, max_new_tokens=12).tolist()
        out["pipeline"] = pipeline("feature-extraction", model=folder, trust_remote_code=True)({moses_smiles[:3]!r})
        print(json.dumps(out))
    """)
    fresh = json.loads(output.strip().splitlines()[-1])
    for kind, expected in embeddings.items():
        torch.testing.assert_close(torch.tensor(fresh[kind]), expected, rtol=0, atol=1e-6)
    assert fresh["generated"] == generated.tolist()
    torch.testing.assert_close(torch.tensor(fresh["pipeline"]), embeddings["informative"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ("bart", "t5"))
def test_from_backbone_keeps_the_pretrained_weights_bit_for_bit(family, tmp_path):
    torch.manual_seed(1)
    stock = AutoModelForSeq2SeqLM.from_config(backbone_config(family, 50))
    stock.save_pretrained(tmp_path / "stock")
    model = CMIMForConditionalGeneration.from_backbone(str(tmp_path / "stock"), latent_tokens=2, latent_size=8)
    kept = model.model.backbone.state_dict()
    original = stock.state_dict()
    assert kept.keys() == original.keys()
    for name, tensor in original.items():
        assert torch.equal(kept[name], tensor), name
    assert model.config.backbone_config.model_type == family and model.config.vocab_size == 50


def _hand_made_informative(model, input_ids, attention_mask):
    """The definition written out: encoder mean over real tokens; decoder teacher-forced on the input itself
    (labels = input, shifted right after the start token), mean over the positions whose next token is real."""
    config = model.config
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.pad_token_id
    rows = []
    for ids, mask in zip(input_ids, attention_mask):
        real = ids[mask.bool()].unsqueeze(0)  # one unpadded row at a time
        states = model.get_encoder()(input_ids=real).last_hidden_state[0]
        target = real[0, 1:] if real[0, 0] == start else real[0]
        decoder_inputs = torch.cat([torch.tensor([start]), target[:-1]]).unsqueeze(0)
        hidden = model.get_decoder()(input_ids=decoder_inputs, encoder_hidden_states=states.unsqueeze(0)).last_hidden_state
        rows.append(torch.cat([states.mean(0), hidden[0].mean(0)]))
    return torch.stack(rows)


@pytest.mark.parametrize("family", ("bart", "t5"))
def test_stock_seq2seq_informative_embedding_is_the_definition(family, smiles_tokenizer, moses_smiles):
    torch.manual_seed(2)
    model = AutoModel.from_config(backbone_config(family, len(smiles_tokenizer))).eval()
    smiles = moses_smiles[:5] + ["CCO"]
    batch = _batch(smiles_tokenizer, smiles)
    with torch.no_grad():
        expected = _hand_made_informative(model, batch["input_ids"], batch["attention_mask"])
    got = seq2seq_embedding(model, batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    width = model.config.d_model
    torch.testing.assert_close(seq2seq_embedding(model, **batch, kind="encoder"), got[:, :width])
    torch.testing.assert_close(seq2seq_embedding(model, **batch, kind="decoder"), got[:, width:])
    # invariant to batch order and to padding (a row alone, with no padding, gives the same vector)
    order = [5, 3, 0, 4, 1, 2]
    reordered = _batch(smiles_tokenizer, [smiles[i] for i in order])
    torch.testing.assert_close(seq2seq_embedding(model, **reordered), got[order], rtol=1e-5, atol=1e-5)
    alone = _batch(smiles_tokenizer, ["CCO"])
    torch.testing.assert_close(seq2seq_embedding(model, **alone)[0], got[-1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="'latent' needs a cMIM model"):
        seq2seq_embedding(model, **batch, kind="latent")
    left = smiles_tokenizer(smiles[:2], padding=True, return_tensors="pt", padding_side="left")
    with pytest.raises(ValueError, match="right-padded"):
        seq2seq_embedding(model, **left)


def _text_tokenizer(corpus):
    """A word-piece-free BPE tokenizer for plain English, trained here (no Hub): not a SMILES tokenizer."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=[
        "<pad>", "<s>", "</s>", "<unk>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1),
                                                                                                ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", model_input_names=["input_ids", "attention_mask"])


@pytest.mark.parametrize("family", ("bart", "t5"))
def test_pipeline_attached_to_a_stock_folder_equals_the_function_on_plain_text(family, tmp_path):
    corpus = ["the cat sat on the mat", "a molecule is a group of atoms", "encoders read, decoders write",
              "informative embeddings need no training"] * 5
    tokenizer = _text_tokenizer(corpus)
    torch.manual_seed(3)
    stock = AutoModelForSeq2SeqLM.from_config(backbone_config(family, len(tokenizer)))
    stock.save_pretrained(tmp_path / "stock")
    tokenizer.save_pretrained(tmp_path / "stock")
    extractor = pipeline("feature-extraction", model=str(tmp_path / "stock"),
                         pipeline_class=CMIMFeatureExtractionPipeline)
    texts = corpus[:4]
    vectors = torch.tensor(extractor(texts, batch_size=2))
    base = AutoModel.from_pretrained(tmp_path / "stock")
    expected = seq2seq_embedding(base, **tokenizer(texts, padding=True, return_tensors="pt"))
    torch.testing.assert_close(vectors, expected, rtol=1e-5, atol=1e-5)
    assert vectors.shape == (4, 64)


def test_models_that_are_not_encoder_decoders_are_refused(tmp_path):
    bert = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32))
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=30, n_embd=16, n_layer=1, n_head=2))
    for model, name in ((bert, "BertModel"), (gpt2, "GPT2LMHeadModel")):
        with pytest.raises(ValueError, match=f"{name}.*not an encoder-decoder: expected a transformers "
                                             "sequence-to-sequence model"):
            seq2seq_embedding(model, torch.tensor([[1, 5, 2]]))
    gpt2.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="not an encoder-decoder"):
        CMIMForConditionalGeneration.from_backbone(str(tmp_path / "gpt2"))
    with pytest.raises(ValueError, match="backbone_config.*must be an encoder-decoder config"):
        CMIMConfig(backbone_config=GPT2Config(n_embd=16, n_layer=1, n_head=2))

    stock = AutoModelForSeq2SeqLM.from_config(backbone_config("bart", 30))

    class NoMemoryDecoder(torch.nn.Module):  # a decoder whose forward has nowhere to put the latent memory
        def forward(self, input_ids=None, attention_mask=None):
            return input_ids

    stock.get_decoder = lambda: NoMemoryDecoder()
    with pytest.raises(ValueError, match="decoder that cannot take a memory"):
        check_encoder_decoder(stock, "the backbone")


# ---------------------------------------------------------------------------------------------------------
# Training on a backbone, and plain encoder-decoders through the package's embedding API
# ---------------------------------------------------------------------------------------------------------

TINY_TRAINING = ["--encoder_hidden_size", "32", "--decoder_hidden_size", "32", "--encoder_layers", "1",
                 "--decoder_layers", "1", "--encoder_attention_heads", "2", "--decoder_attention_heads", "2",
                 "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64", "--latent_size", "8",
                 "--max_train_samples", "200", "--max_eval_samples", "32", "--num_reconstruction_samples", "8",
                 "--max_steps", "4", "--per_device_train_batch_size", "16", "--logging_steps", "2",
                 "--eval_steps", "0", "--save_steps", "0", "--disable_tqdm", "true", "--report_to", "csv"]


@pytest.mark.parametrize("backbone, objective", [("bart", "cmim"), ("t5", "plain")])
def test_train_on_a_backbone_then_embed_and_evaluate_the_folder(backbone, objective, tmp_path, moses_smiles):
    from cmim_hf import embed_smiles, load_pretrained
    from cmim_hf.cli import main as cli_main
    from cmim_hf.evaluation.reconstruction import count_reconstructed_tokens

    out = tmp_path / "run"
    assert cli_main(["train", "--backbone", backbone, "--objective", objective, "--output_dir", str(out),
                     *TINY_TRAINING]) == 0
    model, tokenizer = load_pretrained(out / "final", device="cpu")
    if objective == "plain":  # a stock transformers folder: no remote code, no latent
        assert type(model).__name__ == "T5ForConditionalGeneration"
        assert not (out / "final" / "modeling_cmim.py").exists()
        kinds, width = ("informative", "decoder", "encoder"), {"informative": 64, "decoder": 32, "encoder": 32}
    else:
        assert model.config.backbone_config.model_type == backbone and model.config.objective == objective
        kinds, width = ("informative", "latent", "decoder", "encoder"), {"informative": 64, "latent": 32,
                                                                        "decoder": 32, "encoder": 32}
    for kind in kinds:
        assert embed_smiles(model, tokenizer, moses_smiles[:3], kind=kind).shape == (3, width[kind])
    batch = tokenizer(moses_smiles[:4], padding=True, return_tensors="pt")
    correct, real = count_reconstructed_tokens(model, batch["input_ids"], batch["attention_mask"])
    assert 0 <= correct <= real and real == batch["attention_mask"].sum() - 4  # every token but the <bos>


def test_plain_objective_needs_a_backbone_and_the_backbone_must_be_an_encoder_decoder(tmp_path, capsys):
    from cmim_hf.cli import main as cli_main

    assert cli_main(["train", "--objective", "plain", "--output_dir", str(tmp_path / "a"), *TINY_TRAINING]) != 0
    assert "needs --backbone" in capsys.readouterr().err
    GPT2LMHeadModel(GPT2Config(vocab_size=30, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path / "gpt2")
    assert cli_main(["train", "--backbone", str(tmp_path / "gpt2"), "--output_dir", str(tmp_path / "b"),
                     *TINY_TRAINING]) != 0
    assert "not an encoder-decoder" in capsys.readouterr().err
