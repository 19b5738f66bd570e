"""`cmim-hf compare`: the cMIM paper's experiment at any scale, with several training seeds.

Trains every objective (AE, VAE, MIM, cMIM, InfoNCE) with the same recipe, architecture and step budget at
each batch size, with N training seeds each, evaluates each model with `cmim_hf.evaluation.evaluate_model`,
and writes a comparison table (mean and standard deviation over seeds of the downstream metrics of each
embedding kind, and of reconstruction), batch-size robustness plots with error bars, and verdicts on the
paper's four claims from stated rules that say "inconclusive" where a difference is within the seed spread.

Seed s is the training seed: it changes the model initialisation, the data order and the training subset.
The evaluation's own randomness (probe splits, reconstruction molecules, latent noise) is fixed, so the
models trained with the same seed are paired across objectives and batch sizes.

Each training runs as its own `python -m cmim_hf.training` process (fresh Accelerate state, memory given
back), and a model whose evaluation is already on disk (`<objective>-bs<N>/seed-<s>/eval/results.json`) is
not trained or evaluated again, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cmim_hf.evaluation.names import BASELINE_NAMES
from cmim_hf.modeling.names import EMBEDDING_KINDS, OBJECTIVES  # read without importing torch: --help stays fast
from cmim_hf.saving import atomic_write
from cmim_hf.checks import check_number

from .report import (FAST_PROBES, HEADLINE, TIME_FILE, baseline_headlines, interval_text, mean_sd_cell, seed_dir,
                     task_headlines)
from .statistics import (COMPARISON_RULE, INCONCLUSIVE, LOST, NON_INFERIORITY_RULE, VERDICT_RULE, WON,
                         batch_size_effect, claim_verdict, outcome_counts, paired_comparison, seed_summaries,
                         sensitivity_comparison)


# The paper's feature sets: its latent, the decoder's pooled states and the informative embedding. The encoder
# mean-pool a plain encoder-decoder offers is the subject of `cmim-hf compare-backbones`.
COMPARED_KINDS = tuple(kind for kind in EMBEDDING_KINDS if kind != "encoder")

BATCH_SIZES = (16, 64, 256)
# 3 seeds: the fewest whose paired 95% interval is usable (Student t = 4.30 at 2 degrees of freedom, 12.7 at 1).
DEFAULT_SEEDS = 3
METRICS = (*HEADLINE, "token_accuracy", "exact_reconstruction", "prior_validity")
def run_name(objective: str, batch_size: int) -> str:
    return f"{objective}-bs{batch_size}"


def model_dir(output_dir: str | Path, objective: str, batch_size: int, seed: int) -> Path:
    """`<output_dir>/<objective>-bs<N>/seed-<s>`: the model's `train/` and `eval/` folders."""
    return seed_dir(output_dir, run_name(objective, batch_size), seed)


def training_seeds(recipe: str, num_seeds: int = DEFAULT_SEEDS) -> list[int]:
    """The recipe's training seed and the `num_seeds - 1` integers after it."""
    from cmim_hf.training.arguments import CMIMTrainingArguments, load_recipe

    if num_seeds < 1:
        raise ValueError(f"the number of seeds must be >= 1, got {num_seeds}")
    first = int(load_recipe(recipe)["training"].get("seed", CMIMTrainingArguments.seed))
    return [first + i for i in range(num_seeds)]


def train_one(output_dir: Path, *, recipe: str, objective: str, batch_size: int, max_steps: int, seed: int,
              extra_args: Sequence[str]) -> Path:
    """Train one model in a child process; returns its final model folder."""
    command = [sys.executable, "-m", "cmim_hf.training", "--recipe", recipe, "--objective", objective,
               "--per_device_train_batch_size", str(batch_size), "--max_steps", str(max_steps),
               "--seed", str(seed), "--output_dir", str(output_dir), "--overwrite_output_dir", "true", *extra_args]
    status = subprocess.run(command).returncode
    if status != 0:
        raise RuntimeError(f"training {output_dir} failed (exit status {status}); its log is {output_dir / 'train.log'}"
                           " and the lines above")
    final = output_dir / "final"
    if not (final / "config.json").exists():
        raise RuntimeError(f"training {output_dir} ended without a final model in {final}")
    return final


