"""Generation and reconstruction metrics: pure functions on lists of SMILES strings.

Definitions follow MOSES: uniqueness is measured among valid samples and novelty among unique valid
samples; validity is `cmim_hf.chem.to_mol`'s. Token accuracy is the model's own
(`modeling_cmim.count_correct_tokens`, see `reconstruction.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..chem import canonical_set, canonicalize, tanimoto_to_seed, to_mol


def _require(samples: Sequence, what: str) -> None:
    if len(samples) == 0:
        raise ValueError(f"{what} needs at least one string, got an empty list")


def validity(samples: Sequence[str]) -> float:
    """Fraction of ``samples`` that are valid molecules."""
    _require(samples, "validity")
    return sum(to_mol(s) is not None for s in samples) / len(samples)


def uniqueness(samples: Sequence[str]) -> float:
    """Distinct canonical molecules / valid samples (NaN when none is valid)."""
    _require(samples, "uniqueness")
    valid = [c for c in map(canonicalize, samples) if c is not None]
    return len(set(valid)) / len(valid) if valid else float("nan")


def novelty(samples: Sequence[str], training: set[str] | frozenset[str]) -> float:
    """Fraction of the unique valid samples whose canonical SMILES is absent from ``training``.

    ``training`` must hold canonical SMILES (build it once with :func:`canonical_set`); a set is required
    because membership in a list of a million molecules would be linear per sample. NaN when no sample is
    valid.
    """
    _require(samples, "novelty")
    if not isinstance(training, (set, frozenset)):
        raise TypeError(
            f"training must be a set of canonical SMILES (see canonical_set), got {type(training).__name__}"
        )
    unique = canonical_set(samples)
    return sum(s not in training for s in unique) / len(unique) if unique else float("nan")


def exact_match_rate(references: Sequence[str], predictions: Sequence[str], canonical: bool = False) -> float:
    """Fraction of predictions equal to their reference (exact reconstruction rate).

    With ``canonical=True`` both sides are compared as RDKit-canonical SMILES, so a different but
    equivalent spelling of the same molecule counts as a match and an invalid prediction never does.
    Without it the raw strings are compared (any tokenizer, any text).
    """
    if len(references) != len(predictions):
        raise ValueError(f"need one prediction per reference, got {len(predictions)} for {len(references)}")
    _require(references, "exact_match_rate")
    if not canonical:
        return sum(r == p for r, p in zip(references, predictions)) / len(references)
    hits = 0
    for i, (reference, prediction) in enumerate(zip(references, predictions)):
        wanted = canonicalize(reference)
        if wanted is None:
            raise ValueError(f"reference {i} ({reference!r}) is not a valid molecule; compare with canonical=False")
        hits += canonicalize(prediction) == wanted
    return hits / len(references)


def mean_tanimoto_to_seed(samples: Sequence[str], seed: str) -> float:
    """Mean ECFP4 Tanimoto similarity of the valid samples to ``seed`` (NaN when none is valid)."""
    _require(samples, "mean_tanimoto_to_seed")
    similarities = tanimoto_to_seed(samples, seed)
    return float(similarities.mean()) if len(similarities) else float("nan")


def generation_metrics(samples: Sequence[str], training: set[str] | frozenset[str] | None = None) -> dict[str, float]:
    """Validity, uniqueness and (when ``training`` is given) novelty of a batch of generated samples."""
    out = {"validity": validity(samples), "uniqueness": uniqueness(samples)}
    if training is not None:
        out["novelty"] = novelty(samples, training)
    return out
