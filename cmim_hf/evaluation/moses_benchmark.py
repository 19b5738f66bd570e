"""The MOSES benchmark (Polykovskiy et al. 2020) of a cMIM generator, computed by the MOSES implementation.

`moses_benchmark` samples `num_samples` (MOSES: 30,000) raw greedy decodings, invalid strings included, in two
ways: from the prior N(0, I), and around MOSES test molecules (one sample each from mu(x) + radius * N(0, I), at
the default radius of `cmim-hf generate`). Each set goes through `moses.get_all_metrics` against MOSES's own
test and scaffold-test sets, with the precomputed test statistics molsets ships (test_stats.npz,
test_scaffolds_stats.npz: the FCD of the 176k test molecules is not recomputed) and MOSES train for novelty.

Installing: `pip install "cmim-hf[moses]"` brings `fcd_torch`; molsets itself goes in with
`pip install --no-deps molsets==0.3.1` (its pins include pomegranate, which does not build on Python 3.11; only
its HMM baseline uses it, and `import moses` does not). molsets 0.3.1 (2020) imports two APIs that current
libraries removed: `rdkit.six.iteritems` (RDKit dropped `six` in 2021) and `pandas.DataFrame.append` (removed in
pandas 2.0; molsets uses it once, at import, to join its two SMARTS filter tables). `import_moses` provides both,
behaving as they did, only while `moses` imports, and takes them away afterwards. While the metrics run, the
cosine of its Frag and Scaf metrics counts in float64 (`_float_count_cosine`: in int64 it overflows on a mostly
valid set of 30,000 samples). Nothing else is changed.
molsets' own package data (its SA-score table and the test statistics) is stored as pickles; they are loaded
from the installed molsets package, as MOSES loads them, never from a user's folder.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import time
import types
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import moses_sample
from ..embeddings import DECODE_BATCH_SIZE, generate_smiles, max_input_length
from ..checks import check_number

__all__ = ["MOSES_METRICS", "MOSES_SAMPLES", "import_moses", "moses_benchmark", "moses_metrics",
           "sample_around_test", "default_radius"]

MOSES_SAMPLES = 30_000  # the MOSES protocol: metrics of 30,000 generated SMILES
# The keys of `moses.get_all_metrics` in the column order of the MOSES README's metrics table (it also returns the
# Wasserstein distances of logP, SA, QED and weight, kept in results.json). Unique@k counts distinct molecules
# among the first k valid ones; FCD is lower-is-better, everything else higher-is-better.
MOSES_METRICS: tuple[str, ...] = (
    "valid", "unique@1000", "unique@10000", "FCD/Test", "FCD/TestSF", "SNN/Test", "SNN/TestSF", "Frag/Test",
    "Frag/TestSF", "Scaf/Test", "Scaf/TestSF", "IntDiv", "IntDiv2", "Filters", "Novelty",
)
INSTALL = 'pip install "cmim-hf[moses]" && pip install --no-deps molsets==0.3.1'


def default_radius() -> float:
    """The radius `cmim-hf generate --around` samples at when none is given (`generate_smiles`'s default)."""
    return float(inspect.signature(generate_smiles).parameters["radius"].default)


@contextlib.contextmanager
def _removed_apis_molsets_imports():
    """`rdkit.six` and `DataFrame.append`, as they behaved, only for the duration of `import moses`."""
    import pandas as pd

    added_six = "rdkit.six" not in sys.modules
    if added_six:
        six = types.ModuleType("rdkit.six")
        six.iteritems = lambda mapping: iter(mapping.items())  # six.iteritems on Python 3
        sys.modules["rdkit.six"] = six
    added_append = not hasattr(pd.DataFrame, "append")
    if added_append:  # pandas < 2.0: DataFrame.append(other, sort) was pd.concat([self, other], sort=sort)
        pd.DataFrame.append = lambda self, other, sort=False: pd.concat([self, other], sort=sort)
    try:
        yield
    finally:
        if added_append:
            del pd.DataFrame.append
        if added_six:
            del sys.modules["rdkit.six"]


@contextlib.contextmanager
def _float_count_cosine():
    """molsets' Frag and Scaf metrics take scipy's `cosine` of int64 count vectors, and current scipy multiplies
    their squared norms as int64 before the square root. MOSES test's fragment counts alone have a squared norm of
    3.0e10, so once a generator's own reaches about 3e8 (30,000 samples of a mostly valid generator) the product
    wraps: the metric is wrong, or fails with "math domain error". For the duration of the metrics the module
    computes the same cosine on the counts as float64."""
    from moses.metrics import metrics as moses_metrics_module
    from scipy.spatial.distance import cosine

    original = moses_metrics_module.cos_distance
    moses_metrics_module.cos_distance = lambda u, v: cosine(np.asarray(u, dtype=np.float64),
                                                            np.asarray(v, dtype=np.float64))
    try:
        yield
    finally:
        moses_metrics_module.cos_distance = original


def import_moses():
    """The `moses` package (molsets 0.3.1), importable on current RDKit / pandas (see the module notes), or an
    ImportError saying how to install it."""
    if "moses.metrics" in sys.modules:
        return sys.modules["moses"]
    try:
        import fcd_torch  # noqa: F401  (moses imports it; name the extra when it is missing)
        with _removed_apis_molsets_imports():
            import moses
            import moses.metrics  # noqa: F401
    except ImportError as error:
        raise ImportError(f"the MOSES benchmark needs molsets and fcd_torch ({error}): {INSTALL}") from error
    return moses


@functools.cache
def _moses_train() -> list[str]:
    """MOSES train as `get_all_metrics` loads it by default (for novelty), read once per process: each call would
    otherwise read the 1.6M rows again."""
    from moses.dataset import get_dataset

    return list(get_dataset("train"))


def moses_metrics(samples: Sequence[str], *, n_jobs: int = 1, device: str = "cpu") -> dict:
    """`moses.get_all_metrics` of `samples` (raw strings, invalid ones included: it measures validity itself)
    against MOSES test, scaffold test (precomputed statistics) and train (novelty), plus `n` and `n_valid`.

    With fewer than 2 valid samples only `valid` is defined (FCD needs two); the rest are NaN. With fewer valid
    samples than k, MOSES computes unique@k over all the valid ones (and warns); `n_valid` says when.
    """
    if len(samples) == 0:
        raise ValueError("the MOSES metrics need at least one sample, got none")
    moses = import_moses()
    from moses.metrics import remove_invalid

    from rdkit import rdBase

    with rdBase.BlockLogs():
        n_valid = len(remove_invalid(list(samples), canonize=False))
    if n_valid < 2:
        metrics = {key: float("nan") for key in MOSES_METRICS}
        metrics["valid"] = n_valid / len(samples)
    else:
        import warnings

        with warnings.catch_warnings(), _float_count_cosine():  # unique@k with < k valid: n_valid records it
            warnings.filterwarnings("ignore", message="Can't compute unique@")
            metrics = moses.get_all_metrics(list(samples), n_jobs=n_jobs, device=device, train=_moses_train())
    return {"n": len(samples), "n_valid": n_valid, **{key: float(value) for key, value in metrics.items()}}


@torch.no_grad()
def sample_around_test(model, tokenizer, num_samples: int, *, radius: float, seed: int = 0,
                       batch_size: int = DECODE_BATCH_SIZE, progress: bool = False) -> tuple[list[str], list[str]]:
    """One raw greedy decoding of mu(x) + radius * N(0, I) for each of `num_samples` MOSES test molecules x
    (drawn with `seed`). Returns (the test molecules, the samples), aligned."""
    check_number("radius", radius, minimum=0)
    seeds = moses_sample("test", num_samples, seed)
    generator = torch.Generator().manual_seed(seed)
    max_length = max_input_length(model, tokenizer)
    samples: list[str] = []
    for start in tqdm(range(0, len(seeds), batch_size), desc="sample around MOSES test", disable=not progress):
        batch = tokenizer(seeds[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt").to(model.device)
        ids = model.sample_around(batch["input_ids"], batch["attention_mask"], radius=radius, num_samples=1,
                                  generator=generator)
        samples += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return seeds, samples


def moses_benchmark(model, tokenizer, *, num_samples: int = MOSES_SAMPLES, radius: float | None = None,
                    seed: int = 0, n_jobs: int = 1, device: str = "cpu", progress: bool = False) -> dict:
    """MOSES metrics of `num_samples` prior samples and of `num_samples` samples around MOSES test molecules.

    Returns {"prior": metrics, "around_test": metrics, "settings": {...}} with `moses_metrics`'s dicts, each
    with the seconds its sampling and its metrics took. `device` is where MOSES computes (FCD's ChemNet, SNN's
    similarities), not the model's.
    """
    check_number("num_samples", num_samples, integer=True, minimum=1)
    radius = default_radius() if radius is None else radius
    check_number("radius", radius, minimum=0)
    import_moses()  # before minutes of sampling
    results = {}
    started = time.perf_counter()
    prior = generate_smiles(model, tokenizer, num_samples, seed=seed)
    sampled = time.perf_counter()
    results["prior"] = {**moses_metrics(prior, n_jobs=n_jobs, device=device), "examples": prior[:10],
                        "sampling_seconds": round(sampled - started, 1),
                        "metrics_seconds": round(time.perf_counter() - sampled, 1)}
    started = time.perf_counter()
    seeds, around = sample_around_test(model, tokenizer, num_samples, radius=radius, seed=seed, progress=progress)
    sampled = time.perf_counter()
    results["around_test"] = {**moses_metrics(around, n_jobs=n_jobs, device=device),
                              "examples": [[x, y] for x, y in zip(seeds[:10], around)],
                              "sampling_seconds": round(sampled - started, 1),
                              "metrics_seconds": round(time.perf_counter() - sampled, 1)}
    results["settings"] = {"num_samples": num_samples, "radius": radius, "seed": seed, "decoding": "greedy",
                           "moses": "molsets 0.3.1 get_all_metrics", "n_jobs": n_jobs, "device": device}
    return results


def _cell(key: str, value) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.3f}" if key.startswith("FCD") else f"{value:.4f}"


def moses_markdown(results: dict, *, title: str = "## MOSES benchmark") -> str:
    """The MOSES table of `moses_benchmark`'s results: one row per sampling, in the MOSES README's column order."""
    settings = results["settings"]
    lines = [title, "", f"{settings['num_samples']} raw greedy decodings per row (invalid ones included), "
             f"metrics by {settings['moses']}; around test: one sample from "
             f"mu(x) + {settings['radius']} * N(0, I) per MOSES test molecule x. FCD lower is better, the rest "
             "higher.", "",
             "| samples | n valid | " + " | ".join(MOSES_METRICS) + " |", "|---" * (len(MOSES_METRICS) + 2) + "|"]
    for name in ("prior", "around_test"):
        if name in results:
            row = results[name]
            lines.append(f"| {name.replace('_', ' ')} | {row['n_valid']} | "
                         + " | ".join(_cell(key, row.get(key)) for key in MOSES_METRICS) + " |")
    return "\n".join(lines) + "\n"
