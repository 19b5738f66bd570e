"""The checkpoints shipped inside the package: found by name, load anywhere, and are the trained models."""

import json

import numpy as np
import pytest
import torch

from cmim_hf import embed_smiles, list_pretrained, load_pretrained, pretrained_path
from cmim_hf.evaluation.model_eval import reconstruction_metrics

NAME = "cmim-moses-tiny"  # the default of `embed` and `CMIMEmbedder`
# name -> width of the informative embedding (K*D + H)
SHIPPED = {"cmim-moses-tiny": 384, "cmim-moses-small": 512, "cmim-moses-base": 512}


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_checkpoint_is_listed_with_its_card_and_recipe(name, repo_root):
    assert name in list_pretrained()
    folder = pretrained_path(name)
    for file in ("model.safetensors", "config.json", "tokenizer.json", "modeling_cmim.py", "pipeline_cmim.py",
                 "README.md", "recipe.yaml", "eval_results.json", "evaluation.json", "card_data.json"):
        assert (folder / file).is_file(), file
    assert (folder / "model.safetensors").stat().st_size < 25 * 2**20
    card = (folder / "README.md").read_text()
    assert name in card and "model-index:" in card
    assert (repo_root / "model_cards" / f"{name}.md").read_text() == card  # the generated card, kept in model_cards/


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_card_is_what_the_card_code_makes_of_the_folder(name, tmp_path):
    """The release is reproducible from the repository: the committed card is exactly the card the current
    template and card code make from the folder's own files (`cmim-hf refresh --shipped` writes it)."""
    import shutil

    from cmim_hf.cards import card_data_from_folder, write_model_card

    folder = pretrained_path(name)
    assert card_data_from_folder(folder).location == f"cmim_hf/pretrained/{name}"  # the usage code runs from a clone
    copy = shutil.copytree(folder, tmp_path / name)
    (copy / "README.md").unlink()
    write_model_card(copy)
    assert (copy / "README.md").read_text() == (folder / "README.md").read_text()


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_card_usage_code_runs_as_written(name, run_without_cmim_hf, tmp_path, repo_root):
    """The card's first code block, run from the root of a clone where cmim_hf cannot be imported, embeds the
    molecules it names and reconstructs them as the card says (exactly: the card picks molecules the model
    reconstructs)."""
    import re

    card = (pretrained_path(name) / "README.md").read_text()
    usage = re.findall(r"```python\n(.*?)```", card, re.S)[0]
    (tmp_path / "cmim_hf" / "pretrained").mkdir(parents=True)  # run_without_cmim_hf runs in tmp_path
    (tmp_path / "cmim_hf" / "pretrained" / name).symlink_to(pretrained_path(name))
    output = run_without_cmim_hf(usage + "\nimport json\nprint(json.dumps({'smiles': smiles, 'reconstructed': "
                                 "reconstructed, 'embeddings': embeddings.tolist()}))\n")
    result = json.loads(output.strip().splitlines()[-1])
    assert "This model reconstructs both molecules exactly" in card
    assert result["reconstructed"] == result["smiles"]
    model, tokenizer = load_pretrained(name, device="cpu")
    np.testing.assert_allclose(result["embeddings"], embed_smiles(model, tokenizer, result["smiles"]), atol=1e-5)


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_weights_are_the_trained_model(name, moses_smiles):
    """An untrained model gets ~2% of tokens right; the shipped ones were measured at 94.6% (tiny), 97.6% (small)
    and 99.6% (base) on MOSES test."""
    model, tokenizer = load_pretrained(name, device="cpu")
    assert model.dtype == torch.float32  # small and base store float16 weights but compute in float32
    metrics = reconstruction_metrics(model, tokenizer, moses_smiles[:32])
    assert metrics["token_accuracy"] > 0.85
    vectors = embed_smiles(model, tokenizer, ["CCO", "c1ccccc1O"])
    assert vectors.shape == (2, SHIPPED[name]) and np.isfinite(vectors).all()


