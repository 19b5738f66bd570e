"""The saved folder: its files, loading it in a fresh process where cmim_hf cannot be imported (remote code),
loading it with cmim_hf imported (no remote code), and the feature-extraction pipeline, bad inputs included."""

import json
import warnings

import pytest
import torch
from conftest import tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

from cmim_hf import CMIMFeatureExtractionPipeline, CMIMForConditionalGeneration, CMIMModel
from cmim_hf.modeling import EMBEDDING_KINDS
from cmim_hf.saving import save_model_folder

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "O=[N+]([O-])c1ccccc1"]


@pytest.fixture
def saved(tmp_path, smiles_tokenizer):
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config()).eval()
    folder = save_model_folder(model, smiles_tokenizer, tmp_path / "model", recipe={"objective": "cmim"})
    return model, folder


def test_folder_holds_weights_code_pipeline_tokenizer_and_auto_map(saved):
    _, folder = saved
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "configuration_cmim.py",
            "modeling_cmim.py", "pipeline_cmim.py", "tokenizer.json", "tokenizer_config.json",
            "recipe.yaml"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_cmim.CMIMConfig",
                                  "AutoModel": "modeling_cmim.CMIMModel",
                                  "AutoModelForSeq2SeqLM": "modeling_cmim.CMIMForConditionalGeneration"}
    assert config["custom_pipelines"]["feature-extraction"]["impl"] == "pipeline_cmim.CMIMFeatureExtractionPipeline"
    # no temporary folders left next to it
    assert [p.name for p in folder.parent.iterdir()] == ["model"]


def test_fresh_process_without_cmim_hf_loads_everything_identically(saved, smiles_tokenizer, run_without_cmim_hf):
    model, folder = saved
    encoded = smiles_tokenizer(SMILES, padding=True, return_tensors="pt")
    expected_embeddings = model.embed(**encoded)
    expected_generations = model.generate(**encoded, max_new_tokens=12)
    output = run_without_cmim_hf(f"""
        import json, torch
        from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
        folder = {str(folder)!r}
        smiles = {SMILES!r}
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        base = AutoModel.from_pretrained(folder, trust_remote_code=True)
        seq2seq = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
        encoded = tokenizer(smiles, padding=True, return_tensors="pt")
        extractor = pipeline("feature-extraction", model=folder, trust_remote_code=True)
        print(json.dumps({{
            "classes": [type(config).__name__, type(base).__name__, type(seq2seq).__name__, type(extractor).__name__],
            "module": type(base).__module__,
            "embeddings": base.embed(**encoded).tolist(),
            "generations": seq2seq.generate(**encoded, max_new_tokens=12).tolist(),
            "pipeline": extractor(smiles),
        }}))
    """)
    result = json.loads(output.strip().splitlines()[-1])
    assert result["classes"] == ["CMIMConfig", "CMIMModel", "CMIMForConditionalGeneration",
                                 "CMIMFeatureExtractionPipeline"]
    assert result["module"].startswith("transformers_modules.")  # really the copied code, not cmim_hf
    assert torch.allclose(torch.tensor(result["embeddings"]), expected_embeddings, atol=1e-5)
    assert torch.equal(torch.tensor(result["generations"]), expected_generations)
    assert torch.allclose(torch.tensor(result["pipeline"]), expected_embeddings, atol=1e-5)


def test_with_cmim_hf_imported_no_remote_code_is_needed(saved):
    model, folder = saved
    assert type(AutoConfig.from_pretrained(folder)).__module__.startswith("cmim_hf.")
    assert isinstance(AutoModel.from_pretrained(folder), CMIMModel)
    assert isinstance(AutoModelForSeq2SeqLM.from_pretrained(folder), CMIMForConditionalGeneration)
    extractor = pipeline("feature-extraction", model=str(folder), pipeline_class=CMIMFeatureExtractionPipeline)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer(SMILES[:2], padding=True, return_tensors="pt")
    assert torch.allclose(torch.tensor(extractor(SMILES[:2])), model.embed(**encoded), atol=1e-5)


@pytest.fixture
def extractor(saved):
    return pipeline("feature-extraction", model=str(saved[1]), pipeline_class=CMIMFeatureExtractionPipeline)


@pytest.mark.parametrize("kind", EMBEDDING_KINDS)
def test_pipeline_equals_embed_for_each_kind_and_batch_size(saved, extractor, smiles_tokenizer, kind):
    model, _ = saved
    expected = model.embed(**smiles_tokenizer(SMILES, padding=True, return_tensors="pt"), kind=kind)
    for batch_size in (1, 2, 5):
        got = torch.tensor(extractor(SMILES, kind=kind, batch_size=batch_size))
        assert torch.allclose(got, expected, atol=1e-5), batch_size
    single = extractor(SMILES[0], kind=kind)
    assert len(single) == expected.shape[1] and isinstance(single[0], float)


