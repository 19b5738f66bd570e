"""`cmim-hf compare`: the cMIM paper's experiment at any scale.

Trains every objective (AE, VAE, MIM, cMIM, InfoNCE) with the same recipe, architecture and step budget at
each batch size, evaluates each model with `cmim_hf.evaluation.evaluate_model`, and writes a comparison
table (downstream metrics of each embedding kind, reconstruction) and batch-size robustness plots.

Each training runs as its own `python -m cmim_hf.training` process (fresh Accelerate state, memory given
back), and a model whose evaluation is already on disk is not trained or evaluated again, so an interrupted
comparison resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

OBJECTIVES = ("ae", "vae", "mim", "cmim", "infonce")
BATCH_SIZES = (16, 64, 256)
# The headline number of each task, and whether lower is better.
HEADLINE = {"freesolv": ("rmse", True), "solubility": ("rmse", True), "solubility_class": ("roc_auc", False)}
# Random forests cost ~85% of the probing time on dense embeddings; the linear and kernel probes carry the
# comparison. `evaluate` on a single model runs all probes.
FAST_PROBES = {"regression": ("ridge", "svr"), "classification": ("logistic_regression", "svc")}


def run_name(objective: str, batch_size: int) -> str:
    return f"{objective}-bs{batch_size}"


def train_one(output_dir: Path, *, recipe: str, objective: str, batch_size: int, max_steps: int,
              extra_args: Sequence[str]) -> Path:
    """Train one model in a child process; returns its final model folder."""
    command = [sys.executable, "-m", "cmim_hf.training", "--recipe", recipe, "--objective", objective,
               "--per_device_train_batch_size", str(batch_size), "--max_steps", str(max_steps),
               "--output_dir", str(output_dir), "--overwrite_output_dir", "true", *extra_args]
    subprocess.run(command, check=True)
    final = output_dir / "final"
    if not (final / "config.json").exists():
        raise RuntimeError(f"training {output_dir.name} ended without a final model in {final}")
    return final


def headline_rows(results: dict[str, dict]) -> list[dict]:
    """One row per (objective, batch size, features): each task's headline metric of the inner-CV-selected
    probe, plus reconstruction. `results` maps run names to `evaluate_model` results."""
    rows = []
    for name, result in results.items():
        objective, batch = name.rsplit("-bs", 1)
        for features in ("latent", "decoder", "informative"):
            row = {"objective": objective, "batch_size": int(batch), "features": features}
            for task, (metric, _) in HEADLINE.items():
                row[task] = result["tasks"].get(task, {}).get(features, {}).get("best", {}).get(metric)
            moses = result.get("reconstruction", {}).get("moses_test", {})
            row["token_accuracy"] = moses.get("token_accuracy")
            row["exact_reconstruction"] = moses.get("exact")
            row["prior_validity"] = result.get("generation", {}).get("prior", {}).get("validity")
            rows.append(row)
    return rows


def comparison_markdown(rows: list[dict], baselines: dict, settings: dict) -> str:
    def cell(value):
        return "-" if value is None else f"{value:.3f}"

    lines = ["# cMIM comparison", "",
             f"Recipe `{settings['recipe']}`, {settings['max_steps']} steps per model, batch sizes "
             f"{settings['batch_sizes']}; probes {settings['probes']}, chosen by inner CV. "
             f"Wall time {settings.get('hours', float('nan')):.2f} h.", "",
             "FreeSolv and solubility: test RMSE (lower is better); solubility class: macro ROC-AUC (higher is "
             "better). Reconstruction: MOSES test, z = mu, greedy.", "",
             "| objective | batch | features | FreeSolv | solubility | class AUC | token acc. | exact recon. | "
             "prior validity |", "|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["features"], r["objective"], r["batch_size"])):
        lines.append(f"| {row['objective']} | {row['batch_size']} | {row['features']} | {cell(row['freesolv'])} | "
                     f"{cell(row['solubility'])} | {cell(row['solubility_class'])} | {cell(row['token_accuracy'])} | "
                     f"{cell(row['exact_reconstruction'])} | {cell(row['prior_validity'])} |")
    for features, values in baselines.items():
        lines.append(f"| baseline | - | {features} | {cell(values.get('freesolv'))} | {cell(values.get('solubility'))} "
                     f"| {cell(values.get('solubility_class'))} | - | - | - |")
    return "\n".join(lines) + "\n"


def run_compare(output_dir: str | Path = "results/compare", *, recipe: str = "tiny-cpu",
                objectives: Sequence[str] = OBJECTIVES, batch_sizes: Sequence[int] = BATCH_SIZES,
                max_steps: int = 600, extra_train_args: Sequence[str] = (), reconstruction_samples: int = 500,
                generation_samples: int = 200, tasks: Sequence[str] | None = None) -> dict:
    """Train and evaluate every (objective, batch size); write compare.json, compare.md and plots."""
    from cmim_hf.evaluation import TASKS, plot_batch_size_robustness, write_json
    from cmim_hf.evaluation.model_eval import evaluate_model

    tasks = tuple(tasks or TASKS)
    started = time.perf_counter()
    output_dir = Path(output_dir)
    results: dict[str, dict] = {}
    baselines: dict[str, dict] = {}
    for batch_size in batch_sizes:
        for objective in objectives:
            name = run_name(objective, batch_size)
            eval_dir = output_dir / name / "eval"
            if (eval_dir / "results.json").exists():
                results[name] = json.loads((eval_dir / "results.json").read_text())
                continue
            final = train_one(output_dir / name / "train", recipe=recipe, objective=objective,
                              batch_size=batch_size, max_steps=max_steps, extra_args=extra_train_args)
            results[name] = evaluate_model(
                final, eval_dir, tasks=tasks, probes=FAST_PROBES,
                baselines=() if baselines else ("ecfp4", "rdkit2d"),
                reconstruction_samples=reconstruction_samples, generation_samples=generation_samples)
            if not baselines:
                baselines = _baseline_headlines(results[name])
    if not baselines and results:
        baselines = _baseline_headlines(next(iter(results.values())))

    settings = {"recipe": recipe, "max_steps": max_steps, "batch_sizes": list(batch_sizes),
                "objectives": list(objectives), "probes": FAST_PROBES, "tasks": list(tasks),
                "hours": (time.perf_counter() - started) / 3600}
    rows = headline_rows(results)
    comparison = {"settings": settings, "rows": rows, "baselines": baselines}
    write_json(comparison, output_dir / "compare.json")
    (output_dir / "compare.md").write_text(comparison_markdown(rows, baselines, settings))
    for task, (metric, _) in HEADLINE.items():
        if task not in tasks:
            continue
        curves = {f"{r['objective']} ({r['features']})": {} for r in rows if r["features"] != "decoder"}
        for r in rows:
            if r["features"] != "decoder" and r[task] is not None:
                curves[f"{r['objective']} ({r['features']})"][r["batch_size"]] = r[task]
        plot_batch_size_robustness(curves, output_dir / f"batch_size_{task}.png", metric=metric,
                                   title=f"{task}: {metric} vs batch size")
    return comparison


def _baseline_headlines(result: dict) -> dict:
    out = {}
    for task, (metric, _) in HEADLINE.items():
        for features in ("ecfp4", "rdkit2d"):
            value = result["tasks"].get(task, {}).get(features, {}).get("best", {}).get(metric)
            if value is not None:
                out.setdefault(features, {})[task] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cmim-hf compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="results/compare")
    parser.add_argument("--recipe", default="tiny-cpu", help="training recipe shared by every model")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=list(BATCH_SIZES))
    parser.add_argument("--max_steps", type=int, default=600, help="the same step budget for every model")
    parser.add_argument("--reconstruction_samples", type=int, default=500)
    parser.add_argument("--generation_samples", type=int, default=200)
    parser.add_argument("--tasks", nargs="+", default=None, help="downstream tasks (default: all three)")
    args, extra = parser.parse_known_args(argv)
    comparison = run_compare(args.output_dir, recipe=args.recipe, objectives=args.objectives,
                             batch_sizes=args.batch_sizes, max_steps=args.max_steps, extra_train_args=extra,
                             reconstruction_samples=args.reconstruction_samples,
                             generation_samples=args.generation_samples, tasks=args.tasks)
    print(f"compared {len(comparison['rows']) // 3} models in {comparison['settings']['hours']:.2f} h; "
          f"table: {Path(args.output_dir) / 'compare.md'}")
    return 0
