"""Nearest-neighbour search over an embedded library: `build_index` / `cmim-hf index` (exact and IVF FAISS indexes,
written atomically), `search_library` / `cmim-hf search` (hits, self-match at rank 1, the model check), and the
one-line errors for damaged indexes, incomplete libraries and bad arguments."""

import csv
import io
import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")
pytest.importorskip("rdkit")

from cmim_hf.cli import main as cli_main  # noqa: E402
from cmim_hf.embedding_store import MANIFEST_NAME, model_fingerprint  # noqa: E402
from cmim_hf.embeddings import embed_smiles, load_pretrained  # noqa: E402
from cmim_hf.evaluation.search_quality import write_library  # noqa: E402
from cmim_hf.hub import resolve_model  # noqa: E402
from cmim_hf.search import (FAISS_FILE, INDEX_JSON, ROWS_FILE, LibraryIndex, build_index,  # noqa: E402
                            read_library, search_library)

MODEL = "cmim-moses-tiny"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def tiny():
    return load_pretrained(MODEL, device="cpu")


@pytest.fixture(scope="module")
def fingerprint():
    return model_fingerprint(resolve_model(MODEL))


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny, moses_smiles, fingerprint):
    """256 MOSES molecules embedded (informative) with the shipped tiny model, in 3 shards (100, 100, 56)."""
    model, tokenizer = tiny
    vectors = embed_smiles(model, tokenizer, moses_smiles, kind="informative")
    folder = write_library(tmp_path_factory.mktemp("lib") / "library", moses_smiles, vectors, model=MODEL,
                           fingerprint=fingerprint, kind="informative", shard_rows=100)
    return folder, vectors


@pytest.fixture(scope="module")
def exact_index(tmp_path_factory, library):
    return build_index(library[0], tmp_path_factory.mktemp("idx") / "exact")


def _cosine_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q @ unit.T), axis=1, kind="stable")[:, :k]


# ---------------------------------------------------------------------------------------------------------
# Building and searching
# ---------------------------------------------------------------------------------------------------------


def test_exact_index_describes_itself_and_matches_brute_force_cosine(library, exact_index):
    folder, vectors = library
    meta = json.loads((exact_index / INDEX_JSON).read_text())
    assert (meta["type"], meta["faiss_class"], meta["size"], meta["width"], meta["kind"], meta["model"]) == \
        ("exact", "IndexFlatIP", 256, vectors.shape[1], "informative", MODEL)
    assert meta["library"]["path"] == str(folder.resolve())
    index = LibraryIndex(exact_index)
    assert index.rows.column("row_id").to_pylist() == list(range(256))  # the 3 shards, in row order
    scores, positions = index.search_vectors(vectors[:20], 5)
    np.testing.assert_array_equal(positions, _cosine_top(vectors, vectors[:20], 5))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)  # each vector's nearest is itself, cosine 1


def test_a_query_in_the_library_finds_itself_at_rank_1_with_its_row_id(exact_index, moses_smiles, tiny):
    model, tokenizer = tiny
    picks = [3, 100, 255]  # first shard, the second shard's first row, the last row
    hits = search_library([moses_smiles[i] for i in picks], exact_index, k=4, model=model, tokenizer=tokenizer)
    assert len(hits) == 12 and [h["rank"] for h in hits[:4]] == [1, 2, 3, 4]
    for q, row in enumerate(picks):
        first = hits[4 * q]
        assert (first["query_index"], first["row_id"], first["smiles"]) == (q, row, moses_smiles[row])
        assert first["cosine"] == pytest.approx(1.0, abs=1e-5) and first["tanimoto"] == 1.0
        cosines = [h["cosine"] for h in hits[4 * q:4 * q + 4]]
        assert cosines == sorted(cosines, reverse=True) and cosines[1] < 0.9999