# ------------------------------------------------------------------------------------------------
# Tables: one row per model and embedding kind, then mean and spread over seeds
# ------------------------------------------------------------------------------------------------
def headline_rows(results: dict[tuple[str, int, int], dict]) -> list[dict]:
    """One row per (objective, batch size, seed, features): each task's headline metric of the inner-CV-selected
    probe, plus reconstruction. `results` maps (objective, batch size, seed) to `evaluate_model` results."""
    rows = []
    for (objective, batch_size, seed), result in results.items():
        moses = result.get("reconstruction", {}).get("moses_test", {})
        for features in COMPARED_KINDS:
            row = {"objective": objective, "batch_size": batch_size, "seed": seed, "features": features,
                   **task_headlines(result, features)}
            row["token_accuracy"] = moses.get("token_accuracy")
            row["exact_reconstruction"] = moses.get("exact")
            row["prior_validity"] = result.get("generation", {}).get("prior", {}).get("validity")
            rows.append(row)
    return rows


def summary_rows(rows: list[dict]) -> list[dict]:
    """One row per (objective, batch size, features): `metric` = mean over seeds, `metric_std` = sample
    standard deviation over seeds (None with one seed), `seeds` = the seeds averaged."""
    return seed_summaries(rows, ("objective", "batch_size", "features"), METRICS)


def comparison_markdown(summaries: list[dict], baselines: dict, settings: dict) -> str:
    seeds = settings.get("seeds", [])
    lines = ["# cMIM comparison", "",
             f"Recipe `{settings['recipe']}`, {settings['max_steps']} steps per model, batch sizes "
             f"{settings['batch_sizes']}, training seeds {seeds}; probes {settings['probes']}, chosen by inner CV. "
             + _wall_time(settings), ""]
    if settings.get("command"):
        lines += [f"Command: `{settings['command']}`", ""]
    lines += ["FreeSolv and solubility: test RMSE (lower is better); solubility class: macro ROC-AUC (higher is "
              "better). Reconstruction: MOSES test, z = mu, greedy. Each cell: mean ± sample standard deviation "
              f"over the {len(seeds)} training seeds (the mean alone where a cell has one seed).", "",
              "| objective | batch | features | FreeSolv | solubility | class AUC | token acc. | exact recon. | "
              "prior validity |", "|---|---|---|---|---|---|---|---|---|"]
    for summary in sorted(summaries, key=lambda r: (r["features"], r["objective"], r["batch_size"])):
        cells = " | ".join(mean_sd_cell(summary, metric) for metric in METRICS)
        lines.append(f"| {summary['objective']} | {summary['batch_size']} | {summary['features']} | {cells} |")
    for features, values in baselines.items():
        cells = " | ".join(mean_sd_cell(values, task) for task in HEADLINE)
        lines.append(f"| baseline | - | {features} | {cells} | - | - | - |")
    return "\n".join(lines) + "\n"


def _wall_time(settings: dict) -> str:
    reused, timed = settings.get("reused_models", []), settings.get("model_seconds", {})
    text = f"Wall time {settings['hours']:.2f} h"
    text += f" for this invocation, which found {len(reused)} of the models evaluated on disk." if reused else "."
    if timed:
        text += (f" Training + evaluation summed over the {len(timed)} models that recorded their time "
                 f"({TIME_FILE}): {sum(timed.values()) / 3600:.2f} h.")
    return text


# ------------------------------------------------------------------------------------------------
# The paper's four claims, each judged from per-seed rows by a stated rule
# ------------------------------------------------------------------------------------------------
NON_INFERIORITY_MARGIN = 0.02  # claim 4: token accuracy within 2 points of MIM's counts as comparable


def _seed_values(rows: list[dict], objective: str, features: str, batch_size: int, key: str) -> dict[int, float]:
    return {r["seed"]: r[key] for r in rows if (r["objective"], r["features"], r["batch_size"]) ==
            (objective, features, batch_size) and r.get(key) is not None}


