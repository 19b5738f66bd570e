"""Embed a whole compound library to disk, streamed, resumable and data-parallel (`cmim-hf embed --output`).

    embed_to_disk("moses", "train-emb", split="train")                 # sharded parquet folder + .manifest.json
    embed_to_disk("library.smi", "library.npy")                         # one .npy, filled through a memory map
    accelerate launch --num_processes 4 -m cmim_hf embed --input library.smi --output lib/   # data-parallel

Memory holds one shard (`shard_rows` texts and their vectors), never the whole input: the input is read in
chunks by `cmim_hf.data.iter_text_chunks`, and every chunk is written as soon as it is embedded.

The parquet library (`cmim_hf.embedding_store` describes the folder) is resumable: shard `i` holds input rows
`[i * shard_rows, (i + 1) * shard_rows)`, is written to a hidden temporary name and renamed, and carries in its
parquet footer the digest of its input texts and of the settings it was made with. A shard file under its final
name is therefore finished; rerunning the same command skips the finished shards (checking that their input
texts are the same), and refuses, naming the difference, when the model, kind, dtypes, input or shard size
changed. Under `accelerate launch`, process `r` of `N` embeds the shards `i` with `i % N == r`, so the rows do
not depend on `N`; the main process writes the manifest (`.manifest.json`) after each of its shards and,
complete, after all processes are done.

The per-batch embedding is one object, a `BatchEncoder` (texts -> `EmbeddedBatch`: float32 vectors and the
three flags) over a backend's batch function: PyTorch (`BatchEncoder.from_model`) or ONNX Runtime
(`BatchEncoder.from_onnx`, what `backend="onnx"` builds); any other function of that shape can be passed as
`encoder=` to `embed_to_disk` or `BatchEmbedder`.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .embedding_store import (FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, SHARD_PATTERN, file_sha256,
                              model_fingerprint, parse_manifest)

__all__ = ["DEFAULT_SHARD_ROWS", "STORAGE_DTYPES", "BatchEmbedder", "EmbedSummary", "EmbeddedBatch",
           "BatchEncoder", "embed_to_disk", "output_kind"]

# Rows per shard: the unit of memory, of resume and of the work split over processes. A shard of 50,000 rows
# (the first default) peaked at 1.0 GB with the default model, against 0.73 GB for a 20,000-row input; at 10,000
# rows the peak no longer depends on the input's size (docs/embedding-at-scale.md has the measurements).
DEFAULT_SHARD_ROWS = 10_000
STORAGE_DTYPES = ("float32", "float16")
FLAGS = ("invalid", "unknown_tokens", "truncated")
_FOOTER_KEY = b"cmim_hf"  # parquet key-value metadata of a shard: its index, rows and digests
# Settings that change what a shard holds: a resumed run refuses to mix shards that differ in any of them.
_SETTINGS = ("model_fingerprint", "backend", "kind", "width", "storage_dtype", "dtype", "shard_rows", "input", "split",
             "text_column", "check_validity")
_EXAMPLES = 3  # flagged rows named per flag in a warning


# ------------------------------------------------------------------------------------------------
# The per-batch embedding: texts -> vectors and flags (the part another backend replaces)
# ------------------------------------------------------------------------------------------------
@dataclass
class EmbeddedBatch:
    """What an encoder returns for n texts: `vectors` (n, E) float32 in the input order, and three (n,) bool
    flags: `invalid` (RDKit cannot parse it; all False when not checked), `unknown_tokens` (the tokenizer mapped
    part of it to <unk>), `truncated` (longer than the model reads; its embedding is of the cut text)."""

    vectors: np.ndarray
    invalid: np.ndarray
    unknown_tokens: np.ndarray
    truncated: np.ndarray


class BatchEncoder:
    """A loaded model as a function texts -> `EmbeddedBatch`, whatever runs it (PyTorch, ONNX Runtime). Never
    raises on an unparsable or too long text (it flags it); `texts` must be non-empty str (see
    `check_texts_in_rows`). Build it with `from_model` (PyTorch) or `from_onnx` (an ONNX export).

    Args:
        tokenizer: the model's tokenizer.
        forward: right-padded int64 arrays (B, T) input ids and attention mask -> float32 (B, width).
        width: the embedding's width. max_length: the longest input the model reads (longer ones are cut).
        batch_size: molecules per forward pass (the vectors do not depend on it).
        check_validity: parse every text with RDKit for the `invalid` flag (needs RDKit).
    """

    def __init__(self, tokenizer, forward: Callable, *, width: int, max_length: int, batch_size: int = 64,
                 check_validity: bool = True):
        if check_validity:
            from .chem import require_rdkit

            require_rdkit("the invalid flag (on_invalid='ignore' skips it)")
        self.tokenizer, self.forward, self.width, self.max_length = tokenizer, forward, int(width), int(max_length)
        self.batch_size, self.check_validity = batch_size, check_validity

    @classmethod
    def from_model(cls, model, tokenizer, *, kind: str = "informative", **options) -> "BatchEncoder":
        """The PyTorch backend: `model`, `tokenizer` as `cmim_hf.load_pretrained` returns them."""
        from .embeddings import max_input_length, torch_forward
        from .modeling import check_embedding_kind, embedding_size

        check_embedding_kind(kind, model.config)
        return cls(tokenizer, torch_forward(model, kind), width=embedding_size(model.config, kind),
                   max_length=max_input_length(model, tokenizer), **options)

    @classmethod
    def from_onnx(cls, embedder, *, kind: str = "informative", **options) -> "BatchEncoder":
        """The ONNX Runtime backend: `embedder` a `cmim_hf.onnx_backend.ONNXEmbedder`."""
        return cls(embedder.tokenizer, embedder.forward(kind), width=embedder.width(kind),
                   max_length=embedder.max_length, **options)

    def __call__(self, texts: list[str]) -> EmbeddedBatch:
        from .embeddings import embed_ids, truncate_ids
        from .tokenization import encode_texts

        all_ids = encode_texts(self.tokenizer, texts) if texts else []
        unk = self.tokenizer.unk_token_id
        unknown = np.array([unk is not None and unk in ids for ids in all_ids], dtype=bool)
        truncated = np.array([len(ids) > self.max_length for ids in all_ids], dtype=bool)
        if self.check_validity:
            from .chem import to_mol

            invalid = np.array([to_mol(text) is None for text in texts], dtype=bool)
        else:
            invalid = np.zeros(len(texts), dtype=bool)
        vectors = embed_ids(self.tokenizer, truncate_ids(self.tokenizer, texts, all_ids, self.max_length),
                            self.forward, width=self.width, batch_size=self.batch_size)
        return EmbeddedBatch(vectors, invalid, unknown, truncated)


def check_texts_in_rows(texts: list, first_row: int, where: str) -> None:
    """Refuse a chunk with an item that is not a str or is blank, naming its row in the input (a CSV's empty
    cell reads as None): such a row cannot be embedded, and dropping it would shift every later row id."""
    for offset, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            missing = text is None or isinstance(text, float) and text != text  # None, or pandas' NaN
            raise ValueError(f"row {first_row + offset} of {where} is {'empty' if missing else repr(text)[:60]}"
                             "; every row must hold a SMILES (remove or fill it)")


# ------------------------------------------------------------------------------------------------
# Cluster engines: Ray Data map_batches, Spark mapInPandas / predict_batch_udf
# ------------------------------------------------------------------------------------------------
class BatchEmbedder:
    """Load a model once, then map a batch (pandas DataFrame or pyarrow Table) to the same batch plus an
    `embedding` column (one float32 list per row) and the `invalid`, `unknown_tokens`, `truncated` flags.

        ds.map_batches(BatchEmbedder, fn_constructor_kwargs={"model": "cmim-moses-tiny"}, batch_format="pandas",
                       concurrency=4)                                            # Ray Data
        df.mapInPandas(lambda batches: map(embedder, batches), schema)           # Spark

    Args:
        model: a shipped name, folder or Hub id (see `load_pretrained`).
        kind: the embedding kind. column: the column holding the SMILES.
        batch_size, device, dtype: see `embed_smiles` / `load_pretrained`.
        check_validity: fill `invalid` with RDKit (needs RDKit); else it is all False.
        encoder: a ready texts -> `EmbeddedBatch` function (another backend); then `model` is not loaded.
    """

    def __init__(self, model: str | os.PathLike = "cmim-moses-tiny", *, kind: str = "informative",
                 column: str = "smiles", batch_size: int = 64, device: str | None = None, dtype: str | None = None,
                 check_validity: bool = True, encoder: Callable[[list[str]], EmbeddedBatch] | None = None):
        if encoder is None:
            from .embeddings import load_pretrained

            loaded, tokenizer = load_pretrained(model, device=device, dtype=dtype)
            encoder = BatchEncoder.from_model(loaded, tokenizer, kind=kind, batch_size=batch_size,
                                              check_validity=check_validity)
        self.encoder, self.column = encoder, column

    def __call__(self, batch):
        """`batch` (pandas DataFrame or pyarrow Table) with `embedding` and the flags added; same type back."""
        import pyarrow as pa

        is_arrow = isinstance(batch, pa.Table)
        columns = batch.column_names if is_arrow else list(batch.columns)
        if self.column not in columns:
            raise ValueError(f"the batch has no column {self.column!r}; its columns are {columns} (pass column=)")
        texts = batch.column(self.column).to_pylist() if is_arrow else batch[self.column].tolist()
        check_texts_in_rows(texts, 0, f"column {self.column!r} of the batch")
        embedded = self.encoder(texts)
        if is_arrow:
            width = embedded.vectors.shape[1]
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(embedded.vectors.reshape(-1)), width)
            batch = batch.append_column("embedding", vectors)
            for flag in FLAGS:
                batch = batch.append_column(flag, pa.array(getattr(embedded, flag)))
            return batch
        batch = batch.copy()
        batch["embedding"] = list(embedded.vectors)
        for flag in FLAGS:
            batch[flag] = getattr(embedded, flag)
        return batch


# ------------------------------------------------------------------------------------------------
# Output kinds and the summary of a run
# ------------------------------------------------------------------------------------------------
def output_kind(path: str | os.PathLike) -> str:
    """"npy", "csv" or "parquet" (a library folder: a path ending in .parquet, without a suffix, or a folder)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".npy", ".csv"):
        return suffix[1:]
    if suffix == ".parquet" or not suffix or path.is_dir():
        return "parquet"
    raise ValueError(f"--output must end in .npy, .csv or .parquet, or be a folder; got {str(path)!r}")


