"""Render downstream results as Markdown and write them to disk atomically."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..saving import atomic_write
from .names import BASELINE_NAMES, LOWER_IS_BETTER

METRIC_LABELS = {"rmse": "RMSE", "accuracy": "accuracy", "roc_auc": "ROC-AUC"}


def metric_names(probe_metrics: dict) -> list[str]:
    """The metrics of one probe entry, without ``*_std`` companions and the ``selected`` field."""
    return [k for k in probe_metrics if k != "selected" and not k.endswith("_std")]


def _tasks(results: dict) -> dict:
    return results["tasks"] if "tasks" in results else results


def _cell(metrics: dict, digits: int) -> str:
    parts = []
    for name in metric_names(metrics):
        text = f"{metrics[name]:.{digits}f}"
        if f"{name}_std" in metrics:
            text += f" ± {metrics[f'{name}_std']:.{digits}f}"
        parts.append(text)
    cell = " / ".join(parts)
    if "selected" in metrics:
        choices = metrics["selected"]
        choices = [choices] if isinstance(choices, str) else choices
        probe, count = Counter(choices).most_common(1)[0]
        cell += f" ({probe})" if count == len(choices) else f" ({probe} {count}/{len(choices)})"
    return cell


def results_to_markdown(results: dict, digits: int = 3) -> str:
    """One Markdown table per task: rows = feature sets, columns = probes, baselines marked in italics.

    Accepts the dict returned by ``evaluate_downstream`` (or just its ``"tasks"`` part). Cells hold the
    metrics (``rmse``, or ``accuracy / roc_auc``) with ``± std`` over outer folds where available; the
    ``best`` column names the probe chosen by inner CV. The best value of the first metric in each column
    is bold.
    """
    lines = []
    for task, feature_sets in _tasks(results).items():
        probes = list(dict.fromkeys(p for probe_map in feature_sets.values() for p in probe_map))
        first = next(iter(feature_sets.values()))
        metrics = metric_names(first[probes[0]])
        direction = "lower" if metrics[0] in LOWER_IS_BETTER else "higher"
        lines.append(f"### {task}: {' / '.join(METRIC_LABELS.get(m, m) for m in metrics)} ({direction} is better)")
        lines.append("")
        lines.append("| features | " + " | ".join(probes) + " |")
        lines.append("|---" * (len(probes) + 1) + "|")
        winners = {}
        for probe in probes:
            scored = {fs: pm[probe][metrics[0]] for fs, pm in feature_sets.items() if probe in pm}
            pick = min if direction == "lower" else max
            winners[probe] = pick(scored, key=scored.get) if scored else None
        for fs, probe_map in feature_sets.items():
            cells = []
            for probe in probes:
                if probe not in probe_map:
                    cells.append("")
                    continue
                cell = _cell(probe_map[probe], digits)
                cells.append(f"**{cell}**" if winners[probe] == fs and len(feature_sets) > 1 else cell)
            label = f"*{fs}* (baseline)" if fs in BASELINE_NAMES else fs
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        excluded = results.get("excluded", {}).get(task) if "tasks" in results else None
        if excluded:
            lines.append("")
            lines.append(f"Excluded from every feature set ({len(excluded)} records RDKit could not read):")
            lines.extend(f"- {e['source']}: `{e['smiles']}`: {e['reason']}" for e in excluded)
        lines.append("")
    return "\n".join(lines)


def _jsonable(value):
    """Plain JSON types; NaN and infinities become null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(payload: dict, path: str | os.PathLike) -> Path:
    """Write ``payload`` as strict JSON (NaN as null) to ``path`` atomically."""
    return atomic_write(path, json.dumps(_jsonable(payload), indent=2) + "\n")


def write_results(results: dict, out_dir: str | os.PathLike, stem: str = "results") -> dict[str, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir`` atomically; returns both paths."""
    out_dir = Path(out_dir)
    json_path = write_json(results, out_dir / f"{stem}.json")
    md_path = atomic_write(out_dir / f"{stem}.md", results_to_markdown(results))
    return {"json": json_path, "markdown": md_path}