def test_ivf_index_is_exact_when_it_probes_every_list_and_finds_self_with_one(tmp_path, library):
    folder, vectors = library
    target = build_index(folder, tmp_path / "ivf", index_type="ivf", nlist=8, nprobe=8)
    meta = json.loads((target / INDEX_JSON).read_text())
    assert (meta["type"], meta["faiss_class"], meta["parameters"]["nlist"], meta["parameters"]["nprobe"]) == \
        ("ivf", "IndexIVFFlat", 8, 8)
    index = LibraryIndex(target)
    assert index.index.nprobe == 8  # stored in the file
    _, positions = index.search_vectors(vectors, 5)
    np.testing.assert_array_equal(positions, _cosine_top(vectors, vectors, 5))
    index.index.nprobe = 1  # a stored vector lies in the list of its nearest centroid: found with one probe
    _, positions = index.search_vectors(vectors, 1)
    np.testing.assert_array_equal(positions[:, 0], np.arange(256))


def test_a_float16_library_indexes_like_its_float32_vectors(tmp_path, library, moses_smiles, fingerprint):
    vectors = library[1]
    half = write_library(tmp_path / "half", moses_smiles, vectors, model=MODEL, fingerprint=fingerprint,
                         kind="informative", storage_dtype="float16", shard_rows=128)
    index = LibraryIndex(build_index(half, tmp_path / "index"))
    assert index.index.ntotal == 256
    scores, positions = index.search_vectors(vectors[:30], 1)
    np.testing.assert_array_equal(positions[:, 0], np.arange(30))
    assert scores.min() > 0.9999


def test_rebuilding_replaces_the_index_and_leaves_no_temporary_folder(tmp_path, library):
    target = build_index(library[0], tmp_path / "index", index_type="exact")
    build_index(library[0], target, index_type="ivf", nlist=4)
    assert json.loads((target / INDEX_JSON).read_text())["type"] == "ivf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    assert sorted(p.name for p in target.iterdir()) == sorted([FAISS_FILE, ROWS_FILE, INDEX_JSON])


# ---------------------------------------------------------------------------------------------------------
# Refusals: libraries, indexes, models
# ---------------------------------------------------------------------------------------------------------


def _copy_library(source, target, **manifest_changes):
    import shutil

    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest.update(manifest_changes)
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    return target


def test_incomplete_foreign_or_damaged_libraries_are_refused_by_name(tmp_path, library):
    with pytest.raises(ValueError, match="is not complete .*3 shards finished.*rerun the cmim-hf embed command"):
        read_library(_copy_library(library[0], tmp_path / "partial", complete=False))
    with pytest.raises(ValueError, match="is not a manifest of cmim-hf-embeddings version 1"):
        read_library(_copy_library(library[0], tmp_path / "foreign", format="other"))
    missing = _copy_library(library[0], tmp_path / "missing")
    (missing / "shard-00001.parquet").unlink()
    with pytest.raises(ValueError, match="lists shard-00001.parquet in its manifest, but the file is missing"):
        read_library(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(f"holds no {MANIFEST_NAME}")):
        read_library(tmp_path)


def test_damaged_indexes_are_one_clear_error(tmp_path, exact_index):
    import shutil

    truncated = shutil.copytree(exact_index, tmp_path / "truncated")
    data = (truncated / FAISS_FILE).read_bytes()
    (truncated / FAISS_FILE).write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="index.faiss is damaged or not a FAISS index"):
        LibraryIndex(truncated)
    garbage = shutil.copytree(exact_index, tmp_path / "garbage")
    (garbage / FAISS_FILE).write_bytes(b"not an index at all")
    with pytest.raises(ValueError, match="index.faiss is damaged"):
        LibraryIndex(garbage)
    no_faiss = shutil.copytree(exact_index, tmp_path / "no_faiss")
    (no_faiss / FAISS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="lacks index.faiss"):
        LibraryIndex(no_faiss)
    bad_json = shutil.copytree(exact_index, tmp_path / "bad_json")
    (bad_json / INDEX_JSON).write_text("{not json")
    with pytest.raises(ValueError, match="index.json is not valid JSON"):
        LibraryIndex(bad_json)
    wrong_size = shutil.copytree(exact_index, tmp_path / "wrong_size")
    meta = json.loads((wrong_size / INDEX_JSON).read_text())
    (wrong_size / INDEX_JSON).write_text(json.dumps({**meta, "size": 999}))
    with pytest.raises(ValueError, match=r"\(256 x 384\).*disagree"):
        LibraryIndex(wrong_size)


