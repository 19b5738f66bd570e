"""Baseline molecular features: ECFP4 fingerprints and RDKit 2D descriptors.

Features are computed from already-parsed molecules and memoised per canonical SMILES for the life of the
process, so the slow descriptors are computed once however many tasks, models or evaluation runs use them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors
from tqdm.auto import tqdm

from ..chem import ECFP4_BITS, ecfp4_generator
from .names import BASELINE_NAMES


@dataclass(frozen=True)
class FeatureSpec:
    """How a feature set is computed and how probes must preprocess it.

    ``impute``: the features may contain NaN (replaced by training-fold medians inside the probe).
    ``scale``: standardise columns inside the probe (not for binary fingerprints, where scaling would
    inflate rare bits).
    ``clip``: the features are heavy-tailed; clip them to the training range inside the probe.
    """

    compute: Callable[..., np.ndarray] | None  # None: supplied from outside (embeddings)
    impute: bool
    scale: bool
    clip: bool = False


def ecfp4(mols: Sequence[Chem.Mol], progress: bool = False) -> np.ndarray:
    """Morgan fingerprints, radius 2, 2048 bits: ``[N, 2048]`` uint8."""
    generator = ecfp4_generator()
    rows = [generator.GetFingerprintAsNumPy(m) for m in tqdm(mols, desc="ecfp4", disable=not progress)]
    return np.asarray(rows, dtype=np.uint8).reshape(len(mols), ECFP4_BITS)


def rdkit2d_names() -> list[str]:
    """Column names of :func:`rdkit2d`, in order."""
    return [name for name, _ in Descriptors._descList]


def rdkit2d(mols: Sequence[Chem.Mol], progress: bool = False) -> np.ndarray:
    """All RDKit 2D descriptors (``Descriptors.CalcMolDescriptors``): ``[N, 217]`` float64.

    Descriptors RDKit cannot compute, and infinite values, become NaN; the probes impute them from the
    training data only.
    """
    names = rdkit2d_names()
    out = np.empty((len(mols), len(names)), dtype=np.float64)
    with rdBase.BlockLogs():  # a failing descriptor is already reported as NaN
        for i, mol in enumerate(tqdm(mols, desc="rdkit2d", disable=not progress)):
            values = Descriptors.CalcMolDescriptors(mol, missingVal=np.nan)
            out[i] = [values[name] for name in names]
    out[~np.isfinite(out)] = np.nan
    return out


# In the order of BASELINE_NAMES (ecfp4, rdkit2d), their one home.
BASELINES: dict[str, FeatureSpec] = dict(zip(BASELINE_NAMES, (
    FeatureSpec(ecfp4, impute=False, scale=False),
    FeatureSpec(rdkit2d, impute=True, scale=True, clip=True),
)))

# (feature name, canonical SMILES) -> feature row. Module-level so repeated evaluations in one process
# (one per model, objective or batch size) reuse the descriptors.
_CACHE: dict[tuple[str, str], np.ndarray] = {}


def baseline_features(name: str, smiles: Sequence[str], mols: Sequence[Chem.Mol], progress: bool = False) -> np.ndarray:
    """Features ``name`` (a key of ``BASELINES``) for ``mols``, memoised by their canonical ``smiles``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {tuple(BASELINES)}")
    if len(smiles) != len(mols):
        raise ValueError(f"need one SMILES per molecule, got {len(smiles)} SMILES and {len(mols)} molecules")
    missing = {s: m for s, m in zip(smiles, mols) if (name, s) not in _CACHE}
    if missing:
        rows = BASELINES[name].compute(list(missing.values()), progress=progress)
        _CACHE.update({(name, s): row for s, row in zip(missing, rows)})
    return np.stack([_CACHE[name, s] for s in smiles]) if smiles else np.empty((0, 0))


def clear_feature_cache() -> None:
    """Forget memoised baseline features (e.g. after changing RDKit versions in a long session)."""
    _CACHE.clear()
