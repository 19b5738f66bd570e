"""What the experiments write: each model's folder, the per-seed rows read from its evaluation, and the cells of
the tables of means over seeds. Shared by `compare.py` and `compare_backbones.py`.
"""

from __future__ import annotations

from pathlib import Path

from cmim_hf.evaluation.names import BASELINE_NAMES

__all__ = ["FAST_PROBES", "HEADLINE", "TIME_FILE", "baseline_headlines", "interval_text", "mean_sd_cell", "seed_dir",
           "task_headlines"]

# The headline number of each task, and whether lower is better.
HEADLINE = {"freesolv": ("rmse", True), "solubility": ("rmse", True), "solubility_class": ("roc_auc", False)}
# Random forests cost ~85% of the probing time on dense embeddings; the linear and kernel probes carry the
# comparison. `evaluate` on a single model runs all probes.
FAST_PROBES = {"regression": ("ridge", "svr"), "classification": ("logistic_regression", "svc")}
# Each model's training + evaluation seconds, beside its train/ and eval/ folders: the time of a comparison
# made over several (interrupted, resumed) invocations is the sum over its models.
TIME_FILE = "seconds.json"


def seed_dir(output_dir: str | Path, name: str, seed: int) -> Path:
    """`<output_dir>/<name>/seed-<s>`: one model's `train/` and `eval/` folders and its TIME_FILE."""
    return Path(output_dir) / name / f"seed-{seed}"


def task_headlines(result: dict, features: str) -> dict[str, float | None]:
    """Each task's HEADLINE metric of the inner-CV-selected probe on `features`, from `evaluate_model` results
    (None where the task or features were not evaluated)."""
    return {task: result["tasks"].get(task, {}).get(features, {}).get("best", {}).get(metric)
            for task, (metric, _) in HEADLINE.items()}


def baseline_headlines(result: dict) -> dict:
    """The baselines' headline metrics from `evaluate_model` results: {features: {task: value}}."""
    out = {}
    for features in BASELINE_NAMES:
        for task, value in task_headlines(result, features).items():
            if value is not None:
                out.setdefault(features, {})[task] = value
    return out


def mean_sd_cell(summary: dict | None, metric: str) -> str:
    """A table cell from a `statistics.seed_summaries` row: "mean ± sd", the mean alone with one seed, "-" without."""
    if summary is None or summary.get(metric) is None:
        return "-"
    std = summary.get(f"{metric}_std")
    return f"{summary[metric]:.3f}" if std is None else f"{summary[metric]:.3f} ± {std:.3f}"


def interval_text(comparison: dict) -> str:
    """A `statistics.paired_comparison` as "+advantage [+low, +high]" (no interval with one seed)."""
    interval = "" if comparison["low"] is None else f" [{comparison['low']:+.3f}, {comparison['high']:+.3f}]"
    return f"{comparison['advantage']:+.3f}{interval}"
