"""Is the nearest-neighbour search any good? `cmim-hf evaluate-search --output_dir results/search`

Quality: a library of `--library_size` MOSES training molecules and `--queries` MOSES test molecules (seeded
samples). Each query's logP, TPSA and QED (RDKit: Descriptors.MolLogP, TPSA, QED.qed) is predicted as the mean
over its k nearest library neighbours, found by
  - cMIM search (`build_index` + `LibraryIndex.search_vectors`, cosine) with each `--kinds` embedding, and
  - ECFP4-Tanimoto search (2048 bits, radius 2, RDKit BulkTanimotoSimilarity, exhaustive),
and compared with the baseline of predicting the library mean. MAE, R^2 and Spearman per property, each with a
bootstrap 95% interval over queries (seeded), and the paired MAE difference of each method against ECFP4 with
its interval. Query latency per method (search alone, and embedding + search of one query).

Recall (`--recall_library FOLDER`): on a library `cmim-hf embed` wrote, the exact and the IVF index are built,
and recall@k of IVF against exact is measured for the same test queries, with build time, index size and query
latency (a batch, and one query at a time), for several nprobe values.

Writes results.json and results.md (quality) or recall.json and recall.md (recall) into `--output_dir`. The
embedded libraries are kept under `--work_dir` (default OUTPUT_DIR/work, not for committing) so a rerun reuses them.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data import moses_sample
from ..embedding_store import (COLUMNS, FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, SHARD_PATTERN, model_fingerprint,
                               read_manifest)
from ..saving import atomic_write, write_json_atomic

__all__ = ["PROPERTIES", "evaluate_search_quality", "index_scaling_curve", "measure_curve", "measure_recall",
           "molecular_properties", "write_library"]

PROPERTIES = ("logP", "TPSA", "QED")


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------
def write_library(folder: str | os.PathLike, smiles: Sequence[str], vectors: np.ndarray, *, model: str,
                  fingerprint: str, kind: str, shard_rows: int = 50_000, storage_dtype: str = "float32") -> Path:
    """Write vectors already in memory as a complete library in the format of `cmim_hf.embedding_store`
    (shards of `shard_rows` rows, then the manifest, last, marked complete). For tests and evaluations; users'
    libraries come from `cmim-hf embed`."""
    import pyarrow as pa
    import pyarrow.parquet as pq


    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width = vectors.shape[1]
    schema = pa.schema([("row_id", pa.int64()), ("smiles", pa.string()),
                        ("embedding", pa.list_(pa.from_numpy_dtype(np.dtype(storage_dtype)), width)), ("invalid", pa.bool_()),
                        ("unknown_tokens", pa.bool_()), ("truncated", pa.bool_())])
    assert tuple(schema.names) == COLUMNS
    shards = []
    for number_, start in enumerate(range(0, len(smiles), shard_rows)):
        stop = min(start + shard_rows, len(smiles))
        flat = pa.array(np.ascontiguousarray(vectors[start:stop], dtype=storage_dtype).reshape(-1))
        false = pa.array(np.zeros(stop - start, dtype=bool))
        table = pa.Table.from_arrays([pa.array(np.arange(start, stop, dtype=np.int64)), pa.array(list(smiles[start:stop])),
                                      pa.FixedSizeListArray.from_arrays(flat, width), false, false, false], schema=schema)
        name = SHARD_PATTERN.format(index=number_)
        pq.write_table(table, folder / name)
        shards.append({"file": name, "first_row": start, "rows": stop - start})
    write_json_atomic(folder / MANIFEST_NAME, {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "model": model, "model_fingerprint": fingerprint, "kind": kind,
        "width": width, "storage_dtype": storage_dtype, "shards": shards, "complete": True})
    return folder


def embed_moses_library(folder: str | os.PathLike, size: int, *, model: str = "cmim-moses-tiny",
                        kind: str = "informative", seed: int = 0, shard_rows: int = 50_000, batch_size: int = 256,
                        log=print) -> Path:
    """Embed a seeded sample of `size` MOSES training molecules into a library folder with `embed_to_disk`
    (resumable: a rerun skips the finished shards). For the evaluations here, when no library from `cmim-hf embed`
    is at hand."""
    from ..library import embed_to_disk

    summary = embed_to_disk(moses_sample("train", size, seed), folder, model=model, kind=kind, shard_rows=shard_rows,
                            batch_size=batch_size, device="cpu", on_invalid="ignore")
    log(f"[library] {summary.rows} rows ({summary.embedded} embedded now) in {summary.seconds:.0f} s")
    return Path(folder)


def finished_prefix(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """A complete library in `target` of the shards `cmim-hf embed` has finished so far in `source` (its first rows),
    hard-linked (finished shards are never rewritten), with a manifest marked complete and naming `source`: to
    measure on a library whose embedding still runs (its manifest read with `read_manifest`, unfinished allowed)."""
    source, target = Path(source), Path(target)
    manifest = read_manifest(source, require_complete=False)
    shards = sorted(manifest["shards"], key=lambda shard: shard["first_row"])
    if not shards or [shard["first_row"] for shard in shards] != list(np.cumsum([0] + [s["rows"] for s in shards])[:-1]):
        raise ValueError(f"{source}: the finished shards are not a prefix of the rows")
    target.mkdir(parents=True, exist_ok=False)
    for shard in shards:
        os.link(source / shard["file"], target / shard["file"])

    write_json_atomic(target / MANIFEST_NAME, {**manifest, "shards": shards, "complete": True,
                                               "rows": int(sum(s["rows"] for s in shards)),
                                               "prefix_of": str(source.resolve())})
    return target


def molecular_properties(smiles: Sequence[str]) -> np.ndarray:
    """(N, 3) float64: RDKit logP (Crippen MolLogP), TPSA and QED of each SMILES (NaN rows for invalid ones)."""
    from rdkit.Chem import QED, Descriptors

    from ..chem import to_mol

    out = np.full((len(smiles), len(PROPERTIES)), np.nan)
    for i, text in enumerate(smiles):
        mol = to_mol(text)
        if mol is not None:
            out[i] = (Descriptors.MolLogP(mol), Descriptors.TPSA(mol), QED.qed(mol))
    return out


def _cached(path: Path, compute):
    """`compute()` saved as .npy at `path`, or loaded from there when present."""
    if path.is_file():
        return np.load(path)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), value)
    os.replace(path.with_suffix(".tmp.npy"), path)
    return value


def _timed(fn, repeats: int = 1) -> tuple[float, object]:
    """Median seconds of `repeats` calls of `fn` and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


