"""The on-disk format of an embedded compound library, shared by the writer (`cmim-hf embed` to parquet) and
its readers (`cmim-hf index`, `cmim-hf search`).

A library is a folder:

    OUT/
      .manifest.json         what every shard was made with, and the list of finished shards
      shard-00000.parquet    rows in input order; a shard is listed in the manifest only once it is complete
      shard-00001.parquet
      ...

Columns of every shard (`COLUMNS`):
    row_id          int64    the row's 0-based index in the input
    smiles          string   the input text as given
    embedding       fixed_size_list<float32 | float16>[width]
    invalid         bool     RDKit could not parse it (False when not checked)
    unknown_tokens  bool     the tokenizer mapped part of it to <unk>
    truncated       bool     it was longer than the model reads and was cut

`model_fingerprint` names the weights a library (or an index built from it) was made with, so that a reader
given another model refuses instead of mixing vectors from two models.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "FORMAT_NAME", "MANIFEST_KEYS", "MANIFEST_NAME", "SHARD_PATTERN", "embedding_matrix",
           "file_sha256", "iter_shards", "load_embeddings", "model_fingerprint", "parse_manifest", "read_manifest"]

FORMAT_NAME = "cmim-hf-embeddings"
# Hidden, so that pandas.read_parquet(OUT), pyarrow.parquet.read_table(OUT) and datasets.load_dataset("parquet",
# data_dir=OUT) read the folder as it is: pyarrow skips names starting with "." or "_", datasets only "." ones,
# and both fail on any other file that is not parquet.
MANIFEST_NAME = ".manifest.json"
SHARD_PATTERN = "shard-{index:05d}.parquet"
COLUMNS = ("row_id", "smiles", "embedding", "invalid", "unknown_tokens", "truncated")
FORMAT_VERSION = 1
# Keys every manifest has (the writer, `cmim_hf.library`, adds more: input digests, options, counts):
#   format, version, model (as the user named it), model_fingerprint, kind, width, storage_dtype ("float32" or
#   "float16"), shards (finished ones, in input order: {"file", "first_row", "rows", ...}), complete (bool).
MANIFEST_KEYS = ("format", "version", "model", "model_fingerprint", "kind", "width", "storage_dtype", "shards",
                 "complete")

_CHUNK = 1 << 20


def _feed(digest, path: str | os.PathLike):
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks (shards, ONNX graphs)."""
    return _feed(hashlib.sha256(), path).hexdigest()


