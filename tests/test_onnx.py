"""ONNX export and the ONNX Runtime backend: the graph equals torch (float32) or stays close (int8) on MOSES and
downstream molecules, at batch sizes and lengths other than the export example's; the torch-free snippet of
docs/onnx.md works where torch and transformers cannot be imported; bad input is one error naming it."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

pytest.importorskip("onnxruntime")

from cmim_hf.cli import main as cli_main  # noqa: E402
from cmim_hf.embedding_store import model_fingerprint  # noqa: E402
from cmim_hf.estimator import CMIMEmbedder
from cmim_hf.embeddings import embed_smiles, load_pretrained  # noqa: E402
from cmim_hf.modeling import EMBEDDING_KINDS  # noqa: E402
from cmim_hf.onnx_backend import ONNXEmbedder, backend_fingerprint, load_embedder  # noqa: E402
from cmim_hf.onnx_export import ONNX_CONFIG_NAME, export_onnx, read_onnx_config  # noqa: E402
from cmim_hf.pretrained import pretrained_path  # noqa: E402
from cmim_hf.tokenization import default_smiles_tokenizer  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs" / "onnx.md"
# Batch sizes other than the export example's 2, so the graph sees other batch and padded lengths
BATCH_SIZES = (1, 37)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def tiny():
    return load_pretrained("cmim-moses-tiny", device="cpu")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    return {"fp32": export_onnx("cmim-moses-tiny", root / "cmim-moses-tiny-onnx"),
            "int8": export_onnx("cmim-moses-tiny", root / "tiny-int8", quantize="int8")}


@pytest.fixture(scope="module")
def molecules(moses_smiles) -> list[str]:
    """256 MOSES molecules and 200 FreeSolv ones (downstream), with one longer than the model reads."""
    from cmim_hf.evaluation.tasks import load_task

    return moses_smiles + load_task("freesolv").smiles[:200] + ["C" * 80]


def test_export_folder_describes_the_graph(exports, tiny):
    config = read_onnx_config(exports["fp32"])
    model, _ = tiny
    assert config["outputs"] == {"informative": 384, "latent": 256, "decoder": 128, "encoder": 128}
    assert config["source_model"]["fingerprint"] == model_fingerprint(pretrained_path("cmim-moses-tiny"))
    assert backend_fingerprint(exports["int8"], "onnx") == backend_fingerprint("cmim-moses-tiny", "torch") == \
        ONNXEmbedder(exports["int8"]).fingerprint
    assert (config["max_length"], config["padding_side"], config["pad_token_id"]) == (64, "right", 0)
    assert config["quantization"] is None and read_onnx_config(exports["int8"])["quantization"] == "int8"
    names = {p.name for p in exports["fp32"].iterdir()}
    assert {"model.onnx", "tokenizer.json", ONNX_CONFIG_NAME, "README.md", "card_data.json"} <= names
    assert not [p for p in exports["fp32"].parent.iterdir() if p.name.startswith(".")]  # no staging left
    assert model.config.embedding_size == config["outputs"]["informative"]
    assert (exports["int8"] / "model.onnx").stat().st_size < 0.5 * (exports["fp32"] / "model.onnx").stat().st_size


@pytest.mark.parametrize("kind", EMBEDDING_KINDS)
def test_float32_graph_equals_torch_on_moses_and_freesolv(exports, tiny, molecules, kind):
    model, tokenizer = tiny
    with pytest.warns(UserWarning, match="longer than max_length"):
        reference = embed_smiles(model, tokenizer, molecules, kind=kind, batch_size=64)
    embedder = ONNXEmbedder(exports["fp32"], threads=1)
    for batch_size in BATCH_SIZES:
        with pytest.warns(UserWarning, match="longer than max_length"):
            vectors = embedder.embed(molecules, kind=kind, batch_size=batch_size)
        assert vectors.dtype == np.float32 and vectors.shape == reference.shape
        assert _cosines(vectors, reference).min() >= 0.9999
        np.testing.assert_allclose(vectors, reference, atol=1e-4)


def test_int8_graph_stays_close_to_torch(exports, tiny, molecules):
    model, tokenizer = tiny
    reference = embed_smiles(model, tokenizer, molecules, on_too_long="truncate")
    vectors = ONNXEmbedder(exports["int8"]).embed(molecules, batch_size=37, on_too_long="truncate")
    cosines = _cosines(vectors, reference)
    assert cosines.min() >= 0.99
    assert np.abs(vectors - reference).max() > 1e-4  # it is quantised: not the float32 graph


def test_torch_free_snippet_of_the_docs(exports, tiny, tmp_path):
    """The snippet of docs/onnx.md, as written, in a process where torch, transformers and cmim_hf cannot be
    imported, equals torch's embed_smiles."""
    snippet = re.search(r"<!-- torch-free snippet -->\n```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.abc, sys
        class _Blocked(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "cmim_hf"):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        sys.meta_path.insert(0, _Blocked())
    """))
    check = textwrap.dedent("""
        for name in ("torch", "transformers"):
            try:
                __import__(name)
            except ModuleNotFoundError:
                pass
            else:
                raise SystemExit(f"{name} is importable: the test would prove nothing")
    """)
    script = tmp_path / "snippet.py"
    script.write_text(check + snippet + "\nassert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
                      "np.save('informative.npy', informative)\nprint(json.dumps(smiles))\n")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(exports["fp32"], work / "cmim-moses-tiny-onnx")
    result = subprocess.run([sys.executable, "-c", "import sys\n" + script.read_text()], capture_output=True,
                            text=True, cwd=work, timeout=300,
                            env={"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    smiles = json.loads(result.stdout.strip().splitlines()[-1])
    model, tokenizer = tiny
    reference = embed_smiles(model, tokenizer, smiles)
    assert _cosines(np.load(work / "informative.npy"), reference).min() >= 0.9999


def test_cli_export_then_embed_with_the_onnx_backend(exports, tiny, tmp_path, capsys):
    out = tmp_path / "latent-only"
    assert cli_main(["export", "cmim-moses-tiny", str(out), "--kind", "latent"]) == 0
    assert "latent (256)" in capsys.readouterr().err
    assert read_onnx_config(out)["outputs"] == {"latent": 256}
    model, tokenizer = tiny
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    assert cli_main(["embed", "--backend", "onnx", "--model", str(out), "--kind", "latent", *smiles,
                     "--output", str(tmp_path / "x.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), embed_smiles(model, tokenizer, smiles, kind="latent"),
                               atol=1e-4)
    assert cli_main(["embed", "--backend", "onnx", "--model", str(out), "CCO"]) == 1  # informative not exported
    assert "kind 'informative' is not in the ONNX export" in capsys.readouterr().err


def test_embedder_backends_give_the_same_numbers_and_clone_and_pickle(exports):
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O"]
    torch_rows = CMIMEmbedder("cmim-moses-tiny").fit().transform(smiles)
    onnx = CMIMEmbedder(str(exports["fp32"]), backend="onnx").fit()
    np.testing.assert_allclose(onnx.transform(smiles), torch_rows, atol=1e-4)
    assert onnx.get_feature_names_out().shape == (384,)
    assert clone(onnx).get_params() == onnx.get_params()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(onnx)).transform(smiles), onnx.transform(smiles))
    np.testing.assert_allclose(load_embedder(exports["fp32"], backend="onnx")(smiles), torch_rows, atol=1e-4)
    with pytest.raises(ValueError, match="leave device and dtype unset"):
        CMIMEmbedder(str(exports["fp32"]), backend="onnx", dtype="bfloat16").fit()
    with pytest.raises(ValueError, match="backend must be one of"):
        CMIMEmbedder(backend="tensorrt").fit()


def test_onnx_backend_warns_and_raises_as_embed_smiles(exports):
    embedder = ONNXEmbedder(exports["fp32"])
    with pytest.warns(UserWarning, match=r"smiles\[1\] = 'CC\[Xe\]Q'.*unknown: 'Q'"):
        embedder.embed(["CCO", "CC[Xe]Q"], on_invalid="ignore")
    with pytest.raises(ValueError, match=r"smiles\[0\]"):
        embedder.embed(["C" * 80], on_too_long="raise")
    with pytest.raises(TypeError, match=r"smiles\[1\] is int"):
        embedder.embed(["CCO", 5])
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_stock_encoder_decoder_exports_its_informative_embedding(tmp_path, family):
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    tokenizer = default_smiles_tokenizer(model_max_length=64)
    if family == "bart":
        model = BartForConditionalGeneration(BartConfig(
            vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64))
    else:
        model = T5ForConditionalGeneration(T5Config(vocab_size=len(tokenizer), d_model=32, num_layers=2,
                                                    num_heads=4, d_ff=64, d_kv=8, pad_token_id=0, eos_token_id=2,
                                                    decoder_start_token_id=0))
    model.save_pretrained(tmp_path / family)
    tokenizer.save_pretrained(tmp_path / family)
    folder = export_onnx(tmp_path / family, tmp_path / f"{family}-onnx")
    assert read_onnx_config(folder)["outputs"] == {"informative": 64, "decoder": 32, "encoder": 32}
    loaded, loaded_tokenizer = load_pretrained(tmp_path / family, device="cpu")
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]
    for kind in ("informative", "decoder", "encoder"):
        reference = embed_smiles(loaded, loaded_tokenizer, smiles, kind=kind, on_invalid="ignore")
        vectors = ONNXEmbedder(folder).embed(smiles, kind=kind, batch_size=3, on_invalid="ignore")
        assert _cosines(vectors, reference).min() >= 0.9999


# ---------------------------------------------------------------------------------------------------------
# Bad input: one error naming it
# ---------------------------------------------------------------------------------------------------------


def _one_error_line(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert all(needle in lines[0] for needle in needles), lines[0]


def test_export_refuses_what_is_not_a_model_and_unsupported_options(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    assert cli_main(["export", str(tmp_path / "notes"), str(tmp_path / "out")]) == 1
    _one_error_line(capsys.readouterr().err, "cmim-hf export: error:", "notes", "no config.json")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["export", "cmim-moses-tiny", str(tmp_path / "out"), "--quantize", "int4"])
    assert exit_info.value.code == 2
    _one_error_line(capsys.readouterr().err, "--quantize", "int4")
    with pytest.raises(ValueError, match="quantize 'float16' is not supported"):
        export_onnx("cmim-moses-tiny", tmp_path / "out", quantize="float16")
    with pytest.raises(ValueError, match="format must be one of"):
        export_onnx("cmim-moses-tiny", tmp_path / "out", export_format="tflite")
    assert cli_main(["export", "cmim-moses-tiny", str(tmp_path / "notes")]) == 1  # someone's folder: refused
    _one_error_line(capsys.readouterr().err, "is not an ONNX export")
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"


def test_an_onnx_file_from_another_model_is_refused(exports, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    shutil.copytree(exports["fp32"], mixed)
    shutil.copyfile(exports["int8"] / "model.onnx", mixed / "model.onnx")
    with pytest.raises(ValueError, match="not the graph this export wrote"):
        ONNXEmbedder(mixed)
    assert cli_main(["embed", "--backend", "onnx", "--model", str(mixed), "CCO"]) == 1
    _one_error_line(capsys.readouterr().err, "cmim-hf embed: error:", "model.onnx", "another export or model")
    small = model_fingerprint(pretrained_path("cmim-moses-small"))
    with pytest.raises(ValueError, match="exported from another model"):
        ONNXEmbedder(exports["fp32"], expected_fingerprint=small)
    assert cli_main(["embed", "--backend", "onnx", "--model", str(pretrained_path("cmim-moses-tiny")), "CCO"]) == 1
    _one_error_line(capsys.readouterr().err, "holds no cmim_onnx.json", "export it first")


# ---------------------------------------------------------------------------------------------------------
# Small habits
# ---------------------------------------------------------------------------------------------------------


def test_load_pretrained_on_a_missing_cuda_device_is_one_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device cuda: this machine has no CUDA device"):
        load_pretrained("cmim-moses-tiny", device="cuda")


def test_pipeline_of_an_empty_list_is_an_empty_list():
    from transformers import pipeline

    pipe = pipeline("feature-extraction", model=str(pretrained_path("cmim-moses-tiny")), trust_remote_code=True)
    assert pipe([]) == []
    assert len(pipe(["CCO"])) == 1
    with pytest.raises(ValueError, match="`kind` must be one of"):
        pipe([], kind="bad")


def test_a_library_streams_through_the_onnx_backend_and_never_mixes_with_torch(exports, tiny, molecules, tmp_path):
    """`embed --backend onnx` to a parquet library: the rows ONNXEmbedder gives, the source model's fingerprint in
    the manifest, and a resume with the torch backend (or another export) refused by name."""
    from cmim_hf.embedding_store import load_embeddings, read_manifest
    from cmim_hf.library import embed_to_disk

    smiles = molecules[:120]
    library = tmp_path / "lib"
    embed_to_disk(smiles, library, model=str(exports["fp32"]), backend="onnx", shard_rows=50, on_invalid="ignore")
    manifest = read_manifest(library)
    assert manifest["model_fingerprint"] == model_fingerprint(pretrained_path("cmim-moses-tiny"))
    assert manifest["backend"] == f"onnx:{read_onnx_config(exports['fp32'])['onnx_sha256']}"
    row_ids, texts, vectors = load_embeddings(library)
    assert list(row_ids) == list(range(len(smiles))) and list(texts) == smiles
    # float32: the vectors do not depend on how rows are batched (int8's dynamic activation scales do)
    expected = ONNXEmbedder(exports["fp32"]).embed(smiles, on_invalid="ignore", on_too_long="truncate")
    np.testing.assert_allclose(vectors, expected, rtol=1e-4, atol=1e-5)
    for model, backend in (("cmim-moses-tiny", "torch"), (str(exports["int8"]), "onnx")):
        with pytest.raises(ValueError, match="backend="):
            embed_to_disk(smiles, library, model=model, backend=backend, shard_rows=50, on_invalid="ignore")
    with pytest.raises(ValueError, match="device and dtype"):
        embed_to_disk(smiles, tmp_path / "other", model=str(exports["fp32"]), backend="onnx", dtype="bfloat16")


def test_an_index_of_an_onnx_library_searches_with_that_export(exports, molecules, tmp_path, monkeypatch):
    """An index built from a library `embed --backend onnx` wrote embeds its queries with the same export (found
    from any folder), and refuses the torch model of the same weights by its backend."""
    from cmim_hf.library import embed_to_disk
    from cmim_hf.search import build_index, search_library

    smiles = molecules[:60]
    monkeypatch.chdir(tmp_path)
    embed_to_disk(smiles, "lib", model=os.path.relpath(exports["int8"]), backend="onnx", shard_rows=25,
                  on_invalid="ignore")  # a relative model path, as a user types it
    build_index("lib", "lib-index")
    monkeypatch.chdir(tmp_path.parent)
    hits = search_library([smiles[7], smiles[42]], tmp_path / "lib-index", k=3, on_invalid="ignore")
    assert [(hit["query_index"], hit["rank"], hit["row_id"]) for hit in hits if hit["rank"] == 1] == [(0, 1, 7), (1, 1, 42)]
    # int8 activation scales follow the batch, so a query alone is close to, not equal to, its library vector
    assert hits[0]["cosine"] > 0.99 and hits[0]["tanimoto"] == 1.0
    with pytest.raises(ValueError, match=r"backend 'torch' \(index: 'onnx:"):
        search_library([smiles[0]], tmp_path / "lib-index", model="cmim-moses-tiny")


def test_an_onnx_export_given_as_a_torch_model_names_the_backend_to_use(exports, capsys):
    assert cli_main(["embed", "--model", str(exports["fp32"]), "CCO"]) == 1
    assert "it is an ONNX export: use it with --backend onnx" in capsys.readouterr().err