# ---------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------
def _scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr

    error = predicted - truth
    total = np.sum((truth - truth.mean()) ** 2)
    return {"mae": float(np.mean(np.abs(error))), "r2": float(1 - np.sum(error ** 2) / total),
            "spearman": float(spearmanr(truth, predicted).statistic) if np.ptp(predicted) > 0 else float("nan")}


def _bootstrap(truth: np.ndarray, predicted: np.ndarray, reference: np.ndarray | None, draws: np.ndarray) -> dict:
    """Point scores, their 95% bootstrap intervals over queries, and (given the `reference` predictions) the
    paired MAE difference predicted - reference with its interval. draws: (B, Q) resampled query indices."""
    point = _scores(truth, predicted)
    samples = {key: [] for key in point}
    differences = []
    for index in draws:
        for key, value in _scores(truth[index], predicted[index]).items():
            samples[key].append(value)
        if reference is not None:
            differences.append(np.mean(np.abs(predicted[index] - truth[index]))
                               - np.mean(np.abs(reference[index] - truth[index])))
    def interval(values: list[float]) -> list[float]:  # NaN for a constant prediction's Spearman
        values = np.asarray(values)[~np.isnan(values)]
        return [float(np.percentile(values, q)) for q in (2.5, 97.5)] if len(values) else [float("nan")] * 2

    out = {key: {"value": value, "ci95": interval(samples[key])} for key, value in point.items()}
    if reference is not None:
        out["mae_minus_ecfp4"] = {"value": float(np.mean(np.abs(predicted - truth)) - np.mean(np.abs(reference - truth))),
                                  "ci95": [float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))]}
    return out


