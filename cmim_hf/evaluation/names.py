"""Names shared by the evaluation, its reports and the model cards, with no heavy imports (no RDKit), so the
cards can use them without the `eval` extra."""

from __future__ import annotations

# The sections of `cmim-hf evaluate` (`model_eval.evaluate_model`); moses and length take tens of minutes.
SECTIONS: tuple[str, ...] = ("downstream", "reconstruction", "generation", "moses", "length")
DEFAULT_SECTIONS: tuple[str, ...] = ("downstream", "reconstruction", "generation")
# The downstream tasks (`tasks.load_task` reads them).
TASKS: tuple[str, ...] = ("freesolv", "solubility", "solubility_class")
# The feature sets that are not the model: computed by `features.BASELINES`, shown next to the model's own
# embeddings for comparison and left out of a card's `model-index`.
BASELINE_NAMES: tuple[str, ...] = ("ecfp4", "rdkit2d")
# Metrics where a smaller value is the better one (everything else: larger is better).
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae", "mse", "loss", "nll", "perplexity"})
