"""The `search` section of `cmim-hf benchmark`: the nearest-neighbour index against library size.

MOSES molecules are embedded with the shipped `cmim-moses-tiny` (informative kind); for growing prefixes of
that library an exact (IndexFlatIP) and an IVF (IndexIVFFlat) index are built with `cmim_hf.search.build_index`
and searched with held-out MOSES molecules: build time of IVF over exact, recall@10 of IVF against exact, and the
search speed-up of IVF over exact for a batch and for one query, each measured back to back in the same run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

__all__ = ["bench_search", "md_search"]

# (library molecules, queries): full run, quick run
_SIZES = {False: (40_000, 200), True: (2_000, 50)}


def bench_search(quick: bool, workdir: Path) -> dict:
    """Returns the curve (one row per library size) and its largest size's ratios as headline values; without
    faiss (`pip install "cmim-hf[search]"`), {"skipped": why}."""
    import importlib.util

    if importlib.util.find_spec("faiss") is None:
        return {"skipped": 'faiss is not installed (pip install "cmim-hf[search]")'}
    from cmim_hf.embeddings import embed_smiles, load_pretrained
    from cmim_hf.evaluation.search_quality import index_scaling_curve

    from .measure import read_moses_smiles

    size, queries = _SIZES[quick]
    smiles = read_moses_smiles(size + queries)
    model, tokenizer = load_pretrained("cmim-moses-tiny", device="cpu")
    start = time.perf_counter()
    vectors = embed_smiles(model, tokenizer, smiles, kind="informative", batch_size=256, on_invalid="ignore")
    embed_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory(dir=workdir, prefix="search-") as work:
        rows = index_scaling_curve(vectors[queries:], vectors[:queries], [size // 4, size // 2, size], work, k=10)
    last = rows[-1]
    return {"model": "cmim-moses-tiny", "kind": "informative", "width": int(vectors.shape[1]), "queries": queries,
            "embed_molecules_per_s": len(smiles) / embed_seconds, "rows": rows,
            "recall_at_10": last["recall_at_10"], "ivf_build_over_exact": last["ivf_build_over_exact"],
            "ivf_single_query_speedup": last["single_query_speedup"], "ivf_batch_speedup": last["batch_speedup"]}


def md_search(section: dict) -> list[str]:
    from cmim_hf.evaluation.search_quality import curve_markdown

    if "skipped" in section:
        return ["", "## Search index", "", f"Not measured: {section['skipped']}."]
    return ["", "## Search index", "",
            f"`{section['model']}` {section['kind']} embeddings (width {section['width']}) of the first MOSES training "
            f"molecules, {section['queries']} other MOSES molecules as queries, k=10. Exact = FAISS IndexFlatIP, "
            "IVF = IndexIVFFlat with cmim-hf's default nlist and nprobe; both built by `build_index` from a library "
            "folder, measured back to back. At the largest size: IVF recall@10 "
            f"{section['recall_at_10']:.3f}, one query {section['ivf_single_query_speedup']:.1f}x and a batch "
            f"{section['ivf_batch_speedup']:.1f}x faster than exact, build {section['ivf_build_over_exact']:.1f}x "
            "exact's time.", "", *curve_markdown(section["rows"])]