# ---------------------------------------------------------------------------------------------------------
# Neighbours by method
# ---------------------------------------------------------------------------------------------------------
def ecfp4_neighbours(library: Sequence[str], queries: Sequence[str], k: int) -> tuple[np.ndarray, dict]:
    """(Q, k) library positions of each query's k most Tanimoto-similar molecules (ECFP4, exhaustive), and
    timings: fingerprinting the library, searching all queries, and single queries (fingerprint + search)."""
    from rdkit import DataStructs

    from ..chem import ecfp4_generator, to_mol

    generator = ecfp4_generator()

    def fingerprint(text: str):
        mol = to_mol(text)
        return generator.GetFingerprint(mol) if mol is not None else None

    start = time.perf_counter()
    reference = [fingerprint(s) for s in library]
    if any(fp is None for fp in reference):
        raise ValueError("the library holds SMILES RDKit cannot parse")
    fingerprint_seconds = time.perf_counter() - start

    def nearest(query: str) -> np.ndarray:
        similarity = np.asarray(DataStructs.BulkTanimotoSimilarity(fingerprint(query), reference))
        top = np.argpartition(-similarity, k)[:k]
        return top[np.argsort(-similarity[top], kind="stable")]

    start = time.perf_counter()
    neighbours = np.stack([nearest(q) for q in queries])
    search_seconds = time.perf_counter() - start
    return neighbours, {"library_fingerprint_seconds": fingerprint_seconds,
                        "batch_seconds_per_query": search_seconds / len(queries),
                        "single_query_seconds": search_seconds / len(queries)}


def search_with_latency(index, query_vectors: np.ndarray, k: int, single: int = 100) -> tuple[np.ndarray, dict]:
    """(Q, k) positions of the k nearest rows in a `LibraryIndex` for each query vector, and the search latency:
    seconds per query of the whole batch (median of 3) and of one query alone (median over the first `single`)."""
    batch_seconds, (_, positions) = _timed(lambda: index.search_vectors(query_vectors, k), repeats=3)
    single_seconds = [_timed(lambda: index.search_vectors(query_vectors[i:i + 1], k))[0]
                      for i in range(min(single, len(query_vectors)))]
    return positions, {"batch_seconds_per_query": batch_seconds / len(query_vectors),
                       "single_query_seconds": float(np.median(single_seconds))}


