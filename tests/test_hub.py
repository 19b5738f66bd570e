"""Hub sharing: generated model cards, push (mocked at the network boundary), loading by repo id offline from
a cache laid out as huggingface_hub lays it out, the shipped-checkpoint registry, the embeddings API, the
scikit-learn transformer, and the push / embed / generate commands. Nothing here touches the network."""

import argparse
import hashlib
import importlib.util
import json
import re
import shutil
import textwrap
import warnings
from pathlib import Path
from unittest import mock

import huggingface_hub
import jinja2
import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_config
from huggingface_hub import CommitInfo, HfApi, ModelCard
from huggingface_hub.utils import filter_repo_objects

import cmim_hf.pretrained as pretrained
from cmim_hf import CMIMForConditionalGeneration
from cmim_hf.cards import (
    BASE_TAGS,
    ArchitectureSummary,
    CMIMCardData,
    _template_context,
    model_card_template_path,
    render_model_card,
    write_model_card,
)
from cmim_hf.commands.embed import main as embed_main
from cmim_hf.commands.generate import main as generate_main
from cmim_hf.commands.push import main as push_main
from cmim_hf.estimator import CMIMEmbedder
from cmim_hf.embeddings import embed_smiles, generate_smiles, interpolate_smiles, load_pretrained
from cmim_hf.hub import resolve_model
from cmim_hf.publishing import HubOfflineError, check_model_folder, push_folder
from cmim_hf.saving import save_model_folder

# Lengths 3..15 tokens, deliberately not sorted, so length-sorting has to be undone.
SMILES = ["c1ccccc1O", "CCO", "CC(=O)Nc1ccc(O)cc1", "C", "O=[N+]([O-])c1ccccc1", "CCN", "C[C@H](N)C(=O)O",
          "CCCCCCCC", "c1ccncc1", "OCC(O)CO", "CC(C)Cc1ccc(C)cc1", "ClCCl"]
REPO_ID = "org/cmim-tiny"
RECIPE = {"objective": "cmim", "learning_rate": 1e-4, "max_steps": 10, "per_device_train_batch_size": 32}
RESULTS = {
    "tasks": {
        "freesolv": {
            "informative": {"ridge": {"rmse": 1.234, "rmse_std": 0.1}, "best": {"rmse": 1.111, "selected": ["ridge"]}},
            "latent": {"ridge": {"rmse": 1.5}, "best": {"rmse": 1.45, "selected": ["svr"]}},
            "ecfp4": {"ridge": {"rmse": 2.5}, "best": {"rmse": 2.4, "selected": ["ridge"]}},
        },
        "solubility_class": {"informative": {"svc": {"accuracy": 0.81, "roc_auc": 0.92}}},
    },
    "reconstruction": {"moses_test": {"dataset": "moses", "split": "test", "n": 16, "token_accuracy": 0.9951,
                                      "exact": 0.975, "exact_canonical": 0.98,
                                      "examples": [["CCO", "CCO"], ["c1ccccc1O", "c1ccccc1"]]}},
    "generation": {"prior": {"n": 100, "validity": 0.9, "uniqueness": 1.0, "examples": ["CC", "C("]}},
}  # as `cmim-hf evaluate` writes them (the counts, examples and labels are not metrics)


# ---------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models: one thread is faster, and avoids oversubscribing the shared 2-core machines (measured
    10-50x slower with 2 threads under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    """Every test runs with the Hub switched off; tests that push mock HfApi and switch it back on."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _card_data(**overrides) -> CMIMCardData:
    kwargs = dict(model_id=REPO_ID, dataset_name="MOSES", dataset_id="katielink/moses", num_molecules=1_584_663,
                  recipe=RECIPE, eval_results=RESULTS, plots=["umap.png", "probes.png"])
    kwargs.update(overrides)
    return CMIMCardData(**kwargs)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model and its saved folder with the generated card (the wiring the lead adds to saving)."""
    from cmim_hf import default_smiles_tokenizer

    tokenizer = default_smiles_tokenizer(model_max_length=64)
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config()).eval()
    model.generation_config.max_new_tokens = 12  # an untrained model never stops early: keep generation short
    folder = save_model_folder(model, tokenizer, tmp_path_factory.mktemp("saved") / "cmim-tiny", recipe=RECIPE,
                               extra_files={"README.md": render_model_card(model, _card_data())})
    return model, tokenizer, folder


def _expected(model, tokenizer, smiles=SMILES, kind="informative") -> np.ndarray:
    return model.embed(**tokenizer(smiles, padding=True, return_tensors="pt"), kind=kind).numpy()


# ---------------------------------------------------------------------------------------------------------
# Model cards
# ---------------------------------------------------------------------------------------------------------


