"""RDKit helpers: parsing, canonical SMILES, ECFP4 fingerprints, validity checks and randomised SMILES.

RDKit is optional (`pip install "cmim-hf[chem]"`): this module imports without it, and each function that needs
it imports it when called, raising an ImportError that says how to install it. A string is a valid molecule
when RDKit parses and sanitises it into a molecule with at least one atom (RDKit accepts the empty string as
an empty molecule; that is not a molecule).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable
from typing import Any, Literal

from .tokenization import _preview, _report, check_texts

__all__ = [
    "ECFP4_BITS",
    "canonical_set",
    "canonicalize",
    "ecfp4_tanimoto",
    "check_smiles_validity",
    "ecfp4_generator",
    "randomized_smiles_views",
    "tanimoto_to_seed",
    "require_rdkit",
    "to_mol",
    "unparsable_smiles",
    "validate_smiles",
]

ECFP4_BITS = 2048
RDKIT_MISSING = 'needs RDKit: pip install "cmim-hf[chem]" (or rdkit)'


def require_rdkit(what: str):
    """`rdkit.Chem`, or an ImportError saying that `what` needs RDKit and how to install it."""
    try:
        from rdkit import Chem
    except ImportError as error:
        raise ImportError(f"{what} {RDKIT_MISSING}") from error
    return Chem


def to_mol(smiles: str):
    """RDKit molecule for a SMILES string, or ``None`` when it is not a valid molecule (RDKit's log lines about
    it silenced: invalid strings are expected and counted by the callers)."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    return mol if mol is not None and mol.GetNumAtoms() > 0 else None


def canonicalize(smiles: str) -> str | None:
    """RDKit-canonical SMILES, or ``None`` when the string is not a valid molecule."""
    from rdkit import Chem

    mol = to_mol(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def canonical_set(smiles: Iterable[str]) -> set[str]:
    """Canonical forms of the valid strings in ``smiles`` (e.g. the reference set of novelty)."""
    return {c for c in map(canonicalize, smiles) if c is not None}


def ecfp4_generator():
    """RDKit's Morgan fingerprint generator for ECFP4: radius 2, `ECFP4_BITS` bits."""
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=ECFP4_BITS)


# ------------------------------------------------------------------------------------------------
# Checking user input
# ------------------------------------------------------------------------------------------------
def ecfp4_tanimoto(reference: str, smiles: Iterable[str]):
    """ECFP4 Tanimoto similarity of each of `smiles` to `reference`: a float64 numpy array, one value per item of
    `smiles`, NaN where either is not a valid molecule."""
    import numpy as np
    from rdkit import DataStructs

    smiles = list(smiles)
    out = np.full(len(smiles), np.nan)
    reference_mol = to_mol(reference)
    if reference_mol is None:
        return out
    generator = ecfp4_generator()
    mols = [to_mol(item) for item in smiles]
    valid = [i for i, mol in enumerate(mols) if mol is not None]
    if valid:
        out[valid] = DataStructs.BulkTanimotoSimilarity(generator.GetFingerprint(reference_mol),
                                                       [generator.GetFingerprint(mols[i]) for i in valid])
    return out


def tanimoto_to_seed(samples: Iterable[str], seed: str):
    """ECFP4 Tanimoto similarity of each valid sample to ``seed`` (invalid samples are dropped): a float64 numpy
    array of shape (number of valid samples,)."""
    import numpy as np

    if to_mol(seed) is None:
        raise ValueError(f"seed {seed!r} is not a valid molecule")
    similarities = ecfp4_tanimoto(seed, samples)
    return similarities[~np.isnan(similarities)]


def unparsable_smiles(items: list[str], name: str = "smiles") -> list[str]:
    """`name[i] = 'text'` for each item that is not a valid molecule. Raises ImportError without RDKit."""
    require_rdkit("checking SMILES")
    return [f"{name}[{i}] = {_preview(s)}" for i, s in enumerate(items) if to_mol(s) is None]