def test_pipeline_normalize_gives_unit_vectors(extractor):
    vectors = torch.tensor(extractor(SMILES, normalize=True))
    assert torch.allclose(vectors.norm(dim=1), torch.ones(len(SMILES)), atol=1e-5)


def test_pipeline_rejects_bad_items_naming_them(extractor):
    with pytest.raises(TypeError, match="expects strings, got int: 42"):
        extractor(["CCO", 42])
    with pytest.raises(ValueError, match="empty string: '  '"):
        extractor(["CCO", "  "])
    with pytest.raises(ValueError, match="`kind` must be one of"):
        extractor("CCO", kind="mean")
    with pytest.raises(TypeError):
        extractor("CCO", pooling="mean")  # unknown options are refused, not ignored


def test_pipeline_unknown_characters_are_embedded_or_refused_on_request(extractor):
    vectors = extractor(["CCO", "CC§O"])  # "§" is no SMILES token: it becomes <unk>
    assert len(vectors) == 2
    with pytest.raises(ValueError, match=r"input 'CC§O' contains pieces unknown to the tokenizer: \['§'\]"):
        extractor(["CCO", "CC§O"], on_unknown="raise")


def test_pipeline_truncates_too_long_input_with_a_warning_or_raises(extractor):
    too_long = "C" * 100  # 102 tokens with <bos>/<eos>; the tiny model takes 64
    with pytest.warns(UserWarning, match="has 102 tokens, more than the maximum of 64; it was truncated"):
        vector = extractor(too_long)
    assert len(vector) > 0
    with pytest.raises(ValueError, match="has 102 tokens"):
        extractor(too_long, on_too_long="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extractor(too_long, on_too_long="truncate")


def test_valid_items_are_unaffected_by_invalid_neighbours(extractor):
    alone = extractor(["CCO"])
    mixed = extractor(["CCO", "CC§O", "C" * 100], on_too_long="truncate")
    assert torch.allclose(torch.tensor(mixed[0]), torch.tensor(alone[0]), atol=1e-6)


def test_saving_over_an_existing_folder_replaces_it_whole(saved, smiles_tokenizer):
    model, folder = saved
    (folder / "stale.txt").write_text("from an older save")
    save_model_folder(model, smiles_tokenizer, folder)
    assert not (folder / "stale.txt").exists() and (folder / "model.safetensors").exists()


def test_a_failing_save_leaves_the_previous_folder_intact(saved, smiles_tokenizer, monkeypatch):
    model, folder = saved
    before = (folder / "model.safetensors").read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(smiles_tokenizer, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_model_folder(model, smiles_tokenizer, folder)
    assert (folder / "model.safetensors").read_bytes() == before
    assert [p.name for p in folder.parent.iterdir()] == ["model"]


def test_half_precision_storage_loads_back_in_float32(saved, smiles_tokenizer, tmp_path):
    """storage_dtype=float16 halves the weights file; from_pretrained (dtype="auto") still computes in float32,
    with the embeddings of the rounded weights pointing where the originals do."""
    from safetensors import safe_open

    model, folder = saved
    half = save_model_folder(model, smiles_tokenizer, tmp_path / "half", storage_dtype=torch.float16)
    with safe_open(half / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    assert (half / "model.safetensors").stat().st_size < 0.6 * (folder / "model.safetensors").stat().st_size
    assert json.loads((half / "config.json").read_text())["dtype"] == "float32"
    loaded = AutoModelForSeq2SeqLM.from_pretrained(half).eval()
    assert loaded.dtype == torch.float32 and model.dtype == torch.float32  # the original is left as it was
    batch = smiles_tokenizer(SMILES, padding=True, return_tensors="pt")
    cosine = torch.nn.functional.cosine_similarity(loaded.embed(**batch), model.embed(**batch))
    assert cosine.min() > 0.9999 and not torch.equal(loaded.embed(**batch), model.embed(**batch))
    with pytest.raises(ValueError, match="storage_dtype must be a floating-point"):
        save_model_folder(model, smiles_tokenizer, tmp_path / "bad", storage_dtype="float16")
    assert not (tmp_path / "bad").exists()


def test_corrupt_weights_give_a_clear_error(saved):
    _, folder = saved
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(Exception, match="(?i)safetensors|header|deserializ"):
        AutoModel.from_pretrained(folder)