def test_the_default_generator_reconstructs_best(moses_smiles):
    """Why cmim-moses-base is the default of `cmim-hf generate` and `optimize`: exact greedy reconstruction of 512
    MOSES test molecules measured at 88.5% against 50.2% (small) and 22% (tiny); see results/flagship/."""
    from cmim_hf.pretrained import DEFAULT_GENERATOR

    exact = {name: reconstruction_metrics(*load_pretrained(name, device="cpu"), moses_smiles[:64])["exact"]
             for name in SHIPPED}
    assert max(exact, key=exact.get) == DEFAULT_GENERATOR, exact
    assert exact["cmim-moses-small"] > exact["cmim-moses-tiny"]


def test_bfloat16_embeddings_agree_with_float32(moses_smiles):
    """The fast CPU option: bfloat16 weights give float32 rows pointing the same way (cosine > 0.998)."""
    full, tokenizer = load_pretrained(NAME, device="cpu")
    half, _ = load_pretrained(NAME, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    for kind in ("informative", "latent"):
        a, b = (embed_smiles(m, tokenizer, moses_smiles[:64], kind=kind) for m in (full, half))
        assert b.dtype == np.float32 and not np.array_equal(a, b)
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() > 0.998, (kind, cosine.min())
    with pytest.raises(ValueError, match="dtype must be one of .*'fp8'"):
        load_pretrained(NAME, dtype="fp8")


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_checkpoint_loads_without_cmim_hf(name, run_without_cmim_hf):
    folder = str(pretrained_path(name))
    output = run_without_cmim_hf(f"""
        import json
        from transformers import pipeline
        extractor = pipeline("feature-extraction", model={folder!r}, trust_remote_code=True)
        print(json.dumps(extractor(["CCO"])))
    """)
    model, tokenizer = load_pretrained(name, device="cpu")
    expected = embed_smiles(model, tokenizer, ["CCO"])
    np.testing.assert_allclose(np.array(json.loads(output.strip().splitlines()[-1])), expected, atol=1e-5)


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_code_copies_match_the_package(name, repo_root):
    """The shipped folder carries copies of the model code (remote code). They must be the package's own:
    after any change to modeling/, re-save the checkpoint (load_pretrained + save_model_folder, keeping its
    storage dtype and attachments) to refresh them."""
    folder = pretrained_path(name)
    for name in ("modeling_cmim.py", "configuration_cmim.py", "pipeline_cmim.py"):
        assert (folder / name).read_text() == (repo_root / "modeling" / name).read_text(), name


def test_refresh_keeps_weights_and_files_and_refuses_changed_embeddings(tmp_path, repo_root, monkeypatch):
    import shutil

    from cmim_hf import refreshing
    from cmim_hf.commands.refresh import main as refresh_main

    folder = tmp_path / NAME
    # (without the bytecode an installed package may hold beside the code: refresh drops it)
    shutil.copytree(pretrained_path(NAME), folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "modeling_cmim.py").write_text("# stale copy\n")
    weights, card = (folder / "model.safetensors").read_bytes(), (folder / "README.md").read_bytes()
    (folder / "README.md").write_text("# a stale card\n")
    assert refresh_main([str(folder)]) == 0
    assert (folder / "model.safetensors").read_bytes() == weights
    assert (folder / "README.md").read_bytes() == card  # regenerated from the folder's files
    assert (folder / "modeling_cmim.py").read_text() == (repo_root / "modeling" / "modeling_cmim.py").read_text()
    assert {p.name for p in folder.iterdir()} == {p.name for p in pretrained_path(NAME).iterdir()} - {"__pycache__"}

    real_probe = refreshing._probe_embeddings
    calls = []

    def drifting_probe(path):  # the second probe (of the re-saved folder) sees a changed model
        embeddings, np_module = real_probe(path)
        calls.append(path)
        if len(calls) == 2:
            embeddings = {kind: value + 1e-3 for kind, value in embeddings.items()}
        return embeddings, np_module

    monkeypatch.setattr(refreshing, "_probe_embeddings", drifting_probe)
    (folder / "modeling_cmim.py").write_text("# stale copy\n")
    assert refresh_main([str(folder)]) == 1
    assert (folder / "modeling_cmim.py").read_text() == "# stale copy\n"  # left as it was
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left behind