def test_card_metadata_parses_back_with_the_model_index_numbers(tiny, tmp_path):
    model, tokenizer, folder = tiny
    data = ModelCard.load(folder / "README.md").data
    assert data.library_name == "transformers" and data.pipeline_tag == "feature-extraction"
    assert data.license == "apache-2.0" and data.datasets == ["katielink/moses"] and data.model_name == REPO_ID
    assert list(data.tags[:len(BASE_TAGS)]) == list(BASE_TAGS)
    got = {(r.dataset_name, r.metric_name): r.metric_value for r in data.eval_results}
    assert got == {
        ("freesolv", "rmse (informative embedding, best probe)"): 1.111,
        ("freesolv", "rmse (latent embedding, best probe)"): 1.45,
        ("solubility_class", "accuracy (informative embedding, svc probe)"): 0.81,
        ("solubility_class", "roc_auc (informative embedding, svc probe)"): 0.92,
        ("MOSES", "token_accuracy (moses_test)"): 0.9951, ("MOSES", "exact (moses_test)"): 0.975,
        ("MOSES", "exact_canonical (moses_test)"): 0.98,
        ("MOSES", "prior validity"): 0.9, ("MOSES", "prior uniqueness"): 1.0,
    }  # the ecfp4 baseline, the counts (n), examples, *_std and selected entries stay out of the model-index
    tasks = {r.dataset_name: (r.task_type, r.task_name) for r in data.eval_results if r.task_type.startswith("tab")}
    assert tasks == {"freesolv": ("tabular-regression", "freesolv: probes on the embeddings"),
                     "solubility_class": ("tabular-classification", "solubility_class: probes on the embeddings")}
    dataset_types = {(r.dataset_name, r.dataset_type, r.dataset_split) for r in data.eval_results}
    assert dataset_types == {("freesolv", "freesolv", None), ("solubility_class", "solubility_class", None),
                             ("MOSES", "katielink/moses", "test"), ("MOSES", "katielink/moses", None)}


def test_card_body_describes_the_model_data_recipe_usage_and_results(tiny):
    model, _, folder = tiny
    body = ModelCard.load(folder / "README.md").text
    n_params = sum(p.numel() for p in model.parameters())
    assert "trained with the **`cmim`** objective" in body and "contrastive Mutual Information Machine" in body
    assert "latent of **2 x 8** (K x D = 16 dimensions)" in body
    assert "| encoder | 2 layers, width 32, 4 heads, FFN 64 |" in body
    assert f"({n_params:,})" in body and "`perceiver` pooling" in body
    assert "informative embeddings* of 48 dimensions" in body  # K*D + decoder width = 16 + 32
    assert "Trained on **MOSES** (on the Hub: [`katielink/moses`](https://huggingface.co/datasets/katielink/moses)), " \
           "1,584,663 molecules." in body
    recipe_block = re.search(r"```yaml\n(.*?)```", body, re.S).group(1)
    assert yaml.safe_load(recipe_block) == RECIPE
    for needle in (f'repo = "{REPO_ID}"', 'pipeline("feature-extraction", model=repo, trust_remote_code=True)',
                   "model.generate(", "model.encode(", "model.decode_latents(", "model.sample_prior(",
                   "model.sample_around(", "model.interpolate(", "CMIMEmbedder", "SentenceTransformer(",
                   "Seq2SeqTrainer(", "DataCollatorForSeq2Seq(", "## Intended use", "## Out of scope"):
        assert needle in body, needle
    assert "pip install cmim-hf" not in body and "`pip install -e .` in a clone of its repository" in body
    # the usage code's molecules: the example the model reconstructs first, and what the card says of them
    assert 'smiles = ["CCO", "c1ccccc1O"]' in body and "This model reconstructs one of these molecules" in body
    assert "| `c1ccccc1O` | `c1ccccc1` | no |" in body and "1 of the 2 recorded are reconstructed exactly" in body
    assert "| informative | 1.234 ± 0.100 | 1.111 |" in body
    assert "| *ecfp4* (baseline) | 2.500 | 2.400 |" in body
    assert "| informative | 0.810 / 0.920 |" in body
    assert "| MOSES test | 16 | 0.995 | 0.975 | 0.980 |" in body
    assert "Samples of the prior N(0, I) (100 latents)" in body and "| validity | 0.900 |" in body
    assert "\n| n |" not in body and "examples |" not in body  # counts are not metric rows
    assert "![umap.png](umap.png)" in body and "![probes.png](probes.png)" in body
    for citation in ("arXiv:1910.03175", "Livne, Micha and Swersky, Kevin and Fleet, David J.", "arXiv:2411.10548",
                     "arXiv:2502.19642"):
        assert citation in body
    assert "## Limitations" in body and "{{" not in body and "{%" not in body


def test_card_without_results_or_plots_has_no_model_index_nor_empty_sections():
    model = CMIMForConditionalGeneration(tiny_config(objective="mim"))
    text = render_model_card(model, CMIMCardData(model_id="cmim-bare"))  # the objective comes from the config
    card = ModelCard(text)
    assert card.data.eval_results is None and card.data.datasets is None
    assert "model-index" not in text and "## Evaluation" not in text and "## Plots" not in text
    assert "**`mim`** objective" in text and "Training data: not recorded." in text and "```yaml" not in text
    assert "Whether this model reconstructs these molecules was not measured." in text
    assert "\n\n\n" not in card.text  # the template leaves no holes where sections are skipped