@dataclass
class EmbedSummary:
    """What `embed_to_disk` did: `rows` in the output (all of the input), `embedded` by this run (the rest were
    finished shards of an earlier run), the width, seconds, and the flag counts over the whole output."""

    output: Path
    rows: int
    embedded: int
    width: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)  # flag -> "row i = 'text'", this run's first ones


class _Flags:
    """Counts (and the first examples) of flagged rows, and the `on_*` policies: "raise" stops at the first."""

    MESSAGES = {"invalid": "are not SMILES that RDKit can parse", "unknown_tokens":
                "have pieces the tokenizer maps to <unk>", "truncated": "are longer than the model reads (truncated)"}

    def __init__(self, policies: dict[str, str], where: str):
        self.policies, self.where = policies, where
        self.counts = {flag: 0 for flag in FLAGS}
        self.examples: dict[str, list[str]] = {flag: [] for flag in FLAGS}

    def add(self, batch: EmbeddedBatch, texts: list[str], first_row: int) -> None:
        for flag in FLAGS:
            rows = np.flatnonzero(getattr(batch, flag))
            if not len(rows):
                continue
            named = [f"row {first_row + i} = {texts[i][:60]!r}" for i in rows[:_EXAMPLES]]
            if self.policies[flag] == "raise":
                raise ValueError(f"{len(rows)} rows of {self.where} (from row {first_row}) {self.MESSAGES[flag]}: "
                                 + ", ".join(named))
            self.counts[flag] += len(rows)
            self.examples[flag] += named[:_EXAMPLES - len(self.examples[flag])]

    def warn(self, total: int, flagged_in_output: bool) -> None:
        for flag in FLAGS:
            if self.counts[flag] and self.policies[flag] == "warn":
                note = f" (flagged in the {flag!r} column)" if flagged_in_output else ""
                warnings.warn(f"{self.counts[flag]} of {total} rows {self.MESSAGES[flag]}{note}, e.g. "
                              + ", ".join(self.examples[flag]), UserWarning, stacklevel=3)


