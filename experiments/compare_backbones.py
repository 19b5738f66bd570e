"""`cmim-hf compare-backbones`: do informative embeddings apply beyond MIM?

The cMIM paper presents informative embeddings (the decoder, teacher-forced on the input, mean-pooled) as a
training-free technique for any encoder-decoder. This experiment trains, with the same recipe and seeds:
- `bart-plain` and `t5-plain`: transformers' BART and T5 as ordinary auto-encoders (no latent head,
  token-mean cross-entropy), of the recipe's geometry;
- `bart-cmim`: the same BART with cMIM heads (the latent head and objective of this package);
then probes each with the evaluation protocol of `cmim-hf evaluate` on its embedding kinds: the encoder
mean-pool (what users of a plain encoder-decoder take today), the decoder mean-pool, and the informative
embedding ([encoder ; decoder] for the plain models, [mu ; decoder] for cMIM), plus the latent mu for cMIM.

The verdict per model: "informative beats the encoder mean-pool", judged on each task by the paired rule of
`cmim-hf compare` (COMPARISON_RULE: a paired 95% t-interval over the seeds) and over the tasks by its
VERDICT_RULE. Models whose evaluation is on disk are not trained again, so the run resumes where it stopped.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cmim_hf.evaluation.names import BASELINE_NAMES
from cmim_hf.saving import atomic_write

from .compare import train_one, training_seeds
from .report import (FAST_PROBES, HEADLINE, TIME_FILE, baseline_headlines, interval_text, mean_sd_cell, seed_dir,
                     task_headlines)
from .statistics import COMPARISON_RULE, VERDICT_RULE, group_verdict, paired_comparison, seed_summaries

# name -> (backbone, objective)
MODELS = {"bart-plain": ("bart", "plain"), "t5-plain": ("t5", "plain"), "bart-cmim": ("bart", "cmim")}
KINDS = ("encoder", "decoder", "informative", "latent")  # the latent only exists for cMIM models
RECONSTRUCTION = ("token_accuracy", "exact")


def headline_rows(results: dict[tuple[str, int], dict]) -> list[dict]:
    """One row per (model, seed, kind): each task's headline metric of the inner-CV-selected probe, and the
    model's MOSES reconstruction."""
    rows = []
    for (name, seed), result in results.items():
        moses = result.get("reconstruction", {}).get("moses_test", {})
        for kind in KINDS:
            if not any(kind in result["tasks"].get(task, {}) for task in HEADLINE):
                continue
            row = {"model": name, "seed": seed, "kind": kind, **task_headlines(result, kind)}
            row.update({metric: moses.get(metric) for metric in RECONSTRUCTION})
            rows.append(row)
    return rows


