"""The `onnx` section of the benchmark suite: ONNX Runtime (float32 and int8) against torch, and each against RDKit
2D descriptors, on ONE core, for the shipped checkpoints' two geometries (cmim-moses-tiny: tiny-cpu; cmim-moses-small:
small).

Every contestant embeds the same chunk of MOSES molecules per round through the user's path (checks, tokenization,
length-sorted batches of `embed_batch_size`, RDKit validity check off on both sides):
  torch        `embed_smiles` on the checkpoint (float32), torch intra-op threads = 1
  onnx         `ONNXEmbedder.embed` on `export_onnx(checkpoint)`, ONNX Runtime intra_op_num_threads = 1
  onnx_int8    the same on `export_onnx(checkpoint, quantize="int8")`
  rdkit        all of RDKit's `CalcMolDescriptors` per molecule, one process (one core)

Ratios (median over interleaved rounds of the paired time ratios, `measure.paired_ratio`):
  onnx_vs_torch_<geometry>, onnx_int8_vs_torch_<geometry>      how many times faster than torch
  embed_vs_rdkit2d_<backend>_<geometry>                        molecules/s over RDKit 2D's, both on one core
plus the worst cosine of each ONNX backend's rows to torch's over the molecules embedded.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .measure import interleaved, median, paired_ratio, torch_threads

__all__ = ["CHECKPOINTS", "bench_onnx", "md_onnx"]

# geometry -> the shipped checkpoint of that geometry
CHECKPOINTS = {"tiny": "cmim-moses-tiny", "small": "cmim-moses-small"}
BACKENDS = ("torch", "onnx", "onnx_int8")
# The goals of the ONNX issue, on one core: molecules/s over RDKit 2D's
GOALS = {"tiny": 5.0, "small": 1.0}


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def bench_onnx(settings, smiles: list[str], rdkit_featurizer: Callable | None) -> dict:
    """Run the section (see the module notes) with `settings.embed_molecules` molecules per round for
    `settings.embed_rounds` rounds; returns its results dict (empty with a note when onnxruntime is missing)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        settings.notes.append("onnxruntime is not installed (pip install 'cmim-hf[onnx]'): the onnx section was "
                              "not measured")
        return {}
    from cmim_hf.embeddings import embed_smiles, load_pretrained
    from cmim_hf.onnx_backend import ONNXEmbedder
    from cmim_hf.onnx_export import export_onnx

    n, bs, rounds = settings.embed_molecules, settings.embed_batch_size, settings.embed_rounds
    chunks = [smiles[r * n:(r + 1) * n] for r in range(rounds)]
    checkpoints = {geometry: CHECKPOINTS[geometry] for geometry in settings.onnx_geometries}
    out: dict = {"molecules_per_round": n, "rounds": rounds, "batch_size": bs, "threads": 1,
                 "checkpoints": checkpoints}
    with torch_threads(1), tempfile.TemporaryDirectory(prefix="cmim-bench-onnx-") as workdir, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's and the weight loader's notices
        embedders: dict[str, Callable[[list[str]], np.ndarray]] = {}
        for geometry, name in checkpoints.items():
            model, tokenizer = load_pretrained(name, device="cpu")
            embedders[f"torch_{geometry}"] = (lambda m, t: lambda chunk: embed_smiles(
                m, t, chunk, batch_size=bs, on_invalid="ignore"))(model, tokenizer)
            for backend, quantize in (("onnx", None), ("onnx_int8", "int8")):
                folder = export_onnx(name, Path(workdir) / f"{geometry}-{backend}", quantize=quantize)
                embedder = ONNXEmbedder(folder, threads=1)
                embedders[f"{backend}_{geometry}"] = (lambda e: lambda chunk: e.embed(
                    chunk, batch_size=bs, on_invalid="ignore"))(embedder)
        reference = {g: embedders[f"torch_{g}"](chunks[0]) for g in checkpoints}  # also the warm-up
        for geometry in checkpoints:
            for backend in BACKENDS[1:]:
                out[f"{backend}_min_cosine_to_torch_{geometry}"] = _min_cosine(
                    embedders[f"{backend}_{geometry}"](chunks[0]), reference[geometry])
        contestants = {}
        calls: dict[str, int] = {}
        for label, embed in embedders.items():
            calls[label] = 0
            contestants[label] = (lambda lab, fn: lambda: fn(chunks[_next(calls, lab) % rounds]))(label, embed)
        if rdkit_featurizer is not None:
            rdkit_featurizer(smiles[:4])  # warm-up
            calls["rdkit"] = 0
            contestants["rdkit"] = lambda: rdkit_featurizer(chunks[_next(calls, "rdkit") % rounds])
        times = interleaved(contestants, rounds)
    for label in embedders:
        out[f"{label}_molecules_per_s"] = n / median(times[label])
    for geometry in checkpoints:
        for backend in BACKENDS[1:]:
            out[f"{backend}_vs_torch_{geometry}"] = paired_ratio(times[f"{backend}_{geometry}"],
                                                                  times[f"torch_{geometry}"])
        if "rdkit" in times:
            for backend in BACKENDS:
                out[f"embed_vs_rdkit2d_{backend}_{geometry}"] = paired_ratio(times[f"{backend}_{geometry}"],
                                                                             times["rdkit"])
    if "rdkit" in times:
        out["rdkit_molecules_per_s_one_core"] = n / median(times["rdkit"])
    else:
        settings.notes.append("RDKit is not installed: the onnx section's embed_vs_rdkit2d was not measured")
    out["round_times_s"] = {k: [round(x, 4) for x in v] for k, v in times.items()}
    return out


def _next(calls: dict[str, int], label: str) -> int:
    """The call count of `label` before this call (each call embeds the next chunk)."""
    calls[label] += 1
    return calls[label] - 1


def md_onnx(section: dict) -> list[str]:
    """The section's Markdown table: one row per geometry and backend."""
    if not section:
        return []
    lines = ["", "## ONNX Runtime vs torch (one core)", "",
             f"{section['molecules_per_round']} MOSES molecules per round, {section['rounds']} rounds, batch size "
             f"{section['batch_size']}, one thread each (torch intra-op threads, ONNX Runtime intra_op_num_threads); "
             "ratios are medians of paired per-round ratios.", "",
             "| checkpoint | backend | molecules/s | vs torch | vs RDKit 2D (one core) | goal | min cosine to torch |",
             "|---|---|---|---|---|---|---|"]
    for geometry, name in section["checkpoints"].items():
        for backend in BACKENDS:
            speed = section.get(f"{backend}_{geometry}_molecules_per_s")
            versus = "1.00x" if backend == "torch" else f"{section[f'{backend}_vs_torch_{geometry}']:.2f}x"
            rdkit = section.get(f"embed_vs_rdkit2d_{backend}_{geometry}")
            cosine = "-" if backend == "torch" else f"{section[f'{backend}_min_cosine_to_torch_{geometry}']:.5f}"
            lines.append(f"| {name} | {backend} | {speed:,.0f} | {versus} | "
                         f"{'-' if rdkit is None else f'{rdkit:.2f}x'} | {GOALS[geometry]:.0f}x | {cosine} |")
    if "rdkit_molecules_per_s_one_core" in section:
        lines += ["", f"RDKit 2D descriptors: {section['rdkit_molecules_per_s_one_core']:,.0f} molecules/s on one core."]
    return lines