def _paired(rows: list[dict], a: tuple[str, str], b: tuple[str, str], batch_size: int, key: str,
            lower_is_better: bool, margin: float = 0.0) -> dict | None:
    """`paired_comparison` of (objective, features) `a` with `b` on the seeds both have; None if there are none."""
    a_values, b_values = (_seed_values(rows, *side, batch_size, key) for side in (a, b))
    seeds = sorted(a_values.keys() & b_values.keys())
    if not seeds:
        return None
    result = paired_comparison([a_values[s] for s in seeds], [b_values[s] for s in seeds],
                               lower_is_better=lower_is_better, margin=margin)
    return {"metric": key, "batch_size": batch_size, **result}


def _downstream_comparisons(rows: list[dict], a: tuple[str, str], b: tuple[str, str]) -> list[dict]:
    """A against B on every task's headline metric at every batch size both have."""
    comparisons = []
    for batch_size in sorted({r["batch_size"] for r in rows}):
        for task, (_, lower_is_better) in HEADLINE.items():
            comparison = _paired(rows, a, b, batch_size, task, lower_is_better)
            if comparison is not None:
                comparisons.append(comparison)
    return comparisons


def _count_text(comparisons: list[dict]) -> str:
    counts = outcome_counts(comparisons)
    return f"{counts[WON]} won, {counts[LOST]} lost, {counts[INCONCLUSIVE]} inconclusive of {len(comparisons)}"


def _claim(claim: str, rule: str, groups: dict[str, list[dict]], evidence: str = "") -> dict:
    """A claim's entry: verdict from its groups of comparisons, their counts, and every comparison."""
    return {"claim": claim, "rule": rule,
            "verdict": claim_verdict([[c["outcome"] for c in group] for group in groups.values()]),
            "counts": {name: outcome_counts(group) for name, group in groups.items()},
            "evidence": "; ".join(f"{name}: {_count_text(group)}" for name, group in groups.items())
                        + (f" ({evidence})" if evidence else ""),
            "comparisons": [{"group": name, **c} for name, group in groups.items() for c in group]}


def paper_claims(rows: list[dict]) -> list[dict]:
    """Judge the cMIM paper's claims from per-seed `headline_rows`. Each entry: claim, rule, verdict (held,
    partly held, did not hold, inconclusive, not tested: a model it needs is missing), counts of won / lost /
    inconclusive comparisons per group, evidence (a sentence) and every comparison behind it."""
    informative = {name: _downstream_comparisons(rows, ("cmim", "informative"), (other, "informative"))
                   for name, other in (("vs MIM", "mim"), ("vs InfoNCE", "infonce"))}
    latent = [_downstream_comparisons(rows, ("cmim", "latent"), (other, "latent")) for other in ("mim", "infonce")]
    claims = [_claim(
        "1. cMIM embeddings beat MIM and InfoNCE embeddings on downstream regression and classification.",
        "cMIM's informative embedding against MIM's and against InfoNCE's, each task's headline metric at each "
        "batch size: one comparison each, paired over seeds; two groups (vs MIM, vs InfoNCE).",
        informative, evidence=f"latent against latent, not judged: vs MIM {_count_text(latent[0])}; vs InfoNCE "
                              f"{_count_text(latent[1])}")]

    sensitivity = []
    for task in HEADLINE:
        for features in ("informative", "latent"):
            cmim, infonce = (batch_size_effect(rows, objective, features, task) for objective in ("cmim", "infonce"))
            if cmim is None or infonce is None:
                continue
            outcome = sensitivity_comparison(cmim, infonce)
            sensitivity.append({"metric": task, "features": features, "outcome": outcome,
                                "cmim_range": cmim["range"], "cmim_p": cmim["p"],
                                "infonce_range": infonce["range"], "infonce_p": infonce["p"]})
    claims.append(_claim(
        "2. cMIM is much less sensitive to batch size than InfoNCE.",
        "for each task and features (informative, latent): the range over batch sizes of the seed means, and a "
        "one-way ANOVA over batch sizes with seeds as replicates. Won when InfoNCE's metric depends on the batch "
        "size (p < 0.05) and cMIM's range is under half of InfoNCE's; lost when the same holds with the two "
        "swapped; inconclusive otherwise.",
        {"cMIM vs InfoNCE": sensitivity}, evidence="the ranges and p-values of each are listed below"))

    claims.append(_claim(
        "3. Informative embeddings beat the plain latent, for MIM and cMIM alike, without extra training.",
        "the informative embedding against the latent (mu) of the same models, each task's headline metric at "
        "each batch size, paired over seeds; two groups (MIM, cMIM).",
        {name: _downstream_comparisons(rows, (objective, "informative"), (objective, "latent"))
         for name, objective in (("MIM", "mim"), ("cMIM", "cmim"))}))

    reconstruction = [c for c in (_paired(rows, ("cmim", "informative"), ("mim", "informative"), batch_size,
                                          "token_accuracy", lower_is_better=False, margin=NON_INFERIORITY_MARGIN)
                                  for batch_size in sorted({r["batch_size"] for r in rows})) if c is not None]
    exact = "; ".join(
        f"bs {c['batch_size']}: token acc. {c['advantage']:+.3f}, exact "
        f"{_mean(rows, 'cmim', c['batch_size'], 'exact_reconstruction'):.3f} vs "
        f"{_mean(rows, 'mim', c['batch_size'], 'exact_reconstruction'):.3f}" for c in reconstruction)
    claims.append(_claim(
        "4. cMIM keeps reconstruction quality comparable to MIM.",
        f"cMIM's MOSES token accuracy against MIM's at each batch size, paired over seeds, as non-inferiority "
        f"with a margin of {NON_INFERIORITY_MARGIN:.2f}: won when the 95% interval of cMIM's advantage lies above "
        f"-{NON_INFERIORITY_MARGIN:.2f}, lost when it lies below.",
        {"cMIM vs MIM": reconstruction}, evidence=f"cMIM - MIM, mean over seeds: {exact}" if exact else ""))
    return claims