def summary_rows(rows: list[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds of every metric, per (model, kind)."""
    return seed_summaries(rows, ("model", "kind"), (*HEADLINE, *RECONSTRUCTION))


def verdicts(rows: list[dict]) -> list[dict]:
    """Per model: informative vs encoder on each task, paired over the seeds, and the verdict over tasks."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        comparisons = []
        for task, (metric, lower_is_better) in HEADLINE.items():
            per_seed = {}
            for row in rows:
                if row["model"] == name and row[task] is not None:
                    per_seed.setdefault(row["seed"], {})[row["kind"]] = row[task]
            seeds = sorted(s for s, kinds in per_seed.items() if {"informative", "encoder"} <= kinds.keys())
            if not seeds:
                continue
            comparison = paired_comparison([per_seed[s]["informative"] for s in seeds],
                                           [per_seed[s]["encoder"] for s in seeds], lower_is_better=lower_is_better)
            comparisons.append({"task": task, "metric": metric, **comparison})
        out.append({"model": name, "claim": "informative beats the encoder mean-pool",
                    "verdict": group_verdict([c["outcome"] for c in comparisons]), "comparisons": comparisons})
    return out


def report_markdown(summaries: list[dict], judged: list[dict], baselines: dict, settings: dict) -> str:
    by_cell = {(s["model"], s["kind"]): s for s in summaries}
    lines = ["# Informative embeddings beyond MIM", "",
             f"Recipe `{settings['recipe']}` ({settings['max_steps']} steps of {settings['batch_size']}), seeds "
             f"{settings['seeds']}, probes {settings['probes']} chosen by inner CV, mean ± sd over seeds. "
             f"Wall time {settings['total_hours']:.2f} h summed over the models. Command: `{settings['command']}`.", "",
             "FreeSolv and solubility: RMSE (lower is better); solubility class: macro ROC-AUC (higher is better). "
             "Reconstruction: MOSES test, greedy (z = mu for cMIM).", "",
             "| model | embedding | FreeSolv | solubility | class AUC | token acc. | exact recon. |",
             "|---|---|---|---|---|---|---|"]
    for name in settings["models"]:
        for kind in KINDS:
            summary = by_cell.get((name, kind))
            if summary is not None:
                lines.append(f"| {name} | {kind} | {mean_sd_cell(summary, 'freesolv')} | {mean_sd_cell(summary, 'solubility')} | "
                             f"{mean_sd_cell(summary, 'solubility_class')} | {mean_sd_cell(summary, 'token_accuracy')} | "
                             f"{mean_sd_cell(summary, 'exact')} |")
    for features, values in baselines.items():
        scores = " | ".join(mean_sd_cell(values, task) for task in HEADLINE)
        lines.append(f"| baseline | {features} | {scores} | - | - |")
    lines += ["", "## Does the informative embedding beat the encoder mean-pool?", "", COMPARISON_RULE, "",
              VERDICT_RULE, "", "| model | verdict | FreeSolv | solubility | class AUC |", "|---|---|---|---|---|"]
    for judged_model in judged:
        cells = {c["task"]: c for c in judged_model["comparisons"]}

        def text(task):
            c = cells.get(task)
            return "-" if c is None else f"{c['outcome']}: {interval_text(c)}"

        lines.append(f"| {judged_model['model']} | **{judged_model['verdict']}** | {text('freesolv')} | "
                     f"{text('solubility')} | {text('solubility_class')} |")
    lines += ["", "Each cell: the outcome and the mean advantage of the informative embedding over the encoder "
              "mean-pool (positive = better) with its 95% t-interval over the paired seeds."]
    return "\n".join(lines) + "\n"


def run_compare_backbones(output_dir: str | Path = "results/backbones", *, recipe: str = "tiny-cpu",
                          models: Sequence[str] = tuple(MODELS), seeds: Sequence[int] | None = None,
                          max_steps: int | None = None, reconstruction_samples: int = 500,
                          tasks: Sequence[str] | None = None, command: str | None = None) -> dict:
    """Train and evaluate every (model, seed); write backbones.json, backbones.md and backbones.png."""
    from cmim_hf.evaluation import TASKS, write_json
    from cmim_hf.evaluation.model_eval import evaluate_model
    from cmim_hf.evaluation.plots import plot_kind_comparison

    from cmim_hf.training.arguments import load_recipe

    training = load_recipe(recipe)["training"]
    max_steps = max_steps or int(training["max_steps"])
    batch_size = int(training["per_device_train_batch_size"])
    tasks = tuple(tasks or TASKS)
    seeds = list(seeds) if seeds is not None else training_seeds(recipe)
    output_dir = Path(output_dir)
    results, baselines, model_seconds = {}, {}, {}
    jobs = [(name, seed) for seed in seeds for name in models]
    for index, (name, seed) in enumerate(jobs, 1):
        folder = seed_dir(output_dir, name, seed)
        if not (folder / "eval" / "results.json").exists():
            started = time.perf_counter()
            backbone, objective = MODELS[name]
            final = train_one(folder / "train", recipe=recipe, objective=objective, batch_size=batch_size,
                              max_steps=max_steps, seed=seed, extra_args=["--backbone", backbone])
            evaluate_model(final, folder / "eval", tasks=tasks, probes=FAST_PROBES,
                           baselines=() if baselines else BASELINE_NAMES,
                           reconstruction_samples=reconstruction_samples, generation_samples=0)
            write_json({"seconds": time.perf_counter() - started}, folder / TIME_FILE)
            print(f"cmim-hf compare-backbones: [{index}/{len(jobs)}] {name}/seed-{seed} trained and evaluated in "
                  f"{(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr, flush=True)
        results[(name, seed)] = json.loads((folder / "eval" / "results.json").read_text())
        if (folder / TIME_FILE).exists():  # a kill between the evaluation and its time: rerun, not crash
            model_seconds[f"{name}/seed-{seed}"] = json.loads((folder / TIME_FILE).read_text())["seconds"]
        baselines = baselines or baseline_headlines(results[(name, seed)])

    settings = {"recipe": recipe, "max_steps": max_steps, "batch_size": batch_size, "models": list(models),
                "seeds": seeds, "probes": FAST_PROBES, "tasks": list(tasks), "command": command,
                "model_seconds": model_seconds, "total_hours": sum(model_seconds.values()) / 3600}
    rows = headline_rows(results)
    summaries = summary_rows(rows)
    judged = verdicts(rows)
    report = {"settings": settings, "rows": rows, "summary": summaries, "baselines": baselines, "verdicts": judged}
    write_json(report, output_dir / "backbones.json")
    atomic_write(output_dir / "backbones.md", report_markdown(summaries, judged, baselines, settings))
    plot_kind_comparison(summaries, output_dir / "backbones.png", tasks={t: HEADLINE[t][0] for t in tasks},
                         title=f"Embedding kinds per model (mean ± sd over {len(seeds)} seeds)")
    return report