def _digest(texts: Iterable[str]) -> str:
    """SHA-256 of a chunk's texts (each followed by a NUL), to tell whether a resumed run reads the same input."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(str(text).encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def _chunks(source, text_column, split, chunk_rows: int, stdin) -> Iterator[list]:
    if isinstance(source, (str, os.PathLike)):
        from .data import iter_text_chunks

        yield from iter_text_chunks(source, text_column, split=split, chunk_rows=chunk_rows, allow_stdin=True,
                                    stdin=stdin)
        return
    if isinstance(source, (bytes, dict)) or not isinstance(source, Iterable):
        raise TypeError(f"source must be a path, a data set name, '-' or an iterable of SMILES, got "
                        f"{type(source).__name__}")
    items = iter(source)
    while chunk := list(itertools.islice(items, chunk_rows)):
        yield chunk


def _manifest_name(source) -> str:
    """How the manifest names the input or the model: a local path resolved (an index or search run from another
    folder must find it), a name (shipped, Hub id, data set) or `-` as given, a Python iterable as <iterable>."""
    if not isinstance(source, (str, os.PathLike)):
        return "<iterable>"
    name = os.fspath(source)
    return str(Path(name).resolve()) if name != "-" and Path(name).exists() else name


# ------------------------------------------------------------------------------------------------
# The parquet library
# ------------------------------------------------------------------------------------------------
def _settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps({k: settings[k] for k in _SETTINGS}, sort_keys=True).encode()).hexdigest()


def _shard_index(path: Path) -> int | None:
    stem = path.name.removeprefix("shard-").removesuffix(".parquet")
    return int(stem) if path.name.startswith("shard-") and path.name.endswith(".parquet") and stem.isdigit() else None


def _finished_shards(folder: Path, settings_digest: str) -> dict[int, dict]:
    """index -> the footer record of every finished shard (a shard file under its final name) in `folder`.
    Raises ValueError for a shard that cannot be read or was made with other settings."""
    import pyarrow.parquet as pq

    shards = {}
    for path in sorted(folder.glob("shard-*.parquet")):
        index = _shard_index(path)
        if index is None:
            continue
        try:
            metadata = pq.read_schema(path).metadata or {}
            record = json.loads(metadata[_FOOTER_KEY])
        except Exception as error:  # a truncated or foreign file: ArrowInvalid, OSError, KeyError, ...
            raise ValueError(f"{path} is not a shard cmim-hf embed finished ({type(error).__name__}: {error}); "
                             "delete it and rerun to embed it again") from None
        if record.get("settings_sha256") != settings_digest:
            raise ValueError(f"{path} was made with other settings than {folder / MANIFEST_NAME} records; delete "
                             "the folder or write to another --output")
        record["file"], record["bytes"] = path.name, path.stat().st_size
        shards[index] = record
    return shards


def _read_manifest_if_any(folder: Path) -> dict | None:
    path = folder / MANIFEST_NAME
    if not path.exists():
        if folder.is_dir() and any(not child.name.startswith(".") for child in folder.iterdir()):
            raise ValueError(f"--output {folder} is a folder that holds files but no {MANIFEST_NAME}: not a library "
                             "cmim-hf embed wrote; write to a new or empty folder")
        return None
    return parse_manifest(path)


def _check_same_settings(old: dict, new: dict, folder: Path) -> None:
    """Refuse to resume a library made with other settings, naming the first that differs."""
    for key in _SETTINGS:
        before = old.get(key)
        if before != new[key]:
            what = "another model (other weights)" if key == "model_fingerprint" else \
                f"{key}={before!r}, this run has {key}={new[key]!r}"
            raise ValueError(f"{folder} was embedded with {what}; rerun with the same settings to resume, or write "
                             "to another --output")


def _check_finished_shards(manifest: dict, folder: Path) -> None:
    """Refuse to resume over a finished shard whose bytes are no longer those the manifest recorded (a shard that
    was touched since, by size and mtime, is hashed again): a damaged shard would otherwise pass as done."""
    for entry in manifest["shards"]:
        path = folder / entry["file"]
        if not path.is_file():
            continue  # a missing shard is embedded again
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (entry.get("bytes"), entry.get("mtime_ns")) and \
                file_sha256(path) != entry.get("sha256"):
            raise ValueError(f"{path} changed since it was written (its SHA-256 is not the one {MANIFEST_NAME} "
                             "records); delete it and rerun to embed it again")


class _ShardHashes:
    """SHA-256 of each shard file for the manifest, computed once per file (keyed by name, size and mtime)."""

    def __init__(self, old_manifest: dict | None):
        self.known = {}
        for entry in (old_manifest or {}).get("shards", []):
            if "sha256" in entry and "mtime_ns" in entry:
                self.known[(entry["file"], entry["bytes"], entry["mtime_ns"])] = entry["sha256"]

    def __call__(self, path: Path) -> tuple[str, int]:
        stat = path.stat()
        key = (path.name, stat.st_size, stat.st_mtime_ns)
        if key not in self.known:
            self.known[key] = file_sha256(path)
        return self.known[key], stat.st_mtime_ns


def _write_manifest(folder: Path, settings: dict, hashes: _ShardHashes, shards: dict[int, dict],
                    total_shards: int | None) -> dict:
    """Rewrite .manifest.json (atomically) listing `shards` (index -> footer record with "file" and "bytes", as
    `_finished_shards` gives); complete when all `total_shards` (known once the input is read to its end) are
    there."""
    from .saving import write_json_atomic

    entries = []
    for index in sorted(shards):
        record = shards[index]
        sha256, mtime_ns = hashes(folder / record["file"])
        entries.append({"file": record["file"], "first_row": record["first_row"], "rows": record["rows"],
                        "bytes": record["bytes"], "sha256": sha256, "mtime_ns": mtime_ns,
                        "input_sha256": record["input_sha256"], "counts": record["counts"]})
    complete = total_shards is not None and sorted(shards) == list(range(total_shards))
    manifest = {**settings, "shards": entries, "complete": complete,
                "rows": sum(entry["rows"] for entry in entries) if complete else None}
    write_json_atomic(folder / MANIFEST_NAME, manifest)
    return manifest


def _shard_table(texts: list[str], batch: EmbeddedBatch, first_row: int, storage_dtype: str, record: dict):
    import pyarrow as pa

    width = batch.vectors.shape[1]
    values = pa.array(batch.vectors.astype(storage_dtype, copy=False).reshape(-1))
    columns = {
        "row_id": pa.array(np.arange(first_row, first_row + len(texts), dtype=np.int64)),
        "smiles": pa.array(texts, type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(values, width),
        **{flag: pa.array(getattr(batch, flag), type=pa.bool_()) for flag in FLAGS},
    }
    return pa.table(columns, metadata={_FOOTER_KEY: json.dumps(record).encode()})


def _write_shard(path: Path, table) -> None:
    """Write `table` to a hidden temporary sibling of `path`, then rename it: `path` exists only complete."""
    import pyarrow.parquet as pq

    from .saving import atomic_output

    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, use_dictionary=False)  # unique SMILES and floats: a dictionary never pays


class _Processes:
    """This process's rank, the number of processes and a barrier: Accelerate's `PartialState` under
    `accelerate launch` (or torchrun), else one process."""

    def __init__(self, device: str | None):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch
            from accelerate import PartialState

            # `accelerate launch --multi_gpu` on a machine without accelerators (or --device cpu): the processes
            # on CPU over gloo (Accelerate would otherwise leave each one alone, as the training notes too).
            cpu = (device is not None and str(device).startswith("cpu")) or not torch.accelerator.is_available()
            state = PartialState(cpu=cpu)
            self.rank, self.world, self.device = state.process_index, state.num_processes, state.device
            self.barrier = state.wait_for_everyone
        else:
            self.rank, self.world, self.device, self.barrier = 0, 1, None, lambda: None


def _log(message: str) -> None:
    print(f"cmim-hf embed: {message}", file=sys.stderr, flush=True)


def _write_library(folder: Path, chunks: Iterator[list], encoder, settings: dict, flags: _Flags, processes: _Processes,
                   where: str, progress: bool) -> tuple[int, int, dict]:
    """Embed the pending shards of this process into `folder`; returns (rows in the output, rows embedded by this
    process, the final manifest or {} on other ranks)."""
    old = _read_manifest_if_any(folder)  # checked again: the folder may have changed while the model loaded
    if old is not None:
        _check_same_settings(old, settings, folder)
        _check_finished_shards(old, folder)
    hashes = _ShardHashes(old)
    if processes.rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(".shard-*.parquet.tmp-*"):  # an earlier run killed while writing a shard
            leftover.unlink(missing_ok=True)
        if old is None:  # a new library: mark the folder as one; an existing manifest stays until a shard lands
            _write_manifest(folder, settings, hashes, {}, None)
    processes.barrier()
    done = _finished_shards(folder, settings["settings_sha256"])
    known = dict(done)  # what the main process lists after each of its shards (the folder is read again at the end)
    old_total = len(old["shards"]) if old is not None and old.get("complete") else None
    shard_rows, embedded, count, start = settings["shard_rows"], 0, 0, time.perf_counter()
    for index, texts in enumerate(chunks):
        count = index + 1
        first_row = index * shard_rows
        if old_total is not None and index >= old_total:
            raise ValueError(f"the input changed since {folder} was finished: it now has more than its "
                             f"{old.get('rows')} rows; write to another --output")
        rows = f"{first_row}..{first_row + len(texts) - 1}"
        if index in done:
            if done[index]["input_sha256"] != _digest(texts):
                raise ValueError(f"the input changed since {folder} was started: rows {rows} (shard {index}) differ "
                                 "from those embedded then; write to another --output")
            continue
        if index % processes.world != processes.rank:
            continue
        check_texts_in_rows(texts, first_row, where)
        batch = encoder(texts)
        flags.add(batch, texts, first_row)
        record = {"index": index, "first_row": first_row, "rows": len(texts), "input_sha256": _digest(texts),
                  "settings_sha256": settings["settings_sha256"],
                  "counts": {flag: int(getattr(batch, flag).sum()) for flag in FLAGS}}
        path = folder / SHARD_PATTERN.format(index=index)
        _write_shard(path, _shard_table(texts, batch, first_row, settings["storage_dtype"], record))
        embedded += len(texts)
        if processes.rank == 0:  # not a rescan of every shard's footer per shard: that grew with the square
            known[index] = {**record, "file": path.name, "bytes": path.stat().st_size}
            _write_manifest(folder, settings, hashes, known, None)
        if progress:
            rate = embedded / (time.perf_counter() - start)
            _log(f"[process {processes.rank}/{processes.world}] shard {index} (rows {rows}) written; {embedded} rows "
                 f"embedded by this process, {rate:.0f} rows/s")
    missing_input = [index for index in done if index >= count]
    if missing_input:
        raise ValueError(f"the input changed since {folder} was started: it ends before shard {min(missing_input)} "
                         "embedded then; write to another --output")
    processes.barrier()
    manifest = _write_manifest(folder, settings, hashes, _finished_shards(folder, settings["settings_sha256"]),
                               count) if processes.rank == 0 else {}
    return (manifest.get("rows") or 0), embedded, manifest


# ------------------------------------------------------------------------------------------------
# .npy and .csv files
# ------------------------------------------------------------------------------------------------
def csv_header(embedding_kind: str, width: int) -> list[str]:
    """The header of an embedding CSV (`cmim-hf embed --output x.csv`): smiles, then one column per dimension."""
    return ["smiles"] + [f"cmim_{embedding_kind}_{i}" for i in range(width)]


def csv_row(text: str, vector) -> list[str]:
    """One row of an embedding CSV; repr gives the shortest float that round-trips."""
    return [text, *(repr(float(v)) for v in vector)]


def _write_file(path: Path, kind: str, chunks: Iterator[list], encoder, storage_dtype: str, flags: _Flags,
                where: str, embedding_kind: str) -> int:
    """Stream the vectors into `.npy` (a raw spool file, then copied into an `open_memmap` of the final shape:
    the row count is known only at the end) or `.csv` (smiles + one column per dimension); either is written to
    a hidden temporary sibling and renamed when complete. Returns the rows written."""
    from .saving import _create_sibling, atomic_output

    spool = None
    rows = 0
    with atomic_output(path) as tmp:
        try:
            with open(tmp, "w", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n") if kind == "csv" else None
                for index, texts in enumerate(chunks):
                    check_texts_in_rows(texts, rows, where)
                    batch = encoder(texts)
                    flags.add(batch, texts, rows)
                    vectors = batch.vectors.astype(storage_dtype, copy=False)
                    if writer is not None:
                        if index == 0:
                            width = vectors.shape[1]
                            writer.writerow(csv_header(embedding_kind, width))
                        writer.writerows(csv_row(text, row) for text, row in zip(texts, vectors))
                    else:
                        if spool is None:
                            spool, spool_fd = _create_sibling(path, "spool", lambda c: os.open(
                                c, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                            spool_handle = os.fdopen(spool_fd, "wb")
                            width = vectors.shape[1]
                        spool_handle.write(np.ascontiguousarray(vectors).tobytes())
                    rows += len(texts)
            if spool is not None:
                spool_handle.close()
                raw = np.memmap(spool, dtype=storage_dtype, mode="r", shape=(rows, width))
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=storage_dtype, shape=(rows, width))
                step = max(1, (64 << 20) // max(1, width * raw.itemsize))  # 64 MB at a time
                for first in range(0, rows, step):
                    out[first:first + step] = raw[first:first + step]
                out.flush()
                del out, raw
        finally:
            if spool is not None:
                if not spool_handle.closed:
                    spool_handle.close()
                Path(spool).unlink(missing_ok=True)
    return rows


# ------------------------------------------------------------------------------------------------
# The entry point
# ------------------------------------------------------------------------------------------------
def embed_to_disk(
    source: str | os.PathLike | Iterable[str],
    output: str | os.PathLike,
    *,
    model: str | os.PathLike = "cmim-moses-tiny",
    kind: str = "informative",
    text_column: str | None = None,
    split: str | None = None,
    shard_rows: int | None = None,
    storage_dtype: str = "float32",
    batch_size: int = 64,
    device: str | None = None,
    dtype: str = "float32",
    on_unknown: str = "warn",
    on_too_long: str = "warn",
    on_invalid: str = "warn",
    progress: bool = False,
    stdin=None,
    backend: str = "torch",
    encoder: Callable[[list[str]], EmbeddedBatch] | None = None,
) -> EmbedSummary:
    """Embed every SMILES of `source` into `output`, streamed (memory holds one shard of `shard_rows` rows).

    Args:
        source: a file, folder or Hub data set (what `cmim-hf embed --input` reads), a named data set ("moses",
            with `split`), "-" for stdin, or an iterable of SMILES.
        output: a folder, or a path ending in .parquet: the sharded, resumable library described in
            `cmim_hf.embedding_store` (rerun the same call after an interruption to finish it); `.npy` (N, E) or
            `.csv` (smiles + one column per dimension), written whole or not at all.
        model, kind, batch_size, device, dtype: see `load_pretrained` / `embed_smiles`.
        text_column, split: which column and split of `source` hold the SMILES.
        shard_rows: rows per shard (the unit of memory, of resume and of the work split over processes); default
            that of the library being resumed, else `DEFAULT_SHARD_ROWS`.
        storage_dtype: "float32" or "float16" (half the disk) for the stored vectors.
        on_unknown, on_too_long, on_invalid: "raise" stops at the first such row (naming it); "warn" (default)
            warns once at the end with the count; "ignore" (`on_too_long="truncate"`) is silent. Flagged rows are
            embedded, and marked in the library's flag columns; `on_invalid="ignore"` skips the RDKit parse.
        progress: a line per shard on stderr (rows, rows/s).
        backend: "torch", or "onnx": `model` is then a folder `cmim-hf export --format onnx` wrote, run by ONNX
            Runtime on the CPU (device and dtype unset); the manifest records the source model's fingerprint and
            the graph's SHA-256, so a library is never resumed with the other backend's vectors.
        encoder: a ready texts -> `EmbeddedBatch` function (another backend); `model` then names it for the
            manifest and its `model_fingerprint` is still read from the model's folder.

    Returns:
        An `EmbedSummary`. Under `accelerate launch` every process returns; `rows` is set on the main process.
    """
    from .chem import require_rdkit
    from .embeddings import load_pretrained
    from .hub import resolve_model
    from .checks import check_number

    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage_dtype must be one of {STORAGE_DTYPES}, got {storage_dtype!r}")
    for name, value, choices in (("on_unknown", on_unknown, ("ignore", "warn", "raise")),
                                 ("on_too_long", on_too_long, ("truncate", "warn", "raise")),
                                 ("on_invalid", on_invalid, ("ignore", "warn", "raise"))):
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    target = Path(output)
    kind_of_output = output_kind(target)
    if kind_of_output != "parquet" and target.is_dir():
        raise IsADirectoryError(f"--output {target} is a folder; a .{kind_of_output} output is a file")
    if kind_of_output == "parquet" and target.exists() and not target.is_dir():
        raise ValueError(f"--output {target} is a file; a parquet library is a folder (give a new or empty folder)")
    if shard_rows is None:  # resuming: the library's own shard size, so the rerun need not repeat it
        old = _read_manifest_if_any(target) if kind_of_output == "parquet" else None
        shard_rows = old.get("shard_rows", DEFAULT_SHARD_ROWS) if old is not None else DEFAULT_SHARD_ROWS
    check_number("shard_rows", shard_rows, integer=True, minimum=1)
    processes = _Processes(device)
    if processes.world > 1 and kind_of_output != "parquet":
        raise ValueError(f"several processes write a parquet library (a folder), not one .{kind_of_output} file")
    where = "the input" if not isinstance(source, (str, os.PathLike)) else \
        ("stdin" if os.fspath(source) == "-" else os.fspath(source))
    chunks = _chunks(source, text_column, split, shard_rows, stdin)
    first = next(chunks, None)  # an unreadable or empty input is found before the model loads
    if not first:
        raise ValueError(f"nothing to embed: {where} has no rows")
    chunks = itertools.chain([first], chunks)

    check_validity = on_invalid != "ignore"
    if on_invalid == "warn":  # as embed_smiles: without RDKit, say nothing was checked; only "raise" needs it
        try:
            require_rdkit("the invalid flag")
        except ImportError as error:
            warnings.warn(f"SMILES validity was not checked ({error}); on_invalid='ignore' silences this",
                          UserWarning, stacklevel=2)
            check_validity = False
    if backend == "onnx":
        from .onnx_backend import ONNXEmbedder, check_backend

        check_backend(backend, device, dtype)
        if encoder is not None:
            raise ValueError("give either backend='onnx' (model: an export folder) or encoder, not both")
        exported = ONNXEmbedder(model)
        encoder = BatchEncoder.from_onnx(exported, kind=kind, batch_size=batch_size,
                                         check_validity=check_validity)
        fingerprint, backend_name = exported.fingerprint, f"onnx:{exported.config['onnx_sha256']}"
    else:
        folder = resolve_model(model)
        fingerprint, backend_name = model_fingerprint(folder), "torch"
    if encoder is None:
        from transformers import AutoConfig

        from .modeling import check_embedding_kind, embedding_size

        config = AutoConfig.from_pretrained(folder)
        check_embedding_kind(kind, config)
        width = embedding_size(config, kind)
    else:
        width = encoder.width if hasattr(encoder, "width") else encoder(first[:1]).vectors.shape[1]
    if kind_of_output == "parquet":  # a run that cannot resume this library is refused before the model loads
        from . import __version__

        settings = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model": _manifest_name(model),
                    "model_fingerprint": fingerprint, "backend": backend_name, "kind": kind, "width": int(width),
                    "storage_dtype": storage_dtype, "dtype": str(dtype), "shard_rows": shard_rows,
                    "input": _manifest_name(source), "split": split, "text_column": text_column,
                    "check_validity": check_validity, "num_processes": processes.world,
                    "cmim_hf_version": __version__}
        settings["settings_sha256"] = _settings_digest(settings)
        old = _read_manifest_if_any(target)
        if old is not None:
            _check_same_settings(old, settings, target)
    if encoder is None:
        loaded, tokenizer = load_pretrained(folder, device=device or processes.device, dtype=dtype)
        encoder = BatchEncoder.from_model(loaded, tokenizer, kind=kind, batch_size=batch_size,
                                          check_validity=check_validity)
    flags = _Flags({"invalid": on_invalid, "unknown_tokens": on_unknown,
                    "truncated": "ignore" if on_too_long == "truncate" else on_too_long}, where)
    start = time.perf_counter()
    if kind_of_output == "parquet":
        rows, embedded, manifest = _write_library(target, chunks, encoder, settings, flags, processes, where, progress)
        counts = {flag: sum(entry["counts"][flag] for entry in manifest.get("shards", [])) for flag in FLAGS}
    else:
        rows = embedded = _write_file(target, kind_of_output, chunks, encoder, storage_dtype, flags, where, kind)
        counts = dict(flags.counts)
    flags.warn(embedded, kind_of_output == "parquet")
    return EmbedSummary(target, rows, embedded, int(width), time.perf_counter() - start, counts,
                        {flag: names for flag, names in flags.examples.items() if names})