def _mean(rows: list[dict], objective: str, batch_size: int, key: str) -> float:
    values = _seed_values(rows, objective, "informative", batch_size, key).values()
    return float(np.mean(list(values))) if values else math.nan


def claims_markdown(claims: list[dict]) -> str:
    lines = ["## The paper's claims at this scale", "",
             f"How a comparison is judged: {COMPARISON_RULE} {NON_INFERIORITY_RULE}", "",
             f"How a claim is judged: {VERDICT_RULE}", "",
             "| claim | verdict | won / lost / inconclusive | evidence | rule |", "|---|---|---|---|---|"]
    for claim in claims:
        counts = "; ".join(f"{name}: {c[WON]} / {c[LOST]} / {c[INCONCLUSIVE]}" for name, c in claim["counts"].items())
        lines.append(f"| {claim['claim']} | **{claim['verdict']}** | {counts} | {claim['evidence']} | "
                     f"{claim['rule']} |")
    lines += ["", "### Every comparison", "",
              "Claims 1 and 4: advantage of cMIM, claim 3: of the informative embedding over the latent (positive = "
              "better), mean over seeds [95% t-interval]. Claim 2: range of the seed means over batch sizes and "
              "the ANOVA p-value, cMIM vs InfoNCE.", "",
              "| claim | group | metric | batch / features | advantage or ranges | outcome |", "|---|---|---|---|---|---|"]
    for claim in claims:
        number = claim["claim"].split(".", 1)[0]
        for c in claim["comparisons"]:
            if "cmim_range" in c:
                where = c["features"]
                value = (f"{c['cmim_range']:.3f} (p {c['cmim_p']:.2g}) vs {c['infonce_range']:.3f} "
                         f"(p {c['infonce_p']:.2g})")
            else:
                where, value = str(c["batch_size"]), interval_text(c)
            lines.append(f"| {number} | {c['group']} | {c['metric']} | {where} | {value} | {c['outcome']} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
def run_compare(output_dir: str | Path = "results/compare", *, recipe: str = "tiny-cpu",
                objectives: Sequence[str] = OBJECTIVES, batch_sizes: Sequence[int] = BATCH_SIZES,
                seeds: Sequence[int] | None = None, max_steps: int = 600, extra_train_args: Sequence[str] = (),
                reconstruction_samples: int = 500, generation_samples: int = 200,
                tasks: Sequence[str] | None = None, command: str | None = None) -> dict:
    """Train and evaluate every (objective, batch size, seed); write compare.json, compare.md and plots.

    `seeds` are training seeds (default: `training_seeds(recipe)`, the recipe's seed and the next two).
    Models go through the seeds in the outer loop, so an interrupted run leaves whole seeds done.
    """
    from cmim_hf.evaluation import TASKS, plot_batch_size_robustness, write_json
    from cmim_hf.evaluation.model_eval import evaluate_model

    tasks = tuple(tasks or TASKS)
    seeds = list(seeds) if seeds is not None else training_seeds(recipe)
    if unknown := sorted(set(tasks) - set(TASKS)):  # found now, not after the first model has trained
        raise ValueError(f"unknown task(s) {unknown}; the tasks are {', '.join(TASKS)}")
    for batch_size in batch_sizes:
        check_number("batch size", batch_size, integer=True, minimum=1)
    check_number("max_steps", max_steps, integer=True, minimum=1)
    started = time.perf_counter()
    output_dir = Path(output_dir)
    results: dict[tuple[str, int, int], dict] = {}
    baselines: dict[str, dict] = {}
    reused: list[str] = []  # evaluated before this invocation
    model_seconds: dict[str, float] = {}  # training + evaluation of each model, from its TIME_FILE
    jobs = [(objective, batch_size, seed) for seed in seeds for batch_size in batch_sizes for objective in objectives]
    for index, (objective, batch_size, seed) in enumerate(jobs, 1):
        folder = model_dir(output_dir, objective, batch_size, seed)
        name = f"{run_name(objective, batch_size)}/seed-{seed}"
        if (folder / "eval" / "results.json").exists():
            results[(objective, batch_size, seed)] = json.loads((folder / "eval" / "results.json").read_text())
            reused.append(name)
            if (folder / TIME_FILE).exists():
                model_seconds[name] = json.loads((folder / TIME_FILE).read_text())["seconds"]
        else:
            model_started = time.perf_counter()
            final = train_one(folder / "train", recipe=recipe, objective=objective, batch_size=batch_size,
                              max_steps=max_steps, seed=seed, extra_args=extra_train_args)
            results[(objective, batch_size, seed)] = evaluate_model(
                final, folder / "eval", kinds=COMPARED_KINDS, tasks=tasks, probes=FAST_PROBES,
                baselines=() if baselines else BASELINE_NAMES,
                reconstruction_samples=reconstruction_samples, generation_samples=generation_samples)
            model_seconds[name] = time.perf_counter() - model_started
            write_json({"seconds": model_seconds[name]}, folder / TIME_FILE)
            print(f"cmim-hf compare: [{index}/{len(jobs)}] {name} trained and evaluated in "
                  f"{model_seconds[name] / 60:.1f} min", file=sys.stderr, flush=True)
        # The baselines do not depend on the model: computed once, with the first model that has none on disk.
        baselines = baselines or baseline_headlines(results[(objective, batch_size, seed)])

    settings = {"recipe": recipe, "max_steps": max_steps, "batch_sizes": list(batch_sizes),
                "objectives": list(objectives), "seeds": seeds, "probes": FAST_PROBES, "tasks": list(tasks),
                "command": command, "hours": (time.perf_counter() - started) / 3600, "reused_models": reused,
                "model_seconds": model_seconds}
    rows = headline_rows(results)
    summaries = summary_rows(rows)
    claims = paper_claims(rows)
    comparison = {"settings": settings, "rows": rows, "summary": summaries, "baselines": baselines,
                  "claims": claims}
    write_json(comparison, output_dir / "compare.json")
    atomic_write(output_dir / "compare.md", comparison_markdown(summaries, baselines, settings) + "\n"
                 + claims_markdown(claims))
    for task, (metric, _) in HEADLINE.items():
        if task not in tasks:
            continue
        curves: dict[str, dict[int, float]] = defaultdict(dict)
        errors: dict[str, dict[int, float]] = defaultdict(dict)
        for summary in summaries:
            if summary["features"] != "decoder" and summary[task] is not None:
                label = f"{summary['objective']} ({summary['features']})"
                curves[label][summary["batch_size"]] = summary[task]
                errors[label][summary["batch_size"]] = summary[f"{task}_std"] or 0.0
        plot_batch_size_robustness(curves, output_dir / f"batch_size_{task}.png", metric=metric, errors=errors,
                                   title=f"{task}: {metric} vs batch size (mean ± sd over {len(seeds)} seeds)")
    return comparison


