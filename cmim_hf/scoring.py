"""Property scores of molecules, what latent-space optimisation maximises (`cmim_hf.optimization`).

Every scorer maps one SMILES string to a float, or to None when it cannot score it (RDKit cannot parse it):

    qed("CCO")      # drug-likeness, 0..1 (RDKit's QED)
    logp("CCO")     # Crippen logP
    plogp("CCO")    # penalised logP = logP - SA score - max(0, largest ring - 6), the JT-VAE benchmark's score
    tpsa("CCO")     # topological polar surface area
    resolve_objective("mypackage.props:solubility")  # a user's own function, imported by name

The SA score is RDKit's own implementation (Ertl and Schuffenhauer 2009) from RDKit's Contrib directory.
Needs RDKit: `pip install "cmim-hf[chem]"`.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import os
import pickle
from collections.abc import Callable
from functools import cache
from types import ModuleType

from rdkit import Chem, RDConfig
from rdkit.Chem import QED, Crippen, Descriptors

from .chem import to_mol

__all__ = ["PROPERTY_SCORES", "logp", "plogp", "qed", "resolve_objective", "sa_score", "tpsa"]

Scorer = Callable[[str], "float | None"]


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain data (lists, numbers, strings) and refuses anything that names a class or function, so
    loading runs no code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is expected")


@cache
def _sascorer() -> ModuleType:
    """RDKit's Contrib `sascorer` module, with its fragment scores loaded as plain data.

    Contrib is not an importable package, so the module is loaded from its file. `sascorer` would read its
    fragment table (`fpscores.pkl.gz`, rows of [score, fragment id, ...]) with `pickle.load`; it is read here
    with an unpickler that accepts only plain data, and handed to the module as the dict it builds.
    """
    folder = os.path.join(RDConfig.RDContribDir, "SA_Score")
    path = os.path.join(folder, "sascorer.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"RDKit's SA score is missing: {path} does not exist (RDKit installed without "
                                "its Contrib directory)")
    spec = importlib.util.spec_from_file_location("cmim_hf_rdkit_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with gzip.open(os.path.join(folder, "fpscores.pkl.gz"), "rb") as handle:
        rows = _DataOnlyUnpickler(handle).load()
    module._fscores = {fragment: float(row[0]) for row in rows for fragment in row[1:]}
    return module


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility of an RDKit molecule, 1 (easy) .. 10 (hard)."""
    return float(_sascorer().calculateScore(mol))


def _largest_ring_penalty(mol: Chem.Mol) -> int:
    """Atoms beyond six in the largest ring (0 without rings or rings of at most 6)."""
    rings = mol.GetRingInfo().AtomRings()
    return max(0, max((len(ring) for ring in rings), default=0) - 6)


def qed(smiles: str) -> float | None:
    """RDKit's quantitative estimate of drug-likeness (0..1); None for an invalid SMILES."""
    mol = to_mol(smiles)
    return None if mol is None else float(QED.qed(mol))


def logp(smiles: str) -> float | None:
    """Crippen logP; None for an invalid SMILES."""
    mol = to_mol(smiles)
    return None if mol is None else float(Crippen.MolLogP(mol))


def plogp(smiles: str) -> float | None:
    """Penalised logP: Crippen logP - SA score - max(0, largest ring size - 6), unnormalised (the score of the
    constrained-optimisation benchmark of JT-VAE and MolMIM); None for an invalid SMILES."""
    mol = to_mol(smiles)
    if mol is None:
        return None
    return float(Crippen.MolLogP(mol) - sa_score(mol) - _largest_ring_penalty(mol))


def tpsa(smiles: str) -> float | None:
    """Topological polar surface area (square angstroms); None for an invalid SMILES."""
    mol = to_mol(smiles)
    return None if mol is None else float(Descriptors.TPSA(mol))


PROPERTY_SCORES: dict[str, Scorer] = {"qed": qed, "logp": logp, "plogp": plogp, "tpsa": tpsa}


def resolve_objective(objective: str | Scorer) -> tuple[str, Scorer]:
    """The scorer an objective names: a built-in property name (`PROPERTY_SCORES`), `"module:function"` (imported), or a
    callable (returned as is). Returns `(name, scorer)`; raises ValueError naming what was expected."""
    if callable(objective):
        return getattr(objective, "__name__", type(objective).__name__), objective
    if not isinstance(objective, str):
        raise TypeError(f"objective must be a name, 'module:function' or a callable, got {type(objective).__name__}")
    if objective in PROPERTY_SCORES:
        return objective, PROPERTY_SCORES[objective]
    expected = f"expected one of {', '.join(PROPERTY_SCORES)} or module:function"
    module_name, colon, function_name = objective.partition(":")
    if not colon or not module_name or not function_name:
        raise ValueError(f"unknown objective {objective!r}; {expected}")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module may fail in any way while it is imported
        raise ValueError(f"objective {objective!r}: cannot import module {module_name!r} "
                         f"({type(error).__name__}: {error})") from error
    scorer = getattr(module, function_name, None)
    if not callable(scorer):
        raise ValueError(f"objective {objective!r}: module {module_name!r} has no function {function_name!r}")
    return objective, scorer