def model_fingerprint(folder: str | os.PathLike) -> str:
    """SHA-256 (hex) over the model folder's weight files, in name order (`model.safetensors`, or the shards of
    `model.safetensors.index.json`, or `pytorch_model*.bin`). Re-saving the same weights with new code or a new
    card keeps it; any change of a weight changes it."""
    folder = Path(folder)
    names = sorted(path.name for path in folder.glob("*.safetensors")) or \
        sorted(path.name for path in folder.glob("pytorch_model*.bin"))
    if not names:
        raise FileNotFoundError(f"{folder} holds no weight files (model.safetensors or pytorch_model*.bin)")
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0")
        _feed(digest, folder / name)
    return digest.hexdigest()


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest, or None."""
    if not isinstance(manifest, dict):
        return f"it holds a {type(manifest).__name__}, not an object"
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        return f"keys {missing} are missing"
    if manifest["format"] != FORMAT_NAME or manifest["version"] != FORMAT_VERSION:
        return (f"format {manifest['format']!r} version {manifest['version']!r}, expected {FORMAT_NAME!r} version "
                f"{FORMAT_VERSION}")
    width = manifest["width"]
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        return f"width is {width!r}, not a positive int"
    if manifest["storage_dtype"] not in ("float32", "float16"):
        return f"storage_dtype is {manifest['storage_dtype']!r}, not 'float32' or 'float16'"
    if not isinstance(manifest["complete"], bool):
        return f"complete is {manifest['complete']!r}, not true or false"
    shards = manifest["shards"]
    if not isinstance(shards, list):
        return "shards is not a list"
    for entry in shards:
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and "/" not in entry["file"]
                and entry["file"] not in ("", ".", "..")
                and all(isinstance(entry.get(key), int) and entry[key] >= 0 for key in ("first_row", "rows"))):
            return f"shard entry {entry!r} is not {{'file': name, 'first_row': int, 'rows': int}}"
    if [entry["first_row"] for entry in shards] != sorted(entry["first_row"] for entry in shards):
        return "shards are not in input order"
    return None


def parse_manifest(path: Path) -> dict:
    """The manifest file at `path`, parsed and checked (see `read_manifest`); ValueError naming it when damaged."""
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is damaged: not JSON ({error})") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise ValueError(f"{path} is not a manifest of {FORMAT_NAME} version {FORMAT_VERSION}: {problem}")
    return manifest


def read_manifest(folder: str | os.PathLike, *, require_complete: bool = True) -> dict:
    """The manifest of a library folder, checked (keys, format, width, dtype, shard list, shard files present).

    Raises:
        FileNotFoundError: no folder, or no manifest in it.
        ValueError: a damaged or foreign manifest, a listed shard missing, or (with `require_complete`) a library
            whose embedding has not finished; one line naming the folder.
    """
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; expected an embedded library (cmim-hf embed --output)")
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no {MANIFEST_NAME}: not a library cmim-hf embed wrote")
    manifest = parse_manifest(path)
    for entry in manifest["shards"]:
        if not (folder / entry["file"]).is_file():
            raise ValueError(f"{folder} lists {entry['file']} in its manifest, but the file is missing")
    if require_complete and not manifest["complete"]:
        raise ValueError(f"{folder} is not complete ({len(manifest['shards'])} shards finished): rerun the "
                         "cmim-hf embed command that made it, which resumes where it stopped")
    return manifest


def iter_shards(folder: str | os.PathLike, *, columns: Sequence[str] | None = None,
                require_complete: bool = True) -> Iterator[Any]:
    """The finished shards of a library as pyarrow Tables, in input order (each checked against the manifest:
    row count, row ids and embedding width). `columns`: a subset of `COLUMNS` (default all)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    manifest = read_manifest(folder, require_complete=require_complete)
    columns = list(COLUMNS if columns is None else columns)
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown columns {unknown}; a library has {list(COLUMNS)}")
    for entry in manifest["shards"]:
        path = folder / entry["file"]
        try:
            table = pq.read_table(path, columns=sorted(set(columns) | {"row_id", "embedding"}))
        except (OSError, pa.ArrowException) as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]  # arrow's span several
            raise ValueError(f"{path} is damaged: {first_line}") from None
        width = table.schema.field("embedding").type
        if not pa.types.is_fixed_size_list(width) or width.list_size != manifest["width"]:
            raise ValueError(f"{path} holds embeddings of type {width}, the manifest says width {manifest['width']}")
        ids = table.column("row_id").to_numpy()
        first = entry["first_row"]
        if table.num_rows != entry["rows"] or (len(ids) and (ids[0] != first or ids[-1] != first + len(ids) - 1)):
            raise ValueError(f"{path} holds rows {ids[:1]}..{ids[-1:]} ({table.num_rows}), the manifest says "
                             f"{entry['rows']} from row {first}")
        yield table.select(columns)


def embedding_matrix(table, width: int):
    """The `embedding` column of a shard (pyarrow Table) as a C-contiguous float32 (rows, width) numpy array."""
    import numpy as np

    values = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)  # honours slices
    return np.ascontiguousarray(values.reshape(-1, width), dtype=np.float32)


def load_embeddings(folder: str | os.PathLike, *, require_complete: bool = True):
    """A whole library in memory: `(row_ids, smiles, vectors)`: int64 (N,), list of N str, float32 (N, E), in
    input order. For libraries larger than memory, use `iter_shards`."""
    import numpy as np

    ids, smiles, vectors = [], [], []
    width = read_manifest(folder, require_complete=require_complete)["width"]
    for table in iter_shards(folder, columns=("row_id", "smiles", "embedding"), require_complete=require_complete):
        ids.append(table.column("row_id").to_numpy())
        smiles += table.column("smiles").to_pylist()
        vectors.append(embedding_matrix(table, width))
    if not ids:
        return np.zeros(0, np.int64), [], np.zeros((0, width), np.float32)
    return np.concatenate(ids), smiles, np.concatenate(vectors)