def test_another_model_kind_or_width_is_refused_naming_what_differs(tmp_path, library, moses_smiles, fingerprint, tiny):
    model, tokenizer = tiny
    vectors = library[1]
    other_weights = write_library(tmp_path / "w", moses_smiles[:50], vectors[:50], model=MODEL, fingerprint="0" * 64,
                                  kind="informative")
    with pytest.raises(ValueError, match=r"does not match index .*: weights \(model_fingerprint differs\)"):
        search_library(["CCO"], build_index(other_weights, tmp_path / "wi"), k=1)
    narrow = write_library(tmp_path / "n", moses_smiles[:50], vectors[:50, :100], model=MODEL, fingerprint=fingerprint,
                           kind="informative")
    with pytest.raises(ValueError, match=r"width 384 \(index: 100\)"):
        search_library(["CCO"], build_index(narrow, tmp_path / "ni"), k=1)
    index = LibraryIndex(build_index(library[0], tmp_path / "ki"))
    with pytest.raises(ValueError, match=r"embedding kind 'latent' \(index: 'informative'\)"):
        index.check_model(resolve_model(MODEL), model.config, kind="latent")


# ---------------------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------------------


def test_search_command_writes_the_hits_as_csv(tmp_path, exact_index, moses_smiles, capsys):
    output = tmp_path / "hits.csv"
    queries = tmp_path / "queries.smi"
    queries.write_text(moses_smiles[10] + "\n")
    assert cli_main(["search", moses_smiles[20], "--input", str(queries), "--index", str(exact_index), "-k", "3",
                     "--output", str(output)]) == 0
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert [(r["query_index"], r["rank"]) for r in rows] == [("0", "1"), ("0", "2"), ("0", "3"),
                                                               ("1", "1"), ("1", "2"), ("1", "3")]
    assert (rows[0]["row_id"], rows[3]["row_id"]) == ("20", "10")  # the argument first, then --input
    assert float(rows[0]["cosine"]) == pytest.approx(1.0, abs=1e-5) and rows[0]["tanimoto"] == "1.0000"
    assert "2 queries, 3 neighbours each, from 256 molecules" in capsys.readouterr().err


def test_index_command_builds_what_search_reads(tmp_path, library, capsys):
    assert cli_main(["index", str(library[0]), "--output", str(tmp_path / "i"), "--type", "ivf", "--nlist", "4",
                     "--quiet"]) == 0
    assert LibraryIndex(tmp_path / "i").meta["parameters"]["nlist"] == 4
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("case", ["k0", "no_queries", "empty_input", "output_is_folder", "output_is_device", "index_output_file",
                                  "index_output_other_folder", "empty_library"])
