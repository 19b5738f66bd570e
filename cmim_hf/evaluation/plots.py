"""Figures for the evaluation: downstream bar charts, embedding projections, batch-size robustness.

Figures are built on ``matplotlib.figure.Figure`` and rendered with the Agg canvas, never through
``pyplot``: no global backend switch, no figure registry to leak, safe on a headless machine.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .names import BASELINE_NAMES, LOWER_IS_BETTER
from .report import METRIC_LABELS, atomic_write, metric_names

BASELINE_COLOR, EMBEDDING_COLOR = "0.6", "tab:blue"


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    return atomic_write(path, buffer.getvalue())


def plot_downstream(results: dict, path: str | os.PathLike, probe: str = "best") -> Path:
    """Bar chart, one panel per task, of ``probe``'s first metric for every feature set.

    Baselines are grey and hatched, embeddings blue; error bars show the standard deviation over outer
    folds where the task has several. Accepts ``evaluate_downstream``'s dict or its ``"tasks"`` part.
    """
    tasks = results["tasks"] if "tasks" in results else results
    fig = Figure(figsize=(4.2 * len(tasks), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(tasks), squeeze=False)[0])
    for ax, (task, feature_sets) in zip(axes, tasks.items()):
        names = [fs for fs, pm in feature_sets.items() if probe in pm]
        if not names:
            raise ValueError(f"task {task!r} has no {probe!r} results to plot")
        metric = metric_names(feature_sets[names[0]][probe])[0]
        values = [feature_sets[fs][probe][metric] for fs in names]
        errors = [feature_sets[fs][probe].get(f"{metric}_std", 0.0) for fs in names]
        errors = errors if any(errors) else None  # single-split tasks have no spread to draw
        baseline = [fs in BASELINE_NAMES for fs in names]
        bars = ax.bar(
            names, values, yerr=errors, capsize=3,
            color=[BASELINE_COLOR if b else EMBEDDING_COLOR for b in baseline], edgecolor="black", linewidth=0.6,
        )
        for bar, is_baseline in zip(bars, baseline):
            if is_baseline:
                bar.set_hatch("//")
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
        direction = "lower" if metric in LOWER_IS_BETTER else "higher"
        ax.set_title(f"{task} ({probe})", fontsize=10)
        ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} ({direction} is better)")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.margins(y=0.15)
    return _save(fig, path)


def plot_embedding_projection(
    embeddings: np.ndarray,
    values: Sequence,
    path: str | os.PathLike,
    title: str = "",
    label: str = "property",
) -> Path:
    """2D PCA projection of ``embeddings`` ``[N, E]``, points coloured by ``values``.

    Numeric values get a colour bar; anything else (e.g. class names) is drawn as categories with a legend.
    """
    from sklearn.decomposition import PCA

    embeddings = np.asarray(embeddings, dtype=float)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(values) or embeddings.shape[0] < 2:
        raise ValueError(
            f"need embeddings [N, E] with N = len(values) >= 2, got {embeddings.shape} and {len(values)} values"
        )
    pca = PCA(n_components=2, random_state=0)
    xy = pca.fit_transform(embeddings)
    fig = Figure(figsize=(5.0, 4.2), layout="constrained")
    ax = fig.subplots()
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.number):
        points = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap="viridis", s=8, alpha=0.8)
        fig.colorbar(points, ax=ax, label=label)
    else:
        for category in dict.fromkeys(values.tolist()):
            mask = values == category
            ax.scatter(xy[mask, 0], xy[mask, 1], s=8, alpha=0.8, label=str(category))
        ax.legend(title=label, fontsize=8, markerscale=2)
    ratios = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({ratios[0]:.1%} of variance)")
    ax.set_ylabel(f"PC2 ({ratios[1]:.1%} of variance)")
    ax.set_title(title or f"PCA of embeddings coloured by {label}", fontsize=10)
    return _save(fig, path)


def plot_batch_size_robustness(
    curves: Mapping[str, Mapping[int, float]],
    path: str | os.PathLike,
    metric: str = "rmse",
    errors: Mapping[str, Mapping[int, float]] | None = None,
    title: str = "",
) -> Path:
    """Metric against training batch size, one line per objective (``{objective: {batch_size: value}}``).

    ``errors`` optionally gives a spread (e.g. standard deviation over seeds) with the same layout. The
    x axis is logarithmic in base 2, as batch sizes usually double.
    """
    fig = Figure(figsize=(6.6, 3.8), layout="constrained")  # room for the legend on the right
    ax = fig.subplots()
    for objective, points in curves.items():
        sizes = sorted(points)
        spread = [errors[objective][b] for b in sizes] if errors and objective in errors else None
        ax.errorbar(sizes, [points[b] for b in sizes], yerr=spread, marker="o", capsize=3, label=objective)
    ax.set_xscale("log", base=2)
    all_sizes = sorted({b for points in curves.values() for b in points})
    ax.set_xticks(all_sizes, [str(b) for b in all_sizes])
    direction = "lower" if metric in LOWER_IS_BETTER else "higher"
    ax.set_xlabel("training batch size")
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} ({direction} is better)")
    ax.set_title(title or "Sensitivity to batch size", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: error bars fill the axes
    return _save(fig, path)


def plot_kind_comparison(summaries: Sequence[Mapping], path: str | os.PathLike, *, tasks: Mapping[str, str],
                         title: str = "") -> Path:
    """Grouped bars, one panel per task: for each model, its embedding kinds' mean metric with the standard
    deviation over seeds as error bars. ``summaries``: rows with ``model``, ``kind``, ``<task>`` and
    ``<task>_std``; ``tasks``: {task: metric name}."""
    models = list(dict.fromkeys(s["model"] for s in summaries))
    kinds = list(dict.fromkeys(s["kind"] for s in summaries))
    cells = {(s["model"], s["kind"]): s for s in summaries}
    fig = Figure(figsize=(4.4 * len(tasks), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(tasks), squeeze=False)[0])
    width = 0.8 / len(kinds)
    for ax, (task, metric) in zip(axes, tasks.items()):
        for k, kind in enumerate(kinds):
            means = [cells.get((m, kind), {}).get(task) for m in models]
            spreads = [cells.get((m, kind), {}).get(f"{task}_std") or 0.0 for m in models]
            positions = [i + (k - (len(kinds) - 1) / 2) * width for i in range(len(models))]
            shown = [(x, y, e) for x, y, e in zip(positions, means, spreads) if y is not None]
            if shown:
                xs, ys, es = zip(*shown)
                ax.bar(xs, ys, width, yerr=es, capsize=2, label=kind)
        ax.set_xticks(range(len(models)), models, fontsize=8)
        direction = "lower" if metric in LOWER_IS_BETTER else "higher"
        ax.set_title(f"{task}: {METRIC_LABELS.get(metric, metric)} ({direction} is better)", fontsize=9)
        values = [s[task] for s in summaries if s.get(task) is not None]
        tops = [s[task] + (s.get(f"{task}_std") or 0.0) for s in summaries if s.get(task) is not None]
        if values:  # zoom on the differences: the bars start near the smallest value
            low, high = min(values), max(tops)
            ax.set_ylim(max(0.0, low - 0.5 * (high - low + 1e-9)), high + 0.3 * (high - low + 1e-9))
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
