"""The habits of transformers and sentence-transformers users work on saved cMIM folders."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import DataCollatorForSeq2Seq, pipeline

from cmim_hf import embed_smiles, labels_from_input_ids, load_pretrained, pretrained_path

NAME = "cmim-moses-tiny"


@pytest.fixture
def folder(tmp_path):
    """A writable copy of the shipped tiny checkpoint (1.4M parameters, trained on MOSES)."""
    target = tmp_path / NAME
    shutil.copytree(pretrained_path(NAME), target)
    return target


def test_labels_equal_to_input_ids_train_the_packages_own_target(folder, moses_smiles):
    model, tokenizer = load_pretrained(folder, device="cpu")
    features = [{"input_ids": ids, "labels": ids} for ids in tokenizer(moses_smiles[:8])["input_ids"]]
    collated = DataCollatorForSeq2Seq(tokenizer, model=model)(features)  # pads labels with -100
    assert (collated["labels"] == -100).any() and (collated["labels"][:, 0] == tokenizer.bos_token_id).all()
    own = tokenizer(moses_smiles[:8], padding=True, return_tensors="pt")
    own_labels = labels_from_input_ids(own["input_ids"], own["attention_mask"], model.config.decoder_start_token_id)
    model.train()
    torch.manual_seed(0)
    habit = model(**collated).loss
    torch.manual_seed(0)
    package = model(**own, labels=own_labels).loss
    assert torch.equal(habit, package)
    # the collator's decoder inputs are the ones forward makes itself
    assert torch.equal(collated["decoder_input_ids"], model.prepare_decoder_input_ids_from_labels(own_labels))
    with pytest.raises(ValueError, match="must have the same shape"):
        model(**own, labels=own_labels, decoder_input_ids=own["input_ids"])


def test_seq2seq_trainer_fine_tunes_a_folder_without_cmim_hf(folder, moses_smiles, run_without_cmim_hf):
    """The fine-tuning recipe of docs/training.md, run where only transformers is installed: labels = input_ids,
    DataCollatorForSeq2Seq, Seq2SeqTrainer. Reconstructions then start with the molecule's first token (the
    old off-by-one taught the model to emit a second <bos> first)."""
    smiles = moses_smiles[:64]
    output = run_without_cmim_hf(f"""
        import json, torch
        from datasets import Dataset
        from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer,
                                  Seq2SeqTrainingArguments)
        folder, smiles = {str(folder)!r}, {smiles!r}
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
        data = Dataset.from_dict({{"smiles": smiles}}).map(
            lambda batch: {{**tokenizer(batch["smiles"]), "labels": tokenizer(batch["smiles"])["input_ids"]}},
            batched=True, remove_columns=["smiles"])
        arguments = Seq2SeqTrainingArguments(output_dir="trainer", max_steps=30, per_device_train_batch_size=16,
                                             learning_rate=3e-4, report_to=[], use_cpu=True, logging_steps=10,
                                             save_steps=15, seed=0)
        trainer = Seq2SeqTrainer(model=model, args=arguments, train_dataset=data,
                                 data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
        trainer.train()
        model.eval()
        batch = tokenizer(smiles, padding=True, return_tensors="pt")
        generated = model.generate(**batch, max_new_tokens=60)
        # a model loaded as remote code saves a complete folder (code and pipeline included) that loads again
        trainer.save_model("finetuned")
        tokenizer.save_pretrained("finetuned")
        from transformers import pipeline
        vector = pipeline("feature-extraction", model="finetuned", trust_remote_code=True)(smiles[0])
        again = AutoModelForSeq2SeqLM.from_pretrained("finetuned", trust_remote_code=True).eval()
        expected = again.embed(**tokenizer(smiles[:1], return_tensors="pt"))[0]
        print(json.dumps({{"first": generated[:, 1].tolist(), "targets": batch["input_ids"][:, 1].tolist(),
                          "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
                          "pipeline_error": float((torch.tensor(vector) - expected).abs().max())}}))
    """)
    result = json.loads(output.strip().splitlines()[-1])
    bos = 1
    assert bos not in result["first"]
    right = np.mean(np.array(result["first"]) == np.array(result["targets"]))
    assert right >= 0.9, right
    assert all(np.isfinite(result["losses"]))
    assert result["pipeline_error"] < 1e-5


def test_resize_token_embeddings_covers_encoder_decoder_and_head(folder, moses_smiles):
    model, tokenizer = load_pretrained(folder, device="cpu")
    old = len(tokenizer)
    assert tokenizer.add_tokens(["<frag>", "<link>"]) == 2 and len(tokenizer) == old + 2
    model.resize_token_embeddings(len(tokenizer))
    assert model.config.vocab_size == old + 2
    for matrix in (model.model.encoder.embed_tokens, model.model.decoder.embed_tokens):
        assert matrix.num_embeddings == old + 2
    assert model.lm_head.weight.shape[0] == old + 2
    assert model.lm_head.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()  # still tied
    batch = tokenizer(["C<frag>C", "<link>CCO"], padding=True, return_tensors="pt")
    assert batch["input_ids"].max() >= old  # the new tokens are used
    assert model.embed(**batch).shape == (2, 384)
    assert model.generate(**batch, max_new_tokens=5).shape[0] == 2
    model.train()
    labels = labels_from_input_ids(batch["input_ids"], batch["attention_mask"], model.config.decoder_start_token_id)
    loss = model(**batch, labels=labels).loss
    loss.backward()
    assert model.model.encoder.embed_tokens.weight.grad[old:].abs().sum() > 0  # the encoder learns them too


def test_hidden_states_attentions_and_tuples_as_in_bart(folder):
    model, tokenizer = load_pretrained(folder, device="cpu")
    batch = tokenizer(["CCO", "c1ccccc1O"], padding=True, return_tensors="pt")
    length = batch["input_ids"].shape[1]
    config = model.config
    labels = labels_from_input_ids(batch["input_ids"], batch["attention_mask"], config.decoder_start_token_id)
    out = model(**batch, labels=labels, output_hidden_states=True, output_attentions=True)
    assert len(out.encoder_hidden_states) == config.encoder_layers + 1
    assert all(h.shape == (2, length, config.encoder_hidden_size) for h in out.encoder_hidden_states)
    assert len(out.decoder_hidden_states) == config.decoder_layers + 1
    assert all(h.shape == (2, length - 1, config.decoder_hidden_size) for h in out.decoder_hidden_states)
    heads = config.decoder_attention_heads
    assert [a.shape for a in out.encoder_attentions] == [(2, config.encoder_attention_heads, length, length)] * 2
    assert [a.shape for a in out.decoder_attentions] == [(2, heads, length - 1, length - 1)] * 2
    assert [a.shape for a in out.cross_attentions] == [(2, heads, length - 1, config.latent_tokens)] * 2
    assert torch.allclose(out.cross_attentions[0].sum(-1), torch.ones(2, heads, length - 1))
    torch.manual_seed(0)
    plain = model(**batch, labels=labels)
    assert plain.decoder_hidden_states is None and plain.encoder_attentions is None
    torch.manual_seed(0)
    as_tuple = model(**batch, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], plain.loss)  # (loss, logits, ...)

    base = model.model
    out = base(**batch, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, length - 1, config.decoder_hidden_size)
    torch.testing.assert_close(out.last_hidden_state, out.decoder_hidden_states[-1])
    assert isinstance(base(**batch, return_dict=False), tuple)
    assert torch.equal(base(**batch, return_dict=False)[0], out.embedding)  # the embedding stays first


def test_pipeline_takes_the_stock_feature_extraction_arguments(folder):
    model, tokenizer = load_pretrained(folder, device="cpu")
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    expected = embed_smiles(model, tokenizer, smiles)
    extractor = pipeline("feature-extraction", model=str(folder), trust_remote_code=True)
    got = extractor(smiles, truncation=True, tokenize_kwargs={"max_length": 64})
    np.testing.assert_allclose(np.array(got), expected, atol=1e-5)
    tensors = extractor(smiles, return_tensors=True)
    assert all(isinstance(t, torch.Tensor) and t.shape == (384,) for t in tensors)
    with pytest.warns(UserWarning, match="unknown to the tokenizer"):  # the package's default: warn
        extractor("C[Zz]C")
    with pytest.raises(ValueError, match="more than the maximum of 8"):
        extractor("CCCCCCCCCCCC", truncation=False, tokenize_kwargs={"max_length": 8})


@pytest.mark.parametrize("name", ["cmim-moses-tiny", "cmim-moses-small"])
def test_sentence_transformers_encode_equals_embed_without_cmim_hf(name, run_without_cmim_hf):
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "Cn1c(=O)c2c(ncn2C)n(C)c1=O", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"]
    output = run_without_cmim_hf(f"""
        import json, sys
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer({str(pretrained_path(name))!r}, trust_remote_code=True, device="cpu")
        plain = model.encode({smiles!r}, batch_size=2)
        unit = model.encode({smiles!r}, batch_size=3, normalize_embeddings=True)
        print(json.dumps({{"plain": plain.tolist(), "unit": unit.tolist()}}))
    """)
    result = json.loads(output.strip().splitlines()[-1])
    model, tokenizer = load_pretrained(name, device="cpu")
    expected = embed_smiles(model, tokenizer, smiles)
    assert np.abs(np.array(result["plain"]) - expected).max() < 1e-5
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(np.array(result["unit"]) - unit).max() < 1e-5


def _in_hub_cache(folder, hf_home, repo_id="org/cmim-tiny"):
    """Lay `folder` out as huggingface_hub caches a downloaded repo (refs/main -> snapshots/<commit>/)."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return repo_id


def test_loading_offline_prints_no_false_download_warning(folder, tmp_path, run_without_cmim_hf):
    """The modeling file used to import the pipeline file, so loading a cached Hub repo offline warned that a
    new version of pipeline_cmim.py had been downloaded."""
    repo_id = _in_hub_cache(folder, tmp_path / "hf_home")
    output = run_without_cmim_hf(f"""
        import sys
        sys.stderr = sys.stdout  # before transformers creates its log handler
        from transformers import AutoModel, pipeline
        AutoModel.from_pretrained({repo_id!r}, trust_remote_code=True)
        pipeline("feature-extraction", model={repo_id!r}, trust_remote_code=True)("CCO")
        print("loaded")
    """, extra_env={"TRANSFORMERS_VERBOSITY": "warning"})
    assert "loaded" in output
    assert "new version of the following files was downloaded" not in output, output