def test_bad_arguments_are_one_line_exit_2(case, tmp_path, exact_index, library, fingerprint, capsys):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    empty = write_library(tmp_path / "empty", [], np.zeros((0, 384), np.float32), model=MODEL, fingerprint=fingerprint,
                          kind="informative")
    empty_input = tmp_path / "queries.smi"
    empty_input.write_text("")
    search = ["search", "CCO", "--index", str(exact_index)]
    argv, expected = {
        "k0": (search + ["-k", "0"], "argument -k: expected an integer >= 1, got '0'"),
        "no_queries": (["search", "--index", str(exact_index)], "no queries"),
        "empty_input": (["search", "--index", str(exact_index), "--input", str(empty_input)], "is empty"),
        "output_is_folder": (search + ["--output", str(tmp_path)], "is a folder"),
        "output_is_device": (search + ["--output", "/dev/null"], "is a device, pipe or socket"),
        "index_output_file": (["index", str(library[0]), "--output", str(tmp_path / "file.txt")], "is a file"),
        "index_output_other_folder": (["index", str(library[0]), "--output", str(tmp_path / "other")],
                                      "holding other files"),
        "empty_library": (["index", str(empty), "--output", str(tmp_path / "i")], "holds no rows"),
    }[case]
    with pytest.raises(SystemExit) as exit:
        cli_main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_damaged_index_and_incomplete_library_are_one_line_exit_1(tmp_path, library, capsys):
    partial = _copy_library(library[0], tmp_path / "partial", complete=False)
    assert cli_main(["index", str(partial), "--output", str(tmp_path / "i")]) == 1
    assert cli_main(["search", "CCO", "--index", str(tmp_path / "nowhere")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "is not complete" in lines[0] and "is not a folder" in lines[1], lines
    assert not (tmp_path / "i").exists()


@pytest.mark.parametrize("command", ["index", "search"])
def test_help_imports_neither_faiss_nor_torch(command):
    code = (f"import sys, json\nfrom cmim_hf.cli import main\ntry:\n    main([{command!r}, '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(json.dumps(sorted(m for m in ('faiss', 'torch', 'pyarrow', 'rdkit', 'transformers') "
            "if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0 and json.loads(result.stdout.strip().splitlines()[-1]) == [], result.stderr


# ---------------------------------------------------------------------------------------------------------
# The evaluation's pieces
# ---------------------------------------------------------------------------------------------------------


def test_scaling_curve_is_exhaustive_when_nprobe_covers_every_list(tmp_path, library):
    from cmim_hf.evaluation.search_quality import index_scaling_curve

    vectors = library[1]
    rows = index_scaling_curve(vectors[20:], vectors[:20], [64, 236], tmp_path, k=5, single=3)
    assert [(r["size"], r["nlist"], r["nprobe"]) for r in rows] == [(64, 8, 8), (236, 15, 15)]  # nprobe 16 > nlist
    assert [r["recall_at_5"] for r in rows] == [1.0, 1.0]
    timings = ("exact_build_seconds", "ivf_build_seconds", "single_query_speedup")  # reported, never asserted on
    assert all(isinstance(r[key], float) for r in rows for key in timings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve-236-exact", "curve-236-ivf", "curve-64-exact",
                                                          "curve-64-ivf"]  # the temporary libraries are gone


def test_properties_and_scores_of_the_quality_evaluation():
    from cmim_hf.evaluation.search_quality import _bootstrap, molecular_properties

    props = molecular_properties(["CCO", "not a molecule", "c1ccccc1O"])
    np.testing.assert_allclose(props[0], [-0.0014, 20.23, 0.4068], atol=1e-3)  # RDKit's ethanol
    np.testing.assert_allclose(props[2, 1], 20.23, atol=1e-2)  # phenol's one OH: the same TPSA
    assert np.isnan(props[1]).all()
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    draws = np.random.default_rng(0).integers(0, 4, size=(50, 4))
    perfect = _bootstrap(truth, truth.copy(), np.full(4, 2.5), draws)
    assert perfect["mae"]["value"] == 0 and perfect["r2"]["value"] == 1 and perfect["spearman"]["value"] == 1
    assert perfect["mae_minus_ecfp4"]["value"] == -1.0  # 0 against the mean's |[-1.5, -.5, .5, 1.5]| = 1
    mean = _bootstrap(truth, np.full(4, 2.5), None, draws)
    assert mean["r2"]["value"] == 0 and np.isnan(mean["spearman"]["value"]) and "mae_minus_ecfp4" not in mean
