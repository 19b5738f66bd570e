"""Nearest-neighbour search over an embedded library: build a FAISS index from the shards `cmim-hf embed` wrote,
then find the library molecules closest to query SMILES.

    build_index("library/", "library.index")                  # exact up to EXACT_MAX_ROWS rows, IVF above
    hits = search_library(["CCO", "c1ccccc1O"], "library.index", k=10)
    hits[0]  # {'query_index': 0, 'query': 'CCO', 'rank': 1, 'smiles': ..., 'row_id': ..., 'cosine': ..., 'tanimoto': ...}

Similarity is cosine: the vectors are L2-normalised float32 and searched by inner product (FAISS
`METRIC_INNER_PRODUCT`). An index folder holds

    index.faiss     the FAISS index (`faiss.write_index`; read back with `faiss.read_index`, which runs no code)
    rows.parquet    row_id and smiles of each indexed vector, in index order (FAISS id i is row i of this file)
    index.json      what it was built from: model, model_fingerprint, kind, width, metric, type, size, library

and is written to a hidden sibling folder and renamed into place when complete, so a reader never meets half an
index. The query is embedded with the model the library was made with; another model (weights, embedding kind
or width) is refused, naming what differs, because vectors of two models are not comparable.

Memory: the library is read one shard at a time. An exact index holds the N x width float32 vectors once (plus
one shard being added); an IVF index is trained on a seeded sample, then filled shard by shard.

faiss, pyarrow and RDKit are imported when a function needs them (`pip install "cmim-hf[search]"`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .embedding_store import MANIFEST_NAME, embedding_matrix, iter_shards, model_fingerprint, read_manifest
from .saving import staged_folder, write_json_atomic

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = ["EXACT_MAX_ROWS", "HIT_COLUMNS", "INDEX_FORMAT", "Library", "LibraryIndex", "build_index",
           "check_index_output", "read_library", "search_library"]

INDEX_FORMAT = "cmim-hf-index"
INDEX_VERSION = 1
INDEX_JSON = "index.json"
FAISS_FILE = "index.faiss"
ROWS_FILE = "rows.parquet"
HIT_COLUMNS = ("query_index", "query", "rank", "smiles", "row_id", "cosine", "tanimoto")

# Libraries up to this many rows get an exact index (IndexFlatIP); larger ones an IVF index. At 100,000 rows x 384
# exact search of a batch was still faster per query than IVF's (5.4 against 6.9 ms), with recall 1 against IVF's
# 0.969, while one query alone took 144 ms against IVF's 0.88 (results/search/curve.md, its command there).
EXACT_MAX_ROWS = 100_000
# IVF: nlist = IVF_LISTS_PER_SQRT_N * sqrt(N) lists, trained on IVF_TRAIN_PER_LIST sampled vectors per list,
# searched with nprobe = IVF_NPROBE lists (docs/search.md has the recall@10 / latency measurement behind them).
IVF_LISTS_PER_SQRT_N = 1.0
IVF_TRAIN_PER_LIST = 40
IVF_NPROBE = 16
_INDEX_TYPES = ("auto", "exact", "ivf")


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"nearest-neighbour search needs {module.split('.')[0]}: pip install \"cmim-hf[search]\"") \
            from error


# ---------------------------------------------------------------------------------------------------------
# Reading a library (its manifest through embedding_store.read_manifest, its shards one at a time)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Library:
    """A complete embedded library: its folder and its checked manifest."""

    folder: Path
    manifest: dict

    @property
    def size(self) -> int:
        return sum(int(shard["rows"]) for shard in self.manifest["shards"])

    @property
    def width(self) -> int:
        return int(self.manifest["width"])

    def digest(self) -> str:
        """SHA-256 of the manifest: names the library's content (the manifest lists every shard's rows)."""
        return hashlib.sha256((self.folder / MANIFEST_NAME).read_bytes()).hexdigest()

    def batches(self, columns: Sequence[str] = ("row_id", "smiles", "embedding")) -> Iterator[pa.Table]:
        """One pyarrow Table per shard, in row order, with `columns`, each checked against the manifest (rows, row
        ids, width) by `embedding_store.iter_shards`."""
        return iter_shards(self.folder, columns=columns)


def read_library(folder: str | os.PathLike) -> Library:
    """The complete library `cmim-hf embed` wrote into `folder`, checked by `embedding_store.read_manifest` (format,
    version, keys, every listed shard present). Raises FileNotFoundError / ValueError naming the folder."""
    return Library(Path(folder), read_manifest(folder))


# ---------------------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------------------
def ivf_lists(size: int) -> int:
    """IVF lists for `size` vectors: IVF_LISTS_PER_SQRT_N * sqrt(size), at least 1."""
    return max(1, int(round(IVF_LISTS_PER_SQRT_N * math.sqrt(size))))


def _training_sample(library: Library, count: int, seed: int) -> np.ndarray:
    """`count` library vectors drawn uniformly without replacement (seeded), read shard by shard, normalised."""
    import faiss
    import numpy as np

    chosen = np.sort(np.random.default_rng(seed).choice(library.size, size=min(count, library.size), replace=False))
    parts, start = [], 0
    for table in library.batches(("embedding",)):
        stop = start + table.num_rows
        local = chosen[(chosen >= start) & (chosen < stop)] - start
        if len(local):
            parts.append(embedding_matrix(table.take(local), library.width))
        start = stop
    sample = np.concatenate(parts)
    faiss.normalize_L2(sample)
    return sample


def check_index_output(output: str | os.PathLike) -> Path:
    """`output` as a Path if an index folder can be written there, else raise: a file (NotADirectoryError), a
    folder holding something other than an index, which would be replaced (ValueError), or an unwritable place."""
    from .checks import check_output_dir

    output = check_output_dir(output, "--output")
    if output.is_dir() and any(output.iterdir()) and not (output / INDEX_JSON).is_file():
        raise ValueError(f"--output {output} is a folder holding other files (no {INDEX_JSON}); give a new or an "
                         "index folder, which is replaced when the new index is complete")
    return output


def build_index(library: str | os.PathLike, output: str | os.PathLike, *, index_type: str = "auto",
                nlist: int | None = None, nprobe: int = IVF_NPROBE, seed: int = 0,
                log=None) -> Path:
    """Build a FAISS index of the library folder `library` into the folder `output` (replaced atomically).

    Args:
        index_type: "exact" (IndexFlatIP), "ivf" (IndexIVFFlat on inner product) or "auto": exact up to
            EXACT_MAX_ROWS rows, IVF above.
        nlist: IVF lists (default `ivf_lists(N)`); trained on IVF_TRAIN_PER_LIST sampled vectors per list.
        nprobe: IVF lists searched per query, stored in the index (IndexIVF.nprobe); more is slower and closer
            to exact.
        seed: the training sample and k-means initialisation.
        log: a function given progress lines (e.g. print), or None.

    Returns the index folder. Raises ValueError for an empty or unreadable library, a bad option or an output
    that would overwrite something that is not an index.
    """
    faiss = _require("faiss")
    _require("pyarrow")
    say = log or (lambda message: None)
    if index_type not in _INDEX_TYPES:
        raise ValueError(f"index_type must be one of {_INDEX_TYPES}, got {index_type!r}")
    for name, value in (("nlist", nlist), ("nprobe", nprobe)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    lib = read_library(library)
    size, width = lib.size, lib.width
    if size == 0:
        raise ValueError(f"library {lib.folder} holds no rows: nothing to index")
    output = check_index_output(output)
    chosen = ("exact" if size <= EXACT_MAX_ROWS else "ivf") if index_type == "auto" else index_type
    started = time.perf_counter()
    training_seconds = 0.0
    if chosen == "exact":
        index = faiss.IndexFlatIP(width)
        parameters: dict[str, Any] = {}
    else:
        lists = min(nlist or ivf_lists(size), size)
        quantizer = faiss.IndexFlatIP(width)
        index = faiss.IndexIVFFlat(quantizer, width, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        sample = _training_sample(lib, lists * IVF_TRAIN_PER_LIST, seed)
        say(f"training {lists} IVF lists on {len(sample)} vectors")
        index.train(sample)
        del sample
        index.nprobe = min(nprobe, lists)
        training_seconds = time.perf_counter() - started
        parameters = {"nlist": lists, "nprobe": index.nprobe, "train_vectors": min(lists * IVF_TRAIN_PER_LIST, size),
                      "seed": seed}
    with staged_folder(output) as staging:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows_schema = pa.schema([("row_id", pa.int64()), ("smiles", pa.string())])
        with pq.ParquetWriter(staging / ROWS_FILE, rows_schema) as rows:
            for number, table in enumerate(lib.batches(), 1):
                vectors = embedding_matrix(table, width)
                faiss.normalize_L2(vectors)
                index.add(vectors)
                rows.write_table(table.select(["row_id", "smiles"]).cast(rows_schema))
                say(f"added shard {number}/{len(lib.manifest['shards'])} ({index.ntotal}/{size} rows)")
        if index.ntotal != size:
            raise ValueError(f"library {lib.folder}: the shards hold {index.ntotal} rows, the manifest says {size}")
        faiss.write_index(index, str(staging / FAISS_FILE))
        build_seconds = time.perf_counter() - started
        write_json_atomic(staging / INDEX_JSON, {
            "format": INDEX_FORMAT, "version": INDEX_VERSION,
            "model": lib.manifest["model"], "model_fingerprint": lib.manifest["model_fingerprint"],
            "backend": lib.manifest.get("backend", "torch"), "kind": lib.manifest["kind"], "width": width,
            "metric": "cosine (inner product of L2-normalised vectors)",
            "type": chosen, "faiss_class": type(index).__name__, "size": size, "parameters": parameters,
            "library": {"path": str(lib.folder.resolve()), "manifest_sha256": lib.digest()},
            "build_seconds": round(build_seconds, 3), "training_seconds": round(training_seconds, 3),
            "faiss_version": faiss.__version__,
        })
    say(f"indexed {size} rows ({chosen}) in {build_seconds:.1f} s -> {output}")
    return output


# ---------------------------------------------------------------------------------------------------------
# Loading and searching
# ---------------------------------------------------------------------------------------------------------
class LibraryIndex:
    """A loaded index folder: the FAISS index, its rows (row_id, smiles) and its index.json (`meta`)."""

    def __init__(self, folder: str | os.PathLike):
        faiss = _require("faiss")
        pq = _require("pyarrow.parquet")
        self.folder = folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"index {folder} is not a folder; build one with cmim-hf index LIBRARY "
                                    f"--output {folder}")
        try:
            meta = json.loads((folder / INDEX_JSON).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"index {folder} has no {INDEX_JSON}: not an index built by cmim-hf index") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"index {folder}: {INDEX_JSON} is not valid JSON ({error})") from None
        needed = ("model", "model_fingerprint", "kind", "width", "size")
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT or any(k not in meta for k in needed):
            raise ValueError(f"index {folder}: {INDEX_JSON} is not a {INDEX_FORMAT!r} description (it needs format, "
                             f"{', '.join(needed)})")
        if meta.get("version") != INDEX_VERSION:
            raise ValueError(f"index {folder}: version {meta.get('version')!r}; this cmim-hf reads {INDEX_VERSION}")
        for name in (FAISS_FILE, ROWS_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"index {folder} lacks {name}: rebuild it with cmim-hf index")
        try:
            self.index = faiss.read_index(str(folder / FAISS_FILE))
        except RuntimeError as error:  # faiss's C++ exception: a truncated or foreign file
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"index {folder}: {FAISS_FILE} is damaged or not a FAISS index ({first})") from None
        try:
            self.rows = pq.read_table(folder / ROWS_FILE, columns=["row_id", "smiles"])
        except Exception as error:  # ArrowInvalid, OSError
            raise ValueError(f"index {folder}: {ROWS_FILE} is damaged ({error})") from None
        if not (self.index.d == meta["width"] and self.index.ntotal == meta["size"] == self.rows.num_rows):
            raise ValueError(f"index {folder}: {FAISS_FILE} ({self.index.ntotal} x {self.index.d}), {ROWS_FILE} "
                             f"({self.rows.num_rows} rows) and {INDEX_JSON} ({meta['size']} x {meta['width']}) "
                             "disagree; rebuild it")
        self.meta = meta
        self._embedders: dict = {}  # query_embedder's loaded models, by how they were asked for

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search_vectors(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities (Q, k) and index positions (Q, k) of the k nearest rows of each query vector
        (Q, width), best first; positions are -1 where fewer than k rows were found."""
        import faiss
        import numpy as np

        queries = np.array(vectors, dtype=np.float32, order="C", copy=True)
        if queries.ndim != 2 or queries.shape[1] != self.index.d:
            raise ValueError(f"query vectors must be (Q, {self.index.d}), got {queries.shape}")
        faiss.normalize_L2(queries)
        return self.index.search(queries, min(k, len(self)))

    def check_model(self, folder: str | os.PathLike, config, kind: str | None = None) -> None:
        """Refuse a PyTorch model (its folder and config) that differs from the index's in weights, backend,
        embedding kind or width, naming each difference (ValueError)."""
        from .modeling import embedding_kinds, embedding_size

        widths = {name: embedding_size(config, name) for name in embedding_kinds(config)}
        self._check(folder, model_fingerprint(folder), "torch", widths, kind)

    def _check(self, name, fingerprint: str, backend: str, widths: dict[str, int], kind: str | None = None) -> None:
        meta, differences = self.meta, []
        kind = kind or meta["kind"]
        if kind != meta["kind"]:
            differences.append(f"embedding kind {kind!r} (index: {meta['kind']!r})")
        elif kind not in widths:
            differences.append(f"it has no {kind!r} embedding (index kind)")
        elif widths[kind] != meta["width"]:
            differences.append(f"width {widths[kind]} (index: {meta['width']})")
        if fingerprint != meta["model_fingerprint"]:
            differences.append("weights (model_fingerprint differs)")
        if backend != meta.get("backend", "torch"):  # an int8 export's vectors are not the float32 model's
            differences.append(f"backend {backend!r} (index: {meta.get('backend', 'torch')!r})")
        if differences:
            raise ValueError(f"model {name} does not match index {self.folder} (built with {meta['model']!r}): "
                             + "; ".join(differences))

    def query_embedder(self, model=None, tokenizer=None, *, batch_size: int = 64, device=None, dtype=None):
        """A function (SMILES list, on_invalid) -> (N, width) float32 vectors with the model the index was built
        with (`model` None: the one named in index.json; a folder, shipped name or Hub id; an ONNX export folder; or
        a loaded model with its `tokenizer`), checked against the index once and kept for later calls."""
        key = (model if model is None or isinstance(model, (str, os.PathLike)) else id(model), batch_size, device,
               dtype)
        if key not in self._embedders:
            self._embedders[key] = self._load_embedder(model, tokenizer, batch_size, device, dtype)
        return self._embedders[key]

    def _load_embedder(self, model, tokenizer, batch_size, device, dtype):
        from .embeddings import embed_smiles, load_pretrained
        from .hub import resolve_model
        from .onnx_export import ONNX_CONFIG_NAME

        kind = self.meta["kind"]
        name = self.meta["model"] if model is None else model
        if isinstance(name, (str, os.PathLike)) and (Path(name) / ONNX_CONFIG_NAME).is_file():  # an ONNX export
            from .onnx_backend import ONNXEmbedder, check_backend

            check_backend("onnx", device, dtype)
            exported = ONNXEmbedder(name)
            self._check(name, exported.fingerprint, f"onnx:{exported.config['onnx_sha256']}",
                        {k: int(width) for k, width in exported.config["outputs"].items()})
            return lambda smiles, on_invalid: exported.embed(smiles, kind=kind, batch_size=batch_size,
                                                             on_invalid=on_invalid)
        if isinstance(name, (str, os.PathLike)):
            folder = resolve_model(name)
            self._check(folder, model_fingerprint(folder), "torch", _widths(_read_config(folder)))
            model, tokenizer = load_pretrained(folder, device=device, dtype=dtype)
        else:
            if tokenizer is None:
                raise ValueError("a loaded model needs its tokenizer: search_library(..., model=model, "
                                 "tokenizer=tokenizer)")
            folder = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", "")
            if not folder or not Path(folder).is_dir():
                raise ValueError("cannot tell which weights this loaded model has (no local folder in "
                                 "model.name_or_path); pass the model's folder or name instead")
            self.check_model(folder, model.config)
        return lambda smiles, on_invalid: embed_smiles(model, tokenizer, smiles, kind=kind, batch_size=batch_size,
                                                       on_invalid=on_invalid)