def test_write_model_card_reads_the_folder_without_loading_weights(tiny, tmp_path):
    model, _, folder = tiny
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    (copy / "README.md").unlink()
    assert ArchitectureSummary.from_folder(copy) == ArchitectureSummary.from_model(model)  # tied weights once
    path = write_model_card(copy, _card_data())
    assert path == copy / "README.md"
    assert path.read_text() == (folder / "README.md").read_text() == render_model_card(model, _card_data())
    assert [p.name for p in copy.iterdir() if p.name.startswith(".")] == []  # atomic write left no temp file


def test_template_uses_only_known_variables_and_ships_in_model_cards(tiny, repo_root):
    model, _, _ = tiny
    path = model_card_template_path()
    assert path.samefile(repo_root / "model_cards" / "template.md")
    data = _card_data()
    context = _template_context(data, ArchitectureSummary.from_model(model), "cmim", 3)
    strict = jinja2.Template(path.read_text(), undefined=jinja2.StrictUndefined)
    strict.render(card_data=data.to_hub_card_data().to_yaml(), cmim=context)  # raises on any typo


def test_card_data_rejects_bad_values_naming_them(tiny):
    model, _, _ = tiny
    with pytest.raises(ValueError, match="objective must be one of"):
        CMIMCardData(model_id="x", objective="simclr")
    with pytest.raises(ValueError, match=r"eval_results has unknown parts \['probes'\]"):
        CMIMCardData(model_id="x", eval_results={"probes": {}})
    with pytest.raises(ValueError, match="model_id must be a non-empty str"):
        CMIMCardData(model_id="")
    with pytest.raises(ValueError, match="card_data.objective is 'vae' but the model was configured with 'cmim'"):
        render_model_card(model, CMIMCardData(model_id="x", objective="vae"))
    with pytest.raises(FileNotFoundError, match="template .*nope.md does not exist"):
        render_model_card(model, CMIMCardData(model_id="x"), template_path="nope.md")


# ---------------------------------------------------------------------------------------------------------
# Push, mocked at the network boundary, and loading the pushed repo by id, offline, in a fresh process
# ---------------------------------------------------------------------------------------------------------


def _fake_upload(cache: Path, calls: list):
    """`HfApi.upload_folder` stand-in: commits the folder's files (filtered as upload_folder filters them)
    into a cache laid out as huggingface_hub lays it out: models--org--name/{refs/<rev>, snapshots/<sha>/}."""

    def upload_folder(self, *, repo_id, folder_path, revision=None, create_pr=None, commit_message=None,
                      ignore_patterns=None, **kwargs):
        folder = Path(folder_path)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        files = list(filter_repo_objects(files, ignore_patterns=ignore_patterns))
        digest = hashlib.sha1()
        for name in files:
            digest.update(name.encode() + (folder / name).read_bytes())
        sha = digest.hexdigest()  # 40 hex, like a git commit id
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        for name in files:
            (repo / "snapshots" / sha / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, repo / "snapshots" / sha / name)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / (revision or "main")).write_text(sha)
        calls.append(files)
        url = f"https://huggingface.co/{repo_id}/commit/{sha}"
        pr_url = f"https://huggingface.co/{repo_id}/discussions/1" if create_pr else None
        return CommitInfo(commit_url=url, commit_message=commit_message, commit_description="", oid=sha, pr_url=pr_url)

    return upload_folder