def check_smiles_validity(items: list[str], on_invalid: Literal["ignore", "warn", "raise"] = "warn",
                          name: str = "smiles") -> None:
    """Apply an `on_invalid` policy to SMILES that RDKit cannot parse: "ignore", "warn" (one UserWarning
    naming them) or "raise" (ValueError naming them). Without RDKit, "warn" warns that nothing was checked and
    "raise" raises ImportError."""
    if on_invalid not in ("ignore", "warn", "raise"):
        raise ValueError(f"on_invalid must be 'ignore', 'warn' or 'raise', got {on_invalid!r}")
    if on_invalid == "ignore" or not items:
        return
    try:
        invalid = unparsable_smiles(items, name)
    except ImportError:
        if on_invalid == "raise":
            raise
        warnings.warn(f"SMILES validity was not checked: it {RDKIT_MISSING}; on_invalid='ignore' silences "
                      "this", UserWarning, stacklevel=3)
        return
    if invalid:
        message = _report(invalid, len(items), "items are not SMILES that RDKit can parse")
        if on_invalid == "raise":
            raise ValueError(message)
        warnings.warn(message + " (embedded anyway; on_invalid='ignore' for text that is not SMILES)", UserWarning,
                      stacklevel=3)


def validate_smiles(smiles: str | Iterable[str]) -> list[str]:
    """Check that every SMILES parses with RDKit; raise `ValueError` naming each one that does not.

    Needs RDKit (`pip install "cmim-hf[chem]"`). Type and empty checks are those of `check_texts`.

    Returns:
        The SMILES as a list of str, unchanged.
    """
    require_rdkit("validate_smiles")  # before any other check: the message says how to install it
    items = check_texts(smiles, name="smiles")
    invalid = unparsable_smiles(items)
    if invalid:
        raise ValueError(_report(invalid, len(items), "SMILES could not be parsed by RDKit"))
    return items


# ------------------------------------------------------------------------------------------------
# Randomised SMILES (the two views of the InfoNCE objective)
# ------------------------------------------------------------------------------------------------
def randomized_smiles_views(smiles_list: Any, n_views: int = 2, seed: int | None = 0) -> list[list[str]]:
    """`n_views` randomised SMILES of each molecule (same molecule, different atom order).

    Args:
        smiles_list: SMILES strings, or already-parsed RDKit `Mol`s (to parse once and reuse across epochs).
        n_views: views per molecule.
        seed: makes the views reproducible; change it per epoch for fresh views. `None`: not reproducible.

    Returns:
        `views[i]` is a list of `n_views` SMILES of molecule `i`. Two views can coincide for small
        molecules (0.1% of pairs on MOSES).

    Needs RDKit (`pip install "cmim-hf[chem]"`); raises `ValueError` naming every SMILES it cannot parse.
    """
    Chem = require_rdkit("randomized_smiles_views")
    if not isinstance(n_views, int) or n_views < 1:
        raise ValueError(f"n_views must be a positive int, got {n_views!r}")
    items = [smiles_list] if isinstance(smiles_list, (str, Chem.Mol)) else list(smiles_list)
    wrong_type = [f"smiles_list[{i}] is {type(s).__name__} ({_preview(s)})"
                  for i, s in enumerate(items) if not isinstance(s, (str, Chem.Mol))]  # fmt: skip
    if wrong_type:
        raise TypeError(_report(wrong_type, len(items), "items are neither str nor rdkit Mol"))

    mols = [s if isinstance(s, Chem.Mol) else to_mol(s) for s in items]
    invalid = [f"smiles_list[{i}] = {_preview(s)}" for i, (s, m) in enumerate(zip(items, mols))
               if m is None or m.GetNumAtoms() == 0]  # fmt: skip
    if invalid:
        raise ValueError(_report(invalid, len(items), "SMILES could not be parsed by RDKit (or have no atoms)"))

    # RDKit treats randomSeed=0 as "unseeded", so seeded draws come from [1, 2**31).
    rng = random.Random(seed)
    return [
        list(Chem.MolToRandomSmilesVect(mol, n_views, randomSeed=0 if seed is None else rng.randrange(1, 2**31)))
        for mol in mols
    ]