def _widths(config) -> dict[str, int]:
    from .modeling import embedding_kinds, embedding_size

    return {name: embedding_size(config, name) for name in embedding_kinds(config)}


def search_library(queries: str | Iterable[str], index: str | os.PathLike | LibraryIndex, k: int = 10, *,
                   model=None, tokenizer=None, batch_size: int = 64, device=None, dtype=None,
                   on_invalid: str = "warn") -> list[dict]:
    """The k library molecules nearest to each query SMILES by cosine of their embeddings.

    Args:
        queries: one SMILES or an iterable of them.
        index: an index folder (`build_index`, `cmim-hf index`) or a loaded `LibraryIndex`.
        k: neighbours per query (at most the library size).
        model: the model to embed the queries with: None (the one named in index.json), a folder, a shipped name
            or a Hub id; an ONNX export folder; or a loaded model, with its `tokenizer`. Its weights, backend, kind
            and width must match the index. The model is loaded and checked once per index and kept (see
            `LibraryIndex.query_embedder`).
        batch_size, device, dtype, on_invalid: as for `embed_smiles` / `load_pretrained`.

    Returns:
        One dict per hit, queries in order and hits best first, with the keys `HIT_COLUMNS`: query_index, query,
        rank (1-based), smiles, row_id (the row in the library), cosine, tanimoto (ECFP4, NaN when RDKit cannot
        parse one of the two; needs RDKit).
    """
    from .chem import ecfp4_tanimoto, require_rdkit
    from .tokenization import check_texts

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    items = check_texts(queries, name="queries")
    if not items:
        raise ValueError("no queries: give at least one SMILES")
    require_rdkit("the Tanimoto column of search_library")
    loaded = index if isinstance(index, LibraryIndex) else LibraryIndex(index)
    embed = loaded.query_embedder(model, tokenizer, batch_size=batch_size, device=device, dtype=dtype)
    vectors = embed(items, on_invalid)
    scores, positions = loaded.search_vectors(vectors, k)
    hits = []
    for q, query in enumerate(items):
        found = [int(p) for p in positions[q] if p >= 0]
        rows = loaded.rows.take(found).to_pylist()
        tanimoto = ecfp4_tanimoto(query, [row["smiles"] for row in rows])
        for rank, (row, cosine, similarity) in enumerate(zip(rows, scores[q], tanimoto), 1):
            hits.append({"query_index": q, "query": query, "rank": rank, "smiles": row["smiles"],
                         "row_id": row["row_id"], "cosine": float(cosine), "tanimoto": float(similarity)})
    return hits


def _read_config(folder: Path):
    """The model's config alone, to check it against the index before its weights are loaded."""
    from transformers import AutoConfig  # the package registers the cmim model type as transformers loads

    return AutoConfig.from_pretrained(folder)
