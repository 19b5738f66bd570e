"""Streaming `cmim-hf embed` to a parquet library, .npy and .csv (`cmim_hf.library`), its reader
(`cmim_hf.embedding_store`), resume after SIGKILL, two processes under `accelerate launch`, and `BatchEmbedder`."""

import contextlib
import gzip
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cmim_hf.commands.embed import main as embed_main
from cmim_hf.data import moses_data_dir
from cmim_hf.embedding_store import (COLUMNS, MANIFEST_NAME, iter_shards, load_embeddings, model_fingerprint,
                                     read_manifest)
from cmim_hf.embeddings import embed_smiles, load_pretrained
from cmim_hf.library import BatchEmbedder, embed_to_disk
from cmim_hf.pretrained import pretrained_path

SHIPPED = pretrained_path("cmim-moses-tiny")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
BAD = "C1CC("  # RDKit cannot parse it: an unclosed ring and branch


def _moses(n: int) -> list[str]:
    with gzip.open(moses_data_dir() / "test.csv.gz", "rt") as handle:
        next(handle)
        return [next(handle).strip() for _ in range(n)]


@pytest.fixture(scope="module")
def model():
    return load_pretrained(SHIPPED, device="cpu")


@pytest.fixture(scope="module")
def smiles():
    mols = _moses(60)
    mols[7] = BAD
    return mols


@pytest.fixture(scope="module")
def library(tmp_path_factory, smiles):
    source = tmp_path_factory.mktemp("in") / "mols.smi"
    source.write_text("".join(f"{s} name{i}\n" for i, s in enumerate(smiles)))
    out = tmp_path_factory.mktemp("out") / "lib.parquet"
    with pytest.warns(UserWarning, match=r"^1 of 60 rows are not SMILES that RDKit can parse \(flagged in the "
                                         r"'invalid' column\), e.g. row 7 = 'C1CC\('$"):
        summary = embed_to_disk(source, out, model=SHIPPED, shard_rows=16, device="cpu")
    return source, out, summary


def test_the_library_holds_every_row_as_embed_smiles_embeds_it(library, smiles, model):
    _, out, summary = library
    assert out.is_dir() and sorted(p.name for p in out.iterdir()) == [
        MANIFEST_NAME, "shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet", "shard-00003.parquet"]
    ids, texts, vectors = load_embeddings(out)
    expected = embed_smiles(*model, smiles, on_invalid="ignore")
    assert ids.tolist() == list(range(60)) and texts == smiles
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["rows"] == 60 and manifest["width"] == 384 == expected.shape[1]
    assert manifest["model_fingerprint"] == model_fingerprint(SHIPPED)
    assert [(s["first_row"], s["rows"]) for s in manifest["shards"]] == [(0, 16), (16, 16), (32, 16), (48, 12)]
    flags = pa.concat_tables(iter_shards(out, columns=("invalid", "unknown_tokens", "truncated")))
    assert np.flatnonzero(flags.column("invalid").to_numpy()).tolist() == [7]
    assert not flags.column("unknown_tokens").to_numpy().any() and not flags.column("truncated").to_numpy().any()
    assert summary.rows == summary.embedded == 60 and summary.counts["invalid"] == 1


def test_pandas_pyarrow_and_datasets_read_the_library_folder_as_it_is(library, smiles):
    import datasets

    _, out, _ = library
    frame = pd.read_parquet(out).sort_values("row_id")
    assert frame["smiles"].tolist() == smiles and len(frame["embedding"].iloc[0]) == 384
    table = pq.read_table(out)
    assert table.num_rows == 60 and table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    loaded = datasets.load_dataset("parquet", data_dir=str(out), split="train",
                                   cache_dir=str(out.parent / "hf-cache"))
    assert loaded.num_rows == 60 and sorted(loaded["row_id"]) == list(range(60))
    np.testing.assert_array_equal(np.asarray(loaded.sort("row_id")[3]["embedding"], dtype=np.float32),
                                  np.asarray(frame["embedding"].iloc[3]))