# ---------------------------------------------------------------------------------------------------------
# Quality
# ---------------------------------------------------------------------------------------------------------
def evaluate_search_quality(output_dir: str | os.PathLike = "results/search", *, library_size: int = 100_000,
                            queries: int = 1000, k: int = 10, model: str = "cmim-moses-tiny",
                            kinds: Sequence[str] = ("informative", "latent"), seed: int = 0, bootstrap: int = 1000,
                            batch_size: int = 256, work_dir: str | os.PathLike | None = None,
                            command: str = "", log=print) -> dict:
    """Run the quality comparison (module docstring) and write results.json and results.md into `output_dir`."""
    from ..embeddings import embed_smiles, load_pretrained
    from ..hub import resolve_model
    from ..library import embed_to_disk
    from ..search import LibraryIndex, build_index

    output_dir = Path(output_dir)
    work = Path(work_dir) if work_dir else output_dir / "work"
    tag = f"moses-{library_size}-{queries}-seed{seed}"
    log(f"[search-quality] sampling {library_size} MOSES train and {queries} MOSES test molecules (seed {seed})")
    library = moses_sample("train", library_size, seed)
    query_smiles = moses_sample("test", queries, seed)
    overlap = len(set(library) & set(query_smiles))
    log("[search-quality] RDKit properties")
    library_props = _cached(work / f"{tag}-library-properties.npy", lambda: molecular_properties(library))
    truth = _cached(work / f"{tag}-query-properties.npy", lambda: molecular_properties(query_smiles))
    keep = ~np.isnan(truth).any(axis=1)
    if np.isnan(library_props).any():
        raise ValueError("the library sample holds molecules RDKit cannot parse")

    predictions: dict[str, np.ndarray] = {}
    latency: dict[str, dict] = {}
    build: dict[str, dict] = {}
    log("[search-quality] ECFP4 Tanimoto search")
    positions, latency["ECFP4 Tanimoto"] = ecfp4_neighbours(library, query_smiles, k)
    predictions["ECFP4 Tanimoto"] = library_props[positions].mean(axis=1)

    folder = resolve_model(model)
    fingerprint = model_fingerprint(folder)
    loaded_model, tokenizer = load_pretrained(folder, device="cpu")
    for kind in kinds:
        name = f"cMIM {kind}"
        library_dir = work / f"{tag}-{kind}-library"
        if not (library_dir / MANIFEST_NAME).is_file():
            log(f"[search-quality] embedding the library ({kind})")
            summary = embed_to_disk(library, library_dir, model=model, kind=kind, batch_size=batch_size,
                                    device="cpu", on_invalid="ignore")
            log(f"[search-quality] embedded {len(library)} in {summary.seconds:.0f} s")
        index_dir = work / f"{tag}-{kind}-index"
        build_seconds, _ = _timed(lambda: build_index(library_dir, index_dir))
        index = LibraryIndex(index_dir)
        build[name] = {"type": index.meta["type"], "size": len(index), "width": index.meta["width"],
                       "build_seconds": build_seconds}
        embed_one = [_timed(lambda: embed_smiles(loaded_model, tokenizer, [q], kind=kind, on_invalid="ignore"))[0]
                     for q in query_smiles[:100]]
        query_vectors = embed_smiles(loaded_model, tokenizer, query_smiles, kind=kind, batch_size=batch_size,
                                     on_invalid="ignore")
        log(f"[search-quality] searching ({kind})")
        positions, latency[name] = search_with_latency(index, query_vectors, k)
        latency[name]["embed_single_query_seconds"] = float(np.median(embed_one))
        latency[name]["single_query_seconds_with_embedding"] = (latency[name]["single_query_seconds"]
                                                                + latency[name]["embed_single_query_seconds"])
        predictions[name] = library_props[positions].mean(axis=1)
    predictions["library mean"] = np.broadcast_to(library_props.mean(axis=0), truth.shape)

    draws = np.random.default_rng(seed).integers(0, keep.sum(), size=(bootstrap, keep.sum()))
    table: dict[str, dict] = {}
    for method, predicted in predictions.items():
        table[method] = {prop: _bootstrap(truth[keep, j], predicted[keep, j],
                                          None if method == "ECFP4 Tanimoto" else predictions["ECFP4 Tanimoto"][keep, j],
                                          draws)
                         for j, prop in enumerate(PROPERTIES)}
    results = {
        "what": "property prediction by the mean over the k nearest library neighbours",
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "library": {"source": "MOSES train", "size": len(library), "seed": seed},
        "queries": {"source": "MOSES test", "size": len(query_smiles), "scored": int(keep.sum()), "seed": seed,
                    "also_in_library": overlap},
        "k": k, "model": model, "model_fingerprint": fingerprint, "bootstrap_draws": bootstrap,
        "properties": {"logP": "RDKit Descriptors.MolLogP", "TPSA": "RDKit Descriptors.TPSA", "QED": "RDKit QED.qed"},
        "scores": table, "latency": latency, "index": build,
        "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "load_average": [round(x, 1) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    _write_report(output_dir, "results", results, quality_markdown(results), log)
    return results


def _write_report(output_dir: str | os.PathLike, name: str, results: dict, markdown: str, log) -> None:
    """NAME.json and NAME.md into `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / f"{name}.json", results)
    atomic_write(output_dir / f"{name}.md", markdown)
    log(f"[search] wrote {output_dir / name}.json and {name}.md")


def _interval(entry: dict, digits: int) -> str:
    low, high = entry["ci95"]
    return f"{entry['value']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def quality_markdown(results: dict) -> str:
    lines = ["# Search quality: property prediction from the k nearest library neighbours", "",
             f"Command: `{results['command']}`", "",
             f"Library: {results['library']['size']:,} MOSES train molecules; queries: {results['queries']['size']:,} "
             f"MOSES test molecules (seed {results['library']['seed']}; {results['queries']['also_in_library']} queries "
             f"also in the library). Each query's property is predicted as the mean over its k={results['k']} nearest "
             f"library neighbours. cMIM: `{results['model']}` embeddings, cosine, FAISS index; ECFP4: 2048 bits, "
             "radius 2, exhaustive RDKit BulkTanimotoSimilarity. Brackets: 95% bootstrap intervals over queries "
             f"({results['bootstrap_draws']} seeded draws). Lower MAE is better; ΔMAE is the paired difference "
             "against ECFP4 (negative: better than ECFP4).", ""]
    for prop in PROPERTIES:
        lines += [f"## {prop}", "", "| method | MAE | ΔMAE vs ECFP4 | R² | Spearman |", "|---|---|---|---|---|"]
        for method, scores in results["scores"].items():
            entry = scores[prop]
            delta = _interval(entry["mae_minus_ecfp4"], 3) if "mae_minus_ecfp4" in entry else "-"
            lines.append(f"| {method} | {_interval(entry['mae'], 3)} | {delta} | {_interval(entry['r2'], 3)} | "
                         f"{_interval(entry['spearman'], 3) if entry['spearman']['value'] == entry['spearman']['value'] else '-'} |")
        lines.append("")
    lines += ["## Query latency", "",
              f"One process, OMP_NUM_THREADS={results['threads']['OMP_NUM_THREADS']}. Search of "
              f"{results['library']['size']:,} molecules; cMIM's single-query time adds the embedding of the query; "
              "ECFP4 searches one query at a time (fingerprint + BulkTanimotoSimilarity + top k), so its three "
              "figures are one measurement."
              + (f" Load average at the end: {results['load_average']}." if results.get("load_average") else ""), "",
              "| method | ms/query in a batch of all queries | ms for one query (search) | ms for one query (embed + search) |",
              "|---|---|---|---|"]
    for method, entry in results["latency"].items():
        total = entry.get("single_query_seconds_with_embedding", entry["single_query_seconds"])
        lines.append(f"| {method} | {1000 * entry['batch_seconds_per_query']:.3f} | "
                     f"{1000 * entry['single_query_seconds']:.3f} | {1000 * total:.3f} |")
    lines += ["", "ECFP4's library fingerprints took "
              f"{results['latency']['ECFP4 Tanimoto']['library_fingerprint_seconds']:.1f} s; the cMIM indexes: "
              + "; ".join(f"{m} {b['type']} {b['size']:,} x {b['width']} built in {b['build_seconds']:.2f} s"
                          for m, b in results["index"].items()) + " (embedding the library not included).", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Recall of the approximate index
# ---------------------------------------------------------------------------------------------------------
def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def measure_recall(library_dir: str | os.PathLike, output_dir: str | os.PathLike = "results/search", *,
                   queries: int = 1000, k: int = 10, nprobes: Sequence[int] = (1, 4, 8, 16, 32, 64), seed: int = 0,
                   work_dir: str | os.PathLike | None = None, single: int = 100, command: str = "",
                   log=print) -> dict:
    """Build the exact and the IVF index of a library, and measure recall@k of IVF against exact for MOSES test
    queries embedded with the library's model, per nprobe; write recall.json and recall.md into `output_dir`."""
    from ..search import LibraryIndex, build_index, read_library

    output_dir = Path(output_dir)
    work = Path(work_dir) if work_dir else output_dir / "work"
    library = read_library(library_dir)
    manifest = library.manifest
    query_vectors = _library_queries(library, queries, seed)
    built = {}
    for index_type in ("exact", "ivf"):
        target = work / f"{Path(library_dir).resolve().name}-{index_type}"
        log(f"[recall] building the {index_type} index of {library.size:,} rows")
        seconds, _ = _timed(lambda: build_index(library_dir, target, index_type=index_type, log=log))
        loaded = LibraryIndex(target)
        built[index_type] = {"folder": target, "index": loaded, "build_seconds": seconds,
                             "bytes": _folder_bytes(target), "meta": loaded.meta}
    truth, exact_latency = search_with_latency(built["exact"]["index"], query_vectors, k, single)
    ivf = built["ivf"]["index"]
    rows = []
    for nprobe in sorted({*nprobes, ivf.meta["parameters"]["nprobe"]}):  # the index's own nprobe always measured
        ivf.index.nprobe = nprobe
        found, latency = search_with_latency(ivf, query_vectors, k, single)
        recall = _recall(found, truth)
        rows.append({"nprobe": nprobe, "recall_at_k": recall, **latency})
        log(f"[recall] nprobe {nprobe}: recall@{k} {recall:.4f}")
    results = {
        "command": command, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "library": {"path": str(Path(library_dir).resolve()), "size": library.size, "width": library.width,
                    "model": manifest["model"], "kind": manifest["kind"]},
        "queries": {"source": "MOSES test", "size": queries, "seed": seed}, "k": k,
        "exact": {"build_seconds": built["exact"]["build_seconds"], "bytes": built["exact"]["bytes"],
                  **exact_latency},
        "ivf": {"build_seconds": built["ivf"]["build_seconds"], "bytes": built["ivf"]["bytes"],
                "training_seconds": built["ivf"]["meta"]["training_seconds"],
                "parameters": built["ivf"]["meta"]["parameters"], "by_nprobe": rows},
        "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
    }
    _write_report(output_dir, "recall", results, recall_markdown(results), log)
    return results


def recall_markdown(results: dict) -> str:
    library, exact, ivf = results["library"], results["exact"], results["ivf"]
    lines = ["# Recall and latency of the approximate (IVF) index against exact search", "",
             f"Command: `{results['command']}`", "",
             f"Library: {library['path']}, {library['size']:,} x {library['width']} ({library['model']}, "
             f"{library['kind']}). Queries: {results['queries']['size']:,} MOSES test molecules (seed "
             f"{results['queries']['seed']}). recall@{results['k']}: the share of exact search's top {results['k']} "
             f"that the IVF index returns. One process, OMP_NUM_THREADS={results['threads']['OMP_NUM_THREADS']}.", "",
             "| index | build s | size MB | ms/query in a batch | ms for one query |", "|---|---|---|---|---|",
             f"| exact (IndexFlatIP) | {exact['build_seconds']:.1f} | {exact['bytes'] / 1e6:,.0f} | "
             f"{1000 * exact['batch_seconds_per_query']:.3f} | {1000 * exact['single_query_seconds']:.3f} |",
             f"| IVF (IndexIVFFlat, nlist {ivf['parameters']['nlist']}, nprobe {ivf['parameters']['nprobe']}) | "
             f"{ivf['build_seconds']:.1f} (training {ivf['training_seconds']:.1f}) | {ivf['bytes'] / 1e6:,.0f} | "
             + " | ".join(f"{1000 * r[key]:.3f}" for r in ivf["by_nprobe"] if r["nprobe"] == ivf["parameters"]["nprobe"]
                          for key in ("batch_seconds_per_query", "single_query_seconds")) + " |",
             "", f"| nprobe | recall@{results['k']} | ms/query in a batch | ms for one query |", "|---|---|---|---|"]
    for row in ivf["by_nprobe"]:
        lines.append(f"| {row['nprobe']} | {row['recall_at_k']:.4f} | {1000 * row['batch_seconds_per_query']:.3f} | "
                     f"{1000 * row['single_query_seconds']:.3f} |")
    return "\n".join(lines) + "\n"


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` (Q, k) found in the same row of `found` (Q, k)."""
    k = truth.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)]))


def index_scaling_curve(vectors: np.ndarray, query_vectors: np.ndarray, sizes: Sequence[int], work_dir: str | os.PathLike,
                        *, k: int = 10, nprobe: int | None = None, single: int = 50, log=None) -> list[dict]:
    """Exact against IVF index at each library size in `sizes` (the first N rows of `vectors`), both built by
    `build_index` from a library folder: build seconds, recall@k of IVF against exact for `query_vectors`, and
    search seconds per query in a batch and for one query (median of `single`). The ratios compare the two
    measured back to back in the same run."""
    from ..search import IVF_NPROBE, LibraryIndex, build_index

    nprobe = nprobe or IVF_NPROBE
    work = Path(work_dir)
    rows = []
    for size in sizes:
        library = write_library(work / f"curve-{size}", [f"C{'C' * (i % 7)}" for i in range(size)], vectors[:size],
                                model="curve", fingerprint="-", kind="curve")
        built = {}
        for index_type in ("exact", "ivf"):
            seconds, folder = _timed(lambda: build_index(library, work / f"curve-{size}-{index_type}",
                                                         index_type=index_type, nprobe=nprobe))
            index = LibraryIndex(folder)
            found, latency = search_with_latency(index, query_vectors, k, single)
            built[index_type] = {"build_seconds": seconds, **latency, "found": found, "meta": index.meta}
        exact, ivf = built["exact"], built["ivf"]
        row = {"size": size, "nlist": ivf["meta"]["parameters"]["nlist"], "nprobe": ivf["meta"]["parameters"]["nprobe"],
               f"recall_at_{k}": _recall(ivf["found"], exact["found"]),
               **{f"{t}_{key}": built[t][key] for t in built
                  for key in ("build_seconds", "batch_seconds_per_query", "single_query_seconds")}}
        row["ivf_build_over_exact"] = row["ivf_build_seconds"] / row["exact_build_seconds"]
        row["single_query_speedup"] = row["exact_single_query_seconds"] / row["ivf_single_query_seconds"]
        row["batch_speedup"] = row["exact_batch_seconds_per_query"] / row["ivf_batch_seconds_per_query"]
        rows.append(row)
        if log:
            log(f"[curve] N={size}: recall@{k} {row[f'recall_at_{k}']:.3f}, one query exact "
                f"{1000 * row['exact_single_query_seconds']:.2f} ms / IVF {1000 * row['ivf_single_query_seconds']:.2f} ms")
        shutil.rmtree(library, ignore_errors=True)
    return rows


def _library_queries(library, queries: int, seed: int) -> np.ndarray:
    """MOSES test queries embedded with the model and kind of `library` (refused if its weights changed)."""
    from ..embeddings import embed_smiles, load_pretrained
    from ..hub import resolve_model

    manifest = library.manifest
    folder = resolve_model(manifest["model"])
    if model_fingerprint(folder) != manifest["model_fingerprint"]:
        raise ValueError(f"library {library.folder} was embedded with other weights than {manifest['model']!r} has now")
    model, tokenizer = load_pretrained(folder, device="cpu")
    return embed_smiles(model, tokenizer, moses_sample("test", queries, seed), kind=manifest["kind"], batch_size=256,
                        on_invalid="ignore")


def measure_curve(library_dir: str | os.PathLike, output_dir: str | os.PathLike, sizes: Sequence[int], *,
                  queries: int = 1000, k: int = 10, seed: int = 0, work_dir: str | os.PathLike | None = None,
                  command: str = "", log=print) -> list[dict]:
    """`index_scaling_curve` on the first rows of a library (`sizes`), with MOSES test queries embedded by its model;
    writes curve.json and curve.md into `output_dir`."""
    from ..embedding_store import embedding_matrix
    from ..search import read_library

    library = read_library(library_dir)
    need, parts, have = max(sizes), [], 0
    for table in library.batches(("embedding",)):
        parts.append(embedding_matrix(table, library.width)[:need - have])
        have += len(parts[-1])
        if have >= need:
            break
    if have < need:
        raise ValueError(f"library {library_dir} holds {have} rows, fewer than the largest size {need}")
    rows = index_scaling_curve(np.concatenate(parts), _library_queries(library, queries, seed), sizes,
                               Path(work_dir) if work_dir else Path(output_dir) / "work", k=k, log=log)
    results = {"command": command, "library": str(Path(library_dir).resolve()), "width": library.width,
               "queries": queries, "k": k, "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
               "rows": rows}
    markdown = "\n".join(["# Exact against IVF index by library size", "", f"Command: `{command}`", "",
                          f"Library: the first N rows of {results['library']} (width {library.width}); {queries} MOSES "
                          f"test queries; one process, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}.", "",
                          *curve_markdown(rows, k)]) + "\n"
    _write_report(output_dir, "curve", results, markdown, log)
    return rows


def curve_markdown(rows: list[dict], k: int = 10) -> list[str]:
    lines = [f"| N | nlist / nprobe | recall@{k} | build s exact / IVF | ms per query in a batch, exact / IVF | "
             "ms for one query, exact / IVF | one-query speed-up |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']:,} | {r['nlist']} / {r['nprobe']} | {r[f'recall_at_{k}']:.3f} | "
                     f"{r['exact_build_seconds']:.2f} / {r['ivf_build_seconds']:.2f} | "
                     f"{1000 * r['exact_batch_seconds_per_query']:.3f} / {1000 * r['ivf_batch_seconds_per_query']:.3f} | "
                     f"{1000 * r['exact_single_query_seconds']:.3f} / {1000 * r['ivf_single_query_seconds']:.3f} | "
                     f"{r['single_query_speedup']:.1f}x |")
    return lines