@pytest.fixture
def mocked_hub(tmp_path, monkeypatch):
    """HfApi's network methods mocked with autospec (so a wrong argument name fails); the Hub 'online'."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    cache, uploaded = tmp_path / "hub_cache", []
    with mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo, \
         mock.patch.object(HfApi, "create_branch", autospec=True) as create_branch, \
         mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=_fake_upload(cache, uploaded)) as upload:
        yield argparse.Namespace(cache=cache, uploaded=uploaded, create_repo=create_repo,
                                 create_branch=create_branch, upload_folder=upload)


def test_push_then_load_by_repo_id_offline_in_a_fresh_process(tiny, mocked_hub, run_without_cmim_hf):
    model, tokenizer, folder = tiny
    url = push_folder(folder, REPO_ID, commit_message="first release")

    assert mocked_hub.create_repo.call_count == 1
    _, args, kwargs = mocked_hub.create_repo.mock_calls[0]
    assert args[1:] == (REPO_ID,) and kwargs == {"private": False, "exist_ok": True, "repo_type": "model"}
    mocked_hub.create_branch.assert_not_called()
    kwargs = mocked_hub.upload_folder.call_args.kwargs
    assert kwargs["repo_id"] == REPO_ID and Path(kwargs["folder_path"]) == folder
    assert kwargs["revision"] is None and kwargs["create_pr"] is False and kwargs["commit_message"] == "first release"
    assert {"README.md", "config.json", "model.safetensors", "modeling_cmim.py", "configuration_cmim.py",
            "pipeline_cmim.py", "tokenizer.json", "tokenizer_config.json", "recipe.yaml"} <= set(mocked_hub.uploaded[0])
    sha = (mocked_hub.cache / "models--org--cmim-tiny" / "refs" / "main").read_text()
    assert re.fullmatch(r"[0-9a-f]{40}", sha) and url == f"https://huggingface.co/{REPO_ID}/commit/{sha}"

    output = run_without_cmim_hf(f"""
        import json, re, torch
        from huggingface_hub import hf_hub_download
        from transformers import AutoModel, AutoTokenizer, pipeline
        repo, smiles = {REPO_ID!r}, {SMILES!r}
        tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)
        base = AutoModel.from_pretrained(repo, trust_remote_code=True)
        extractor = pipeline("feature-extraction", model=repo, trust_remote_code=True)
        # The card's own usage code, run as a user would run it after reading the pushed README
        card = open(hf_hub_download(repo, "README.md")).read()
        usage = re.search(r"```python\\n(.*?)```", card, re.S).group(1)
        namespace = {{}}
        exec(usage, namespace)
        print(json.dumps({{
            "module": type(base).__module__, "pipeline": type(extractor).__name__,
            "auto_model": base.embed(**tokenizer(smiles, padding=True, return_tensors="pt")).tolist(),
            "pipeline_embeddings": extractor(smiles, batch_size=4),
            "card_vectors": namespace["vectors"], "card_embeddings": namespace["embeddings"].tolist(),
            "card_lists": {{k: namespace[k] for k in ("reconstructed", "decoded", "samples", "neighbours", "path")}},
        }}))
    """, extra_env={"HF_HUB_CACHE": str(mocked_hub.cache), "OMP_NUM_THREADS": "1"})
    result = json.loads(output.strip().splitlines()[-1])
    assert result["module"].startswith("transformers_modules.")  # the repo's code, not cmim_hf
    assert result["pipeline"] == "CMIMFeatureExtractionPipeline"
    expected = _expected(model, tokenizer)
    np.testing.assert_allclose(result["auto_model"], expected, atol=1e-5)
    np.testing.assert_allclose(result["pipeline_embeddings"], expected, atol=1e-5)
    card_expected = _expected(model, tokenizer, ["CCO", "c1ccccc1O"])  # the molecules of the card's snippet
    np.testing.assert_allclose(result["card_vectors"], card_expected, atol=1e-5)
    np.testing.assert_allclose(result["card_embeddings"], card_expected, atol=1e-5)
    lists = result["card_lists"]
    assert [len(lists[k]) for k in ("reconstructed", "decoded", "samples", "neighbours", "path")] == [2, 2, 5, 6, 5]
    assert all(isinstance(s, str) for values in lists.values() for s in values)


def test_push_passes_private_revision_and_pr_and_returns_the_pr_url(tiny, mocked_hub):
    _, _, folder = tiny
    url = push_folder(folder, REPO_ID, private=True, revision="v2", create_pr=True, token="hf_x")
    assert url == f"https://huggingface.co/{REPO_ID}/discussions/1"
    assert mocked_hub.create_repo.call_args.kwargs["private"] is True
    assert mocked_hub.create_branch.call_args.kwargs == {"branch": "v2", "exist_ok": True, "repo_type": "model"}
    api = mocked_hub.upload_folder.call_args.args[0]
    assert api.token == "hf_x"
    kwargs = mocked_hub.upload_folder.call_args.kwargs
    assert kwargs["revision"] == "v2" and kwargs["create_pr"] is True
    assert (mocked_hub.cache / "models--org--cmim-tiny" / "refs" / "v2").is_file()


def test_push_names_the_repo_in_a_generated_card(tiny, mocked_hub, tmp_path):
    """A card the package generated (it has card_data.json) names the local folder in its usage code until the
    push, which rewrites it to name the repo: the card's code then runs as written from the Hub."""
    _, _, folder = tiny
    local = Path(shutil.copytree(folder, tmp_path / "final"))
    write_model_card(local, _card_data(model_id="my-run", location="runs/my-run/final"))
    assert 'repo = "runs/my-run/final"' in (local / "README.md").read_text()
    push_folder(local, REPO_ID)
    sha = (mocked_hub.cache / "models--org--cmim-tiny" / "refs" / "main").read_text()
    pushed = (mocked_hub.cache / "models--org--cmim-tiny" / "snapshots" / sha / "README.md").read_text()
    assert pushed == (local / "README.md").read_text()
    assert f'repo = "{REPO_ID}"' in pushed and "\n# cmim-tiny\n" in pushed
    assert ModelCard(pushed).data.model_name == REPO_ID
    assert json.loads((local / "card_data.json").read_text())["location"] == REPO_ID