def test_float16_storage_halves_the_vectors_on_disk(tmp_path, smiles, library):
    _, out32, _ = library
    out16 = tmp_path / "half"
    embed_to_disk(smiles, out16, model=SHIPPED, shard_rows=16, storage_dtype="float16", device="cpu",
                  on_invalid="ignore")
    assert pq.read_schema(out16 / "shard-00000.parquet").field("embedding").type == pa.list_(pa.float16(), 384)
    _, _, half = load_embeddings(out16)
    _, _, full = load_embeddings(out32)
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, rtol=1e-3, atol=1e-3)
    def vector_bytes(folder):  # the embedding column's bytes in the files, compressed
        files = [pq.ParquetFile(path).metadata for path in folder.glob("shard-*.parquet")]
        column = list(COLUMNS).index("embedding")
        return sum(meta.row_group(g).column(column).total_compressed_size for meta in files
                   for g in range(meta.num_row_groups))

    assert vector_bytes(out16) < 0.6 * vector_bytes(out32)


def test_npy_and_csv_are_streamed_equal_to_the_library(tmp_path, library, capsys):
    source, out, _ = library
    _, texts, vectors = load_embeddings(out)
    argv = ["--model", str(SHIPPED), "--input", str(source), "--device", "cpu"]
    assert embed_main([*argv, "--output", str(tmp_path / "x.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), vectors, atol=1e-6)
    err = capsys.readouterr().err
    assert "cmim-hf embed: warning: 1 of 60 rows are not SMILES that RDKit can parse, e.g. row 7 = 'C1CC('" in err
    assert embed_main([*argv, "--output", str(tmp_path / "x.csv"), "--on_invalid", "ignore"]) == 0
    frame = pd.read_csv(tmp_path / "x.csv")
    assert frame["smiles"].tolist() == texts and frame.shape == (60, 385)
    np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(), vectors, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv", "x.npy"]  # no temporary file left


def test_a_lone_dash_reads_stdin_into_a_library(tmp_path, monkeypatch, library):
    _, out, _ = library
    _, texts, vectors = load_embeddings(out)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(texts[:20]) + "\n\n"))
    assert embed_main(["-", "--model", str(SHIPPED), "--output", str(tmp_path / "lib"), "--shard_rows", "8",
                       "--on_invalid", "ignore"]) == 0
    _, got_texts, got = load_embeddings(tmp_path / "lib")
    assert got_texts == texts[:20]
    np.testing.assert_allclose(got, vectors[:20], atol=1e-5)


def _one_error_line(capsys) -> str:
    """The one line of stderr that is not transformers' weight-loading bar (shown when a model loads)."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("Loading weights")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_changed_setting_model_or_input_refuses_to_resume_naming_it(tmp_path, smiles, capsys):
    source = tmp_path / "mols.smi"
    source.write_text("".join(s + "\n" for s in smiles[10:40]))
    lib = tmp_path / "lib"
    argv = ["--model", str(SHIPPED), "--input", str(source), "--output", str(lib), "--shard_rows", "10",
            "--on_invalid", "ignore"]
    assert embed_main(argv) == 0
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in lib.glob("shard-*")}
    assert embed_main([*argv, "--kind", "latent"]) == 1
    assert _one_error_line(capsys) == (f"cmim-hf embed: error: {lib} was embedded with kind='informative', this run "
                                       "has kind='latent'; rerun with the same settings to resume, or write to "
                                       "another --output")
    assert embed_main([*argv, "--storage_dtype", "float16"]) == 1
    assert "storage_dtype='float32', this run has storage_dtype='float16'" in _one_error_line(capsys)
    other = tmp_path / "other-model"
    shutil.copytree(SHIPPED, other)
    weights = other / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert embed_main([*argv[2:], "--model", str(other)]) == 1
    assert f"{lib} was embedded with another model (other weights)" in _one_error_line(capsys)
    original = source.read_text().splitlines()
    lines = list(original)
    lines[15] = "CCO"
    source.write_text("\n".join(lines) + "\n")
    assert embed_main(argv) == 1
    assert _one_error_line(capsys) == (f"cmim-hf embed: error: the input changed since {lib} was started: rows "
                                       "10..19 (shard 1) differ from those embedded then; write to another --output")
    source.write_text("\n".join(original[:20]) + "\n")  # shorter, its first shards unchanged
    assert embed_main(argv) == 1
    assert "it ends before shard 2 embedded then" in _one_error_line(capsys)
    assert {p.name: p.stat().st_mtime_ns for p in lib.glob("shard-*")} == before  # no shard touched
    assert read_manifest(lib)["complete"]  # the refused reruns leave the finished library as it was


@pytest.mark.parametrize("make, argv_tail, message", [
    (lambda d: (d / "notes").mkdir() or (d / "notes" / "a.txt").write_text("x"), ["{d}/notes"],
     "--output {d}/notes is a folder that holds files but no .manifest.json: not a library cmim-hf embed wrote"),
    (lambda d: (d / "file.parquet").write_text("x"), ["{d}/file.parquet"],
     "--output {d}/file.parquet is a file; a parquet library is a folder"),
    (lambda d: (d / "empty.smi").write_text("\n\n"), ["{d}/lib", "--input", "{d}/empty.smi"],
     "nothing to embed: {d}/empty.smi has no rows"),
    (lambda d: None, ["{d}/x.txt"], "--output must end in .npy, .csv or .parquet, or be a folder"),
])
def test_bad_outputs_and_an_empty_input_are_one_error_line(tmp_path, capsys, make, argv_tail, message):
    make(tmp_path)
    argv = [a.format(d=tmp_path) for a in argv_tail]
    input_args = [] if "--input" in argv else ["--input", str(tmp_path / "in.smi")]
    (tmp_path / "in.smi").write_text("CCO\n")
    argument_error = "nothing to embed" not in message  # found before any work: exit 2
    with pytest.raises(SystemExit) if argument_error else contextlib.nullcontext():
        code = embed_main(["--model", str(SHIPPED), *input_args, "--output", *argv])
        assert code == 1
    assert message.format(d=tmp_path) in _one_error_line(capsys)
    assert not (tmp_path / "lib").exists()


def _write_moses_smi(path: Path, n: int) -> Path:
    path.write_text("".join(s + "\n" for s in _moses(n)))
    return path


def _rows(folder: Path) -> dict[str, np.ndarray]:
    table = pa.concat_tables(iter_shards(folder))
    return {name: np.stack(table.column(name).to_numpy(zero_copy_only=False)) if name == "embedding"
            else table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def test_a_run_killed_at_a_random_shard_resumes_to_the_same_rows(tmp_path):
    source = _write_moses_smi(tmp_path / "mols.smi", 1200)
    reference = tmp_path / "reference"
    embed_to_disk(source, reference, model=SHIPPED, shard_rows=100, device="cpu", on_invalid="ignore")
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "cmim_hf", "embed", "--model", str(SHIPPED), "--input", str(source),
               "--output", str(out), "--shard_rows", "100", "--on_invalid", "ignore", "--device", "cpu"]
    kill_after = random.Random().randint(1, 9)  # finished shards before the kill; printed on failure
    run = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while len(list(out.glob("shard-*.parquet"))) < kill_after and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("shard-*.parquet")}
    assert kill_after <= len(finished) < 12, (kill_after, sorted(finished))
    assert embed_main(command[4:]) == 0
    for name, identity in finished.items():  # a finished shard is never rewritten
        assert ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) == identity, (kill_after, name)
    got, want = _rows(out), _rows(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        assert np.array_equal(got[name], want[name]), (kill_after, name)
    assert read_manifest(out)["complete"] and not list(out.glob(".shard-*"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_under_accelerate_launch_write_the_rows_of_one(tmp_path):
    source = _write_moses_smi(tmp_path / "mols.smi", 300)
    one = tmp_path / "one"
    embed_to_disk(source, one, model=SHIPPED, shard_rows=50, device="cpu", on_invalid="ignore")
    two = tmp_path / "two"
    # --multi_gpu on a machine without GPUs: two CPU processes over gloo, as the training's DDP test runs them
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "cmim_hf", "embed",
               "--model", str(SHIPPED), "--input", str(source), "--output", str(two), "--shard_rows", "50",
               "--on_invalid", "ignore", "--device", "cpu", "--progress"]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = read_manifest(two)
    assert manifest["num_processes"] == 2 and len(manifest["shards"]) == 6
    assert done.stderr.count("cmim-hf embed: [process 1/2] shard") == 3  # rank 1 wrote shards 1, 3, 5
    got, want = _rows(two), _rows(one)
    for name in want:
        assert np.array_equal(got[name], want[name]), name


def test_batch_embedder_adds_the_embedding_to_pandas_and_arrow_batches(model, smiles):
    embedder = BatchEmbedder(SHIPPED, device="cpu")
    frame = pd.DataFrame({"smiles": smiles[:10], "id": range(10)})
    out = embedder(frame)
    expected = embed_smiles(*model, smiles[:10], on_invalid="ignore")
    assert list(out.columns) == ["smiles", "id", "embedding", "invalid", "unknown_tokens", "truncated"]
    np.testing.assert_allclose(np.stack(out["embedding"]), expected, atol=1e-5)
    assert out["invalid"].tolist() == [i == 7 for i in range(10)] and list(frame.columns) == ["smiles", "id"]
    table = embedder(pa.Table.from_pandas(frame))
    assert isinstance(table, pa.Table) and table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    np.testing.assert_allclose(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"the batch has no column 'mol'; its columns are \['smiles', 'id'\]"):
        BatchEmbedder(column="mol", encoder=embedder.encoder)(frame)
    with pytest.raises(ValueError, match="row 1 of column 'smiles' of the batch is empty"):
        embedder(pd.DataFrame({"smiles": ["CCO", None]}))


@pytest.mark.slow  # two minutes on a loaded 2-core machine (Ray starts its workers); `pip install "cmim-hf[ray]"`
def test_batch_embedder_runs_in_ray_data_map_batches(model, smiles):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        frame = pd.DataFrame({"smiles": smiles[:20], "id": range(20)})
        out = ray.data.from_pandas(frame).map_batches(
            BatchEmbedder, fn_constructor_kwargs={"model": str(SHIPPED), "device": "cpu"}, batch_format="pandas",
            batch_size=8, concurrency=1).to_pandas().sort_values("id")
    finally:
        ray.shutdown()
    np.testing.assert_allclose(np.stack(out["embedding"]), embed_smiles(*model, smiles[:20], on_invalid="ignore"),
                               atol=1e-5)
    assert out["invalid"].tolist() == [i == 7 for i in range(20)]


@pytest.mark.slow  # starts a JVM; needs `pip install pyspark` and Java 17+
def test_batch_embedder_runs_in_spark_map_in_pandas(model, smiles, tmp_path, monkeypatch):
    pytest.importorskip("pyspark")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # Spark's Python workers: this environment
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    from pyspark.sql import SparkSession
    from pyspark.sql.types import ArrayType, BooleanType, FloatType, StringType, StructField, StructType

    def embed_partitions(batches):  # the example of docs/embedding-at-scale.md
        embedder = BatchEmbedder(str(SHIPPED), kind="informative", device="cpu")
        for batch in batches:
            yield embedder(batch)

    schema = StructType([StructField("smiles", StringType()), StructField("embedding", ArrayType(FloatType())),
                         StructField("invalid", BooleanType()), StructField("unknown_tokens", BooleanType()),
                         StructField("truncated", BooleanType())])
    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        frame = spark.createDataFrame(pd.DataFrame({"smiles": smiles[:20]}))
        frame.mapInPandas(embed_partitions, schema).write.parquet(str(tmp_path / "out"))
    finally:
        spark.stop()
    out = pd.read_parquet(tmp_path / "out")
    expected = dict(zip(smiles[:20], embed_smiles(*model, smiles[:20], on_invalid="ignore")))
    np.testing.assert_allclose(np.stack(out["embedding"]), np.stack([expected[s] for s in out["smiles"]]), atol=1e-5)
    assert sorted(out["smiles"]) == sorted(smiles[:20]) and out["invalid"].sum() == 1


def test_named_data_sets_stream_in_chunks_as_read_texts_reads_them():
    from cmim_hf.data import iter_text_chunks, read_texts

    chunks = iter_text_chunks("moses", split="test", chunk_rows=1000)
    assert next(chunks) == _moses(1000) and len(next(chunks)) == 1000
    assert read_texts("moses", split="test")[:2000] == _moses(2000)  # the in-memory reader knows the name too
    with pytest.raises(ValueError, match=r"moses holds splits \['train', 'test', 'test_scaffolds'\]; choose one"):
        next(iter_text_chunks("moses"))
    with pytest.raises(ValueError, match="chunk_rows must be a positive int, got 0"):
        next(iter_text_chunks("moses", split="test", chunk_rows=0))


def test_the_reader_refuses_a_damaged_or_unfinished_library_in_one_line(tmp_path, library):
    _, out, _ = library
    copy = tmp_path / "lib"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    (copy / MANIFEST_NAME).write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(ValueError, match=f"{copy} is not complete \\(4 shards finished\\): rerun the cmim-hf embed"):
        load_embeddings(copy)
    assert len(load_embeddings(copy, require_complete=False)[0]) == 60
    (copy / MANIFEST_NAME).write_text(json.dumps({**manifest, "width": 385}))
    with pytest.raises(ValueError, match="shard-00000.parquet holds embeddings of type fixed_size_list<element: float>"
                                         "\\[384\\], the manifest says width 385"):
        load_embeddings(copy)
    (copy / MANIFEST_NAME).write_text(json.dumps({k: v for k, v in manifest.items() if k != "kind"}))
    with pytest.raises(ValueError, match=r"of cmim-hf-embeddings version 1: keys \['kind'\] are missing"):
        read_manifest(copy)
    (copy / MANIFEST_NAME).write_text("{")
    with pytest.raises(ValueError, match="is damaged: not JSON"):
        read_manifest(copy)
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    (copy / "shard-00002.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(ValueError, match="shard-00002.parquet is damaged"):
        load_embeddings(copy)
    (copy / "shard-00002.parquet").unlink()
    with pytest.raises(ValueError, match="lists shard-00002.parquet in its manifest, but the file is missing"):
        read_manifest(copy)
    with pytest.raises(FileNotFoundError, match="holds no .manifest.json: not a library cmim-hf embed wrote"):
        read_manifest(tmp_path)


def test_a_finished_library_refuses_an_input_that_grew(tmp_path, smiles, capsys):
    source = tmp_path / "mols.smi"
    source.write_text("".join(s + "\n" for s in smiles[:20]))
    argv = ["--model", str(SHIPPED), "--input", str(source), "--output", str(tmp_path / "lib"), "--shard_rows", "10",
            "--on_invalid", "ignore"]
    assert embed_main(argv) == 0
    assert embed_main([a for a in argv if a not in ("--shard_rows", "10")]) == 0  # its own shard size; nothing to do
    assert "embedded 20 molecules (informative, 384 dims, 20 from an earlier run)" in capsys.readouterr().err
    source.write_text("".join(s + "\n" for s in smiles[:25]))
    assert embed_main(argv) == 1
    assert _one_error_line(capsys) == (f"cmim-hf embed: error: the input changed since {tmp_path / 'lib'} was "
                                       "finished: it now has more than its 20 rows; write to another --output")


def test_without_rdkit_the_default_warns_that_validity_was_not_checked(tmp_path, smiles, monkeypatch):
    """As embed_smiles: only on_invalid='raise' needs RDKit; 'warn' embeds and says nothing was checked."""
    import cmim_hf.chem
    from cmim_hf.library import embed_to_disk

    def no_rdkit(what):
        raise ImportError(f"{what} needs RDKit")

    monkeypatch.setattr(cmim_hf.chem, "require_rdkit", no_rdkit)
    with pytest.warns(UserWarning, match="SMILES validity was not checked"):
        embed_to_disk(smiles[:20], tmp_path / "lib", model=str(SHIPPED), shard_rows=10)
    assert read_manifest(tmp_path / "lib")["check_validity"] is False
    with pytest.raises(ImportError, match="needs RDKit"):
        embed_to_disk(smiles[:20], tmp_path / "other", model=str(SHIPPED), on_invalid="raise")


def test_a_damaged_finished_shard_is_refused_on_rerun_not_taken_as_done(tmp_path, smiles):
    from cmim_hf.library import embed_to_disk

    lib, copy = tmp_path / "lib", tmp_path / "copy"
    embed_to_disk(smiles[:30], lib, model=str(SHIPPED), shard_rows=10, on_invalid="ignore")
    shutil.copytree(lib, copy)  # new mtimes, the same bytes: hashed again on rerun, and accepted
    assert embed_to_disk(smiles[:30], copy, model=str(SHIPPED), shard_rows=10, on_invalid="ignore").embedded == 0
    shard = lib / "shard-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[:7] = b"garbage"  # same size, a new mtime: as a disk error would leave it
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="shard-00001.parquet changed since it was written"):
        embed_to_disk(smiles[:30], lib, model=str(SHIPPED), shard_rows=10, on_invalid="ignore")
    with pytest.raises(ValueError, match=r"shard-00001.parquet is damaged: [^\n]*$"):  # one line, for index/search
        list(iter_shards(lib))
    shard.unlink()  # what the error says to do
    assert embed_to_disk(smiles[:30], lib, model=str(SHIPPED), shard_rows=10, on_invalid="ignore").embedded == 10
    assert read_manifest(lib)["complete"]