def test_push_fails_at_once_offline_and_names_missing_files(tiny, tmp_path):
    _, _, folder = tiny
    with mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo, \
         mock.patch.object(HfApi, "upload_folder", autospec=True) as upload:
        with pytest.raises(HubOfflineError, match=r"HF_HUB_OFFLINE=1.*nothing was sent"):
            push_folder(folder, REPO_ID)
        create_repo.assert_not_called()
        upload.assert_not_called()
    assert issubclass(HubOfflineError, huggingface_hub.errors.OfflineModeIsEnabled)

    partial = Path(shutil.copytree(folder, tmp_path / "partial"))
    for name in ("README.md", "pipeline_cmim.py", "model.safetensors"):
        (partial / name).unlink()
    with pytest.raises(FileNotFoundError) as error:
        push_folder(partial, REPO_ID)
    message = str(error.value)
    assert "missing: model.safetensors (the weights); pipeline_cmim.py" in message
    assert "README.md (the model card (render it with cmim_hf.cards.write_model_card)" in message
    assert "config.json" not in message.split("missing:")[1]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_model_folder(tmp_path / "nothing")
    with pytest.raises(ValueError, match="repo_id must look like"):
        push_folder(folder, "org/bad name")


def test_offline_repo_id_resolution_from_the_cache_and_clear_errors(tiny, mocked_hub, monkeypatch, tmp_path):
    model, tokenizer, folder = tiny
    push_folder(folder, REPO_ID)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(mocked_hub.cache))
    snapshot = resolve_model(REPO_ID)
    assert snapshot.parent.name == "snapshots" and (snapshot / "model.safetensors").is_file()
    loaded, loaded_tokenizer = load_pretrained(REPO_ID, device="cpu")  # cmim_hf's own classes, no remote code
    assert type(loaded) is CMIMForConditionalGeneration
    np.testing.assert_allclose(embed_smiles(loaded, loaded_tokenizer, SMILES), _expected(model, tokenizer), atol=1e-5)

    with pytest.raises(FileNotFoundError, match=r"'org/other'.*not in the local Hub cache and HF_HUB_OFFLINE=1"):
        resolve_model("org/other")
    with pytest.raises(FileNotFoundError, match="at revision 'v9'"):
        resolve_model(REPO_ID, revision="v9")
    with pytest.raises(FileNotFoundError, match="model folder './missing/dir' does not exist"):
        resolve_model("./missing/dir")
    with pytest.raises(FileNotFoundError, match="model folder 'org/cmim-tiny' does not exist"):
        resolve_model(Path(REPO_ID))  # a Path is a path, never a repo id, even when that repo is cached
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model(tmp_path)
    assert resolve_model(folder) == folder


# ---------------------------------------------------------------------------------------------------------
# Shipped checkpoints
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path, monkeypatch, tiny):
    _, _, folder = tiny
    root = tmp_path / "pretrained"
    shutil.copytree(folder, root / "cmim-test-tiny")
    (root / "half-copied").mkdir()  # no config.json: not a checkpoint
    (root / "__pycache__").mkdir()
    monkeypatch.setattr(pretrained, "PRETRAINED_ROOT", root)
    return root


def test_registry_lists_folders_with_a_config_and_explains_bad_names(registry):
    assert pretrained.list_pretrained() == ["cmim-test-tiny"]
    assert pretrained.pretrained_path("cmim-test-tiny") == registry / "cmim-test-tiny"
    assert resolve_model("cmim-test-tiny") == registry / "cmim-test-tiny"
    with pytest.raises(KeyError) as error:
        pretrained.pretrained_path("cmim-test-tin")
    assert str(error.value) == ("unknown pretrained checkpoint 'cmim-test-tin' (did you mean 'cmim-test-tiny'?); "
                                "available: 'cmim-test-tiny'")
    with pytest.raises(FileNotFoundError, match=r"'cmim-moses-small' is known, but its folder .* is missing.*"
                                                r"Available here: 'cmim-test-tiny'"):
        pretrained.pretrained_path("cmim-moses-small")
    with pytest.raises(FileNotFoundError, match="'half-copied' is known, but its folder .* has no config.json"):
        pretrained.pretrained_path("half-copied")
    with pytest.raises(FileNotFoundError, match="cannot find model 'nonesuch'.*available: 'cmim-test-tiny'"):
        resolve_model("nonesuch")


def test_load_pretrained_by_shipped_name_embeds_like_the_model(registry, tiny):
    model, tokenizer, _ = tiny
    loaded, loaded_tokenizer = load_pretrained("cmim-test-tiny", device="cpu")
    assert not loaded.training and loaded.device.type == "cpu"
    np.testing.assert_allclose(embed_smiles(loaded, loaded_tokenizer, SMILES), _expected(model, tokenizer), atol=1e-5)


def test_empty_registry_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "PRETRAINED_ROOT", tmp_path / "absent")
    assert pretrained.list_pretrained() == []
    with pytest.raises(KeyError, match="none \\(this install ships no checkpoints\\)"):
        pretrained.pretrained_path("anything")


# ---------------------------------------------------------------------------------------------------------
# embed_smiles and generate_smiles
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, width", [("informative", 48), ("latent", 16), ("decoder", 32)])
def test_embed_smiles_equals_model_embed_in_input_order_for_any_batch_size(tiny, kind, width):
    model, tokenizer, _ = tiny
    expected = _expected(model, tokenizer, kind=kind)
    for batch_size in (1, 5, 64):
        got = embed_smiles(model, tokenizer, SMILES, kind=kind, batch_size=batch_size)
        assert got.shape == (len(SMILES), width) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5)
    reversed_rows = embed_smiles(model, tokenizer, SMILES[::-1], kind=kind, batch_size=5)
    np.testing.assert_allclose(reversed_rows, expected[::-1], atol=1e-5)


def test_embed_smiles_inputs_options_and_errors(tiny, capsys):
    model, tokenizer, _ = tiny
    assert embed_smiles(model, tokenizer, []).shape == (0, 48)
    single = embed_smiles(model, tokenizer, "CCO")
    np.testing.assert_allclose(single, _expected(model, tokenizer, ["CCO"]), atol=1e-5)
    np.testing.assert_allclose(embed_smiles(model, tokenizer, np.array(SMILES[:3])),
                               _expected(model, tokenizer, SMILES[:3]), atol=1e-5)
    embed_smiles(model, tokenizer, SMILES, batch_size=4, progress=True)
    assert "embedding" in capsys.readouterr().err  # the tqdm bar
    with pytest.raises(TypeError, match="unexpected keyword argument 'pooling'"):
        embed_smiles(model, tokenizer, SMILES, pooling="mean")
    with pytest.raises(TypeError, match=r"smiles\[1\] is int"):
        embed_smiles(model, tokenizer, ["CCO", 7])
    with pytest.raises(ValueError, match=r"smiles\[0\] = ' '"):
        embed_smiles(model, tokenizer, [" ", "CCO"])
    with pytest.raises(ValueError, match="kind must be one of"):
        embed_smiles(model, tokenizer, SMILES, kind="mean")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        embed_smiles(model, tokenizer, SMILES, batch_size=0)
    with pytest.raises(ValueError, match=r"smiles\[1\] = 'CC§O'"):
        embed_smiles(model, tokenizer, ["CCO", "CC§O"], on_unknown="raise")
    truncated = r"max_length=64 tokens and will be truncated: smiles\[0\] = 'CCCC.*\(102 tokens\)"
    with pytest.warns(UserWarning, match=truncated):
        long_row = embed_smiles(model, tokenizer, ["C" * 100, "CCO"])
    np.testing.assert_allclose(long_row[1], _expected(model, tokenizer, ["CCO"])[0], atol=1e-5)
    with pytest.raises(ValueError, match="longer than max_length=64"):
        embed_smiles(model, tokenizer, ["C" * 100], on_too_long="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embed_smiles(model, tokenizer, ["C" * 100], on_too_long="truncate")


def test_embed_smiles_checks_smiles_with_rdkit(tiny):
    pytest.importorskip("rdkit")
    model, tokenizer, _ = tiny
    # 'C1CC(' tokenizes cleanly (no <unk>) but is no molecule: an unclosed ring and branch
    with pytest.warns(UserWarning, match=r"1 of 3 items are not SMILES that RDKit can parse: smiles\[1\] = 'C1CC\('"):
        rows = embed_smiles(model, tokenizer, ["CCO", "C1CC(", "c1ccccc1"])
    np.testing.assert_allclose(rows[[0, 2]], _expected(model, tokenizer, ["CCO", "c1ccccc1"]), atol=1e-5)
    with pytest.raises(ValueError, match=r"smiles\[1\] = 'C1CC\('"):
        embed_smiles(model, tokenizer, ["CCO", "C1CC("], on_invalid="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(embed_smiles(model, tokenizer, ["C1CC("], on_invalid="ignore"), rows[[1]],
                                   atol=1e-5)
        embed_smiles(model, tokenizer, SMILES)  # valid molecules: no warning
    with pytest.raises(ValueError, match="on_invalid must be"):
        embed_smiles(model, tokenizer, SMILES, on_invalid="skip")


def test_generate_smiles_is_reproducible_with_a_seed(tiny):
    model, tokenizer, _ = tiny
    first = generate_smiles(model, tokenizer, 3, seed=1, max_new_tokens=8)
    assert first == generate_smiles(model, tokenizer, 3, seed=1, max_new_tokens=8) and len(first) == 3
    near = generate_smiles(model, tokenizer, 2, around="CCO", radius=0.1, seed=1, max_new_tokens=8)
    assert len(near) == 2 and all(isinstance(s, str) for s in near)
    with pytest.raises(ValueError, match=r"num_samples must be an integer in \[1, "):
        generate_smiles(model, tokenizer, 0)


def test_interpolate_smiles_runs_from_one_reconstruction_to_the_other():
    model, tokenizer = load_pretrained("cmim-moses-tiny", device="cpu")
    start, end = "CC(C)(C)C(=O)C(Oc1ccc(Cl)cc1)n1ccnc1", "Cn1cnc2c1c(=O)n(CC(O)CO)c(=O)n2C"  # MOSES molecules
    path = interpolate_smiles(model, tokenizer, start, end, num_steps=5)
    batch = tokenizer([start, end], padding=True, return_tensors="pt")
    reconstructions = tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True)
    assert len(path) == 5 and [path[0], path[-1]] == reconstructions
    with pytest.raises(ValueError, match="num_steps must be an int >= 2"):
        interpolate_smiles(model, tokenizer, start, end, num_steps=1)
    with pytest.raises(ValueError, match=r"between\[1\] = ''"):
        interpolate_smiles(model, tokenizer, start, "", num_steps=3)


def test_generate_smiles_valid_only_returns_distinct_canonical_molecules(tiny):
    pytest.importorskip("rdkit")
    from rdkit import Chem

    model, tokenizer = load_pretrained("cmim-moses-tiny", device="cpu")
    seed = "CC(=O)Nc1ccc(O)cc1"
    found = generate_smiles(model, tokenizer, 5, around=seed, radius=0.5, seed=0, valid_only=True)
    assert len(found) == len(set(found)) == 5 and Chem.CanonSmiles(seed) not in found
    for smiles in found:
        assert Chem.MolToSmiles(Chem.MolFromSmiles(smiles)) == smiles  # valid and canonical
    assert generate_smiles(model, tokenizer, 5, around=seed, radius=0.5, seed=0, valid_only=True) == found
    # An untrained model cannot give 64 distinct molecules in 64 latents: fewer come back, with a warning.
    untrained, untrained_tokenizer, _ = tiny
    with pytest.warns(UserWarning, match=r"found \d+ distinct valid molecules of the 64 asked for in 64 decoded"):
        few = generate_smiles(untrained, untrained_tokenizer, 64, seed=0, max_new_tokens=8, valid_only=True,
                              max_draws=64)
    assert len(few) < 64
    with pytest.raises(ValueError, match="max_draws must be an int >= num_samples=5"):
        generate_smiles(model, tokenizer, 5, valid_only=True, max_draws=4)


# ---------------------------------------------------------------------------------------------------------
# The scikit-learn transformer
# ---------------------------------------------------------------------------------------------------------


def test_cmim_embedder_is_a_clone_safe_sklearn_transformer(tiny):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    model, tokenizer, folder = tiny
    embedder = CMIMEmbedder(str(folder), kind="latent", batch_size=4, device="cpu")
    assert embedder.get_params() == {"model": str(folder), "kind": "latent", "batch_size": 4, "device": "cpu",
                                     "dtype": None, "on_unknown": "warn", "on_too_long": "warn",
                                     "on_invalid": "warn", "backend": "torch"}
    copy = clone(embedder)
    assert copy.get_params() == embedder.get_params() and not hasattr(copy, "model_")
    assert copy.set_params(kind="informative").kind == "informative" and embedder.kind == "latent"
    with pytest.raises(NotFittedError):
        embedder.transform(SMILES)
    X = embedder.fit_transform(SMILES)
    np.testing.assert_allclose(X, _expected(model, tokenizer, kind="latent"), atol=1e-5)
    assert list(embedder.get_feature_names_out()[:2]) == ["cmim_latent_0", "cmim_latent_1"]
    assert len(embedder.get_feature_names_out()) == X.shape[1] == 16
    np.testing.assert_allclose(embedder.transform(np.array(SMILES, dtype=object).reshape(-1, 1)), X, atol=1e-6)
    pandas = pytest.importorskip("pandas")
    np.testing.assert_allclose(embedder.transform(pandas.Series(SMILES)), X, atol=1e-6)
    with pytest.raises(TypeError, match="single str"):
        embedder.transform("CCO")
    with pytest.raises(ValueError, match="kind must be one of"):
        CMIMEmbedder(str(folder), kind="mean").fit(SMILES)


def test_cmim_embedder_inside_a_pipeline_under_cross_val_score(tiny):
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    _, _, folder = tiny
    y = np.array([len(s) for s in SMILES], dtype=float)  # synthetic target: string length
    pipe = Pipeline([("embed", CMIMEmbedder(str(folder), device="cpu")), ("scale", StandardScaler()),
                     ("ridge", Ridge(alpha=1.0))])
    scores = cross_val_score(pipe, SMILES, y, cv=KFold(3, shuffle=True, random_state=0),
                             scoring="neg_mean_absolute_error")
    assert scores.shape == (3,) and np.isfinite(scores).all()
    fitted = pipe.fit(SMILES, y)
    assert fitted.predict(["CCO"]).shape == (1,)
    assert len(fitted[:-1].get_feature_names_out()) == 48


# ---------------------------------------------------------------------------------------------------------
# Commands: cmim-hf push / embed / generate
# ---------------------------------------------------------------------------------------------------------


def test_push_command_uploads_and_reports_errors(tiny, mocked_hub, tmp_path, capsys):
    _, _, folder = tiny
    assert push_main([str(folder), REPO_ID, "--private", "--revision", "dev"]) == 0
    assert capsys.readouterr().out.strip().startswith(f"https://huggingface.co/{REPO_ID}/commit/")
    assert mocked_hub.create_repo.call_args.kwargs["private"] is True
    assert mocked_hub.upload_folder.call_args.kwargs["revision"] == "dev"
    assert push_main([str(tmp_path / "absent"), REPO_ID]) == 1
    assert "cmim-hf push: error: model folder" in capsys.readouterr().err


def test_embed_command_writes_npy_and_csv_equal_to_embed_smiles(tiny, tmp_path, capsys):
    model, tokenizer, folder = tiny
    expected = _expected(model, tokenizer, SMILES[:3])
    argv = ["--model", str(folder), *SMILES[:2], "--output", str(tmp_path / "x.npy"), "--device", "cpu"]
    assert embed_main(argv) == 0
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), expected[:2], atol=1e-5)

    (tmp_path / "in.csv").write_text("id,smiles\n" + "".join(f"{i},{s}\n" for i, s in enumerate(SMILES[:3])))
    out = tmp_path / "x.csv"
    assert embed_main(["--model", str(folder), "--input", str(tmp_path / "in.csv"), "--output", str(out),
                       "--kind", "latent"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["smiles", "cmim_latent_0", "cmim_latent_1"] and len(lines) == 4
    rows = [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows] == SMILES[:3]
    np.testing.assert_allclose(np.array([r[1:] for r in rows], dtype=float),
                               _expected(model, tokenizer, SMILES[:3], kind="latent"), atol=1e-5)

    (tmp_path / "in.smi").write_text(textwrap.dedent(f"""\
        {SMILES[0]} phenol
        {SMILES[1]} ethanol
    """))
    capsys.readouterr()
    assert embed_main(["--model", str(folder), "--input", str(tmp_path / "in.smi")]) == 0  # CSV on stdout
    stdout = capsys.readouterr().out.splitlines()
    assert len(stdout) == 3 and stdout[1].startswith(SMILES[0] + ",")

    assert embed_main(["--model", str(folder), "--input", str(tmp_path / "in.csv"), "--column", "mol"]) == 1
    assert "has no column 'mol'; its columns are ['id', 'smiles']" in capsys.readouterr().err
    assert embed_main(["--model", str(folder)]) == 1
    assert "nothing to embed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # an argument error, found before the model loads: exit 2
        embed_main(["--model", str(folder), "CCO", "--output", str(tmp_path / "x.txt")])
    assert exit_info.value.code == 2
    assert "--output must end in .npy, .csv or .parquet, or be a folder" in capsys.readouterr().err


def test_embed_command_reports_invalid_smiles_as_warning_lines_or_an_error(tiny, tmp_path, capsys):
    pytest.importorskip("rdkit")
    _, _, folder = tiny
    out = tmp_path / "x.npy"
    assert embed_main(["--model", str(folder), "CCO", "C1CC(", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "cmim-hf embed: warning: 1 of 2 items are not SMILES that RDKit can parse: smiles[1] = 'C1CC('" in err
    assert "UserWarning" not in err and np.load(out).shape[0] == 2
    out.unlink()
    assert embed_main(["--model", str(folder), "CCO", "C1CC(", "--output", str(out), "--on_invalid", "raise"]) == 1
    assert "cmim-hf embed: error: 1 of 2 items are not SMILES that RDKit can parse: smiles[1]" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written


def test_generate_command_prints_reproducible_samples(tiny, tmp_path, capsys):
    _, _, folder = tiny
    argv = ["--model", str(folder), "--num_samples", "3", "--seed", "0", "--max_new_tokens", "8"]
    assert generate_main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    assert generate_main(argv + ["--output", str(tmp_path / "s.txt")]) == 0
    assert len(first) == 3 and (tmp_path / "s.txt").read_text().splitlines() == first
    assert generate_main(argv + ["--around", "CCO", "--radius", "0.5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    with pytest.raises(SystemExit) as exit_info:  # an argument error, found before the model loads
        generate_main(["--model", str(folder), "--radius", "0.5"])
    assert exit_info.value.code == 2
    assert "--radius needs --around" in capsys.readouterr().err
    assert generate_main(["--model", str(folder), "--between", "CCO", "c1ccccc1O", "--num_samples", "4",
                          "--max_new_tokens", "8"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    with pytest.raises(SystemExit) as exit_info:
        generate_main(["--model", str(folder), "--between", "CCO", "CCN", "--around", "CCO"])
    assert exit_info.value.code == 2
    assert "does not combine with --around" in capsys.readouterr().err
    if importlib.util.find_spec("rdkit") is not None:
        assert generate_main(["--model", "cmim-moses-tiny", "--num_samples", "3", "--seed", "0", "--valid_only"]) == 0
        valid = capsys.readouterr().out.splitlines()
        assert len(set(valid)) == 3
