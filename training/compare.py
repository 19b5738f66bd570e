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

from cmim_hf.evaluation.names import BASELINE_NAMES
from cmim_hf.modeling import EMBEDDING_KINDS, OBJECTIVES

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
        for features in EMBEDDING_KINDS:
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
             f"Wall time {settings.get('total_hours', settings.get('hours', float('nan'))):.2f} h"
             + (f" over all invocations ({len(settings['reused_models'])} models were trained and evaluated by an "
                f"earlier one; this one took {settings['hours']:.2f} h)." if settings.get("reused_models") else "."),
             "",
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


# ------------------------------------------------------------------------------------------------
# The paper's four claims (shared/reference/cmim-method.md), each judged from the table by a stated rule
# ------------------------------------------------------------------------------------------------
HELD, PARTLY, NOT_HELD, NOT_TESTED = "held", "partly held", "did not hold", "not tested"
_MAJORITY = 2 / 3  # "held" = the claim wins at least two thirds of its comparisons


def _verdict(fractions: Sequence[float]) -> str:
    if not fractions:
        return NOT_TESTED
    if min(fractions) >= _MAJORITY:
        return HELD
    return NOT_HELD if min(fractions) < 0.5 else PARTLY


def _better(a: float, b: float, task: str) -> bool:
    return a < b if HEADLINE[task][1] else a > b


def _wins(rows: list[dict], a: tuple[str, str], b: tuple[str, str]) -> tuple[int, int]:
    """How often (objective, features) `a` scores better than `b`, over every task and batch size both have."""
    table = {(r["objective"], r["features"], r["batch_size"]): r for r in rows}
    won = total = 0
    for (objective, features, batch), row in table.items():
        if (objective, features) != a or (b[0], b[1], batch) not in table:
            continue
        other = table[(b[0], b[1], batch)]
        for task in HEADLINE:
            if row.get(task) is not None and other.get(task) is not None:
                total += 1
                won += _better(row[task], other[task], task)
    return won, total


def _relative_spread(rows: list[dict], objective: str, features: str, task: str) -> float | None:
    """(max - min) / mean of a task's headline metric over batch sizes; None with fewer than 2 sizes."""
    values = [r[task] for r in rows if r["objective"] == objective and r["features"] == features
              and r.get(task) is not None]  # fmt: skip
    if len(values) < 2:
        return None
    return (max(values) - min(values)) / (sum(values) / len(values))


def paper_claims(rows: list[dict]) -> list[dict]:
    """Judge the cMIM paper's claims from `headline_rows`. Each entry: claim, rule, verdict (held, partly
    held, did not hold, not tested: a model it needs is missing) and the evidence (counts and values)."""
    claims = []

    def fraction(won: int, total: int) -> list[float]:
        return [won / total] if total else []

    vs_mim, vs_infonce = (_wins(rows, ("cmim", "informative"), (other, "informative")) for other in ("mim", "infonce"))
    # Shown, not judged: the same count for the plain latents (mu).
    latent_mim, latent_infonce = (_wins(rows, ("cmim", "latent"), (other, "latent")) for other in ("mim", "infonce"))
    claims.append({
        "claim": "1. cMIM embeddings beat MIM and InfoNCE embeddings on downstream regression and classification.",
        "rule": "cMIM's informative embedding scores better than MIM's and than InfoNCE's (same features) on at "
                "least 2/3 of the (task, batch size) pairs; under 1/2 against either: did not hold.",
        "verdict": _verdict(fraction(*vs_mim) + fraction(*vs_infonce)) if vs_mim[1] and vs_infonce[1] else NOT_TESTED,
        "evidence": f"better than MIM in {vs_mim[0]}/{vs_mim[1]}, than InfoNCE in {vs_infonce[0]}/{vs_infonce[1]} "
                    f"(latent vs latent, not judged: {latent_mim[0]}/{latent_mim[1]} and "
                    f"{latent_infonce[0]}/{latent_infonce[1]})",
    })

    pairs, details = [], []
    for task in HEADLINE:
        for features in ("informative", "latent"):
            cmim, infonce = (_relative_spread(rows, o, features, task) for o in ("cmim", "infonce"))
            if cmim is not None and infonce is not None:
                pairs.append(cmim < infonce)
                details.append(f"{task}/{features} {cmim:.1%} vs {infonce:.1%}")
    claims.append({
        "claim": "2. cMIM is much less sensitive to batch size than InfoNCE.",
        "rule": "relative spread (max - min) / mean of each headline metric over the batch sizes is smaller for "
                "cMIM than for InfoNCE in at least 2/3 of the (task, features) pairs, features informative and "
                "latent.",
        "verdict": _verdict([sum(pairs) / len(pairs)] if pairs else []),
        "evidence": f"cMIM smaller in {sum(pairs)}/{len(pairs)}: " + "; ".join(details),
    })

    informative = [_wins(rows, (o, "informative"), (o, "latent")) for o in ("mim", "cmim")]
    claims.append({
        "claim": "3. Informative embeddings beat the plain latent, for MIM and cMIM alike, without extra training.",
        "rule": "the informative embedding scores better than the latent (mu) of the same model on at least 2/3 "
                "of the (task, batch size) pairs, for MIM and for cMIM each.",
        "verdict": _verdict([w / t for w, t in informative if t]) if all(t for _, t in informative) else NOT_TESTED,
        "evidence": f"MIM {informative[0][0]}/{informative[0][1]}, cMIM {informative[1][0]}/{informative[1][1]}",
    })

    accuracy = {(r["objective"], r["batch_size"]): (r["token_accuracy"], r["exact_reconstruction"])
                for r in rows if r["features"] == "informative" and r.get("token_accuracy") is not None}
    batches = sorted(b for o, b in accuracy if o == "cmim" and ("mim", b) in accuracy)
    close = [accuracy[("cmim", b)][0] >= accuracy[("mim", b)][0] - 0.02 for b in batches]
    claims.append({
        "claim": "4. cMIM keeps reconstruction quality comparable to MIM.",
        "rule": "at every batch size, cMIM's MOSES token accuracy is at least MIM's minus 2 points.",
        "verdict": _verdict([1.0 if all(close) else 0.0]) if batches else NOT_TESTED,
        "evidence": "; ".join(f"bs {b}: token acc. {accuracy[('cmim', b)][0]:.3f} vs {accuracy[('mim', b)][0]:.3f}, "
                              f"exact {accuracy[('cmim', b)][1]:.3f} vs {accuracy[('mim', b)][1]:.3f}"
                              for b in batches),
    })
    return claims


def claims_markdown(claims: list[dict]) -> str:
    lines = ["## The paper's claims at this scale", "", "| claim | verdict | evidence | rule |", "|---|---|---|---|"]
    lines += [f"| {c['claim']} | **{c['verdict']}** | {c['evidence']} | {c['rule']} |" for c in claims]
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
    reused: list[str] = []  # evaluated by an earlier, interrupted invocation
    for batch_size in batch_sizes:
        for objective in objectives:
            name = run_name(objective, batch_size)
            eval_dir = output_dir / name / "eval"
            if (eval_dir / "results.json").exists():
                results[name] = json.loads((eval_dir / "results.json").read_text())
                reused.append(name)
                continue
            final = train_one(output_dir / name / "train", recipe=recipe, objective=objective,
                              batch_size=batch_size, max_steps=max_steps, extra_args=extra_train_args)
            results[name] = evaluate_model(
                final, eval_dir, tasks=tasks, probes=FAST_PROBES,
                baselines=() if baselines else BASELINE_NAMES,
                reconstruction_samples=reconstruction_samples, generation_samples=generation_samples)
            if not baselines:
                baselines = _baseline_headlines(results[name])
    if not baselines and results:
        baselines = _baseline_headlines(next(iter(results.values())))

    settings = {"recipe": recipe, "max_steps": max_steps, "batch_sizes": list(batch_sizes),
                "objectives": list(objectives), "probes": FAST_PROBES, "tasks": list(tasks),
                "hours": (time.perf_counter() - started) / 3600, "reused_models": reused}
    # Wall time summed over the invocations that built this table (an earlier one trained the reused models).
    settings["total_hours"] = settings["hours"] + (_previous_hours(output_dir / "compare.json", settings)
                                                   if reused else 0.0)
    rows = headline_rows(results)
    claims = paper_claims(rows)
    comparison = {"settings": settings, "rows": rows, "baselines": baselines, "claims": claims}
    write_json(comparison, output_dir / "compare.json")
    (output_dir / "compare.md").write_text(comparison_markdown(rows, baselines, settings) + "\n"
                                           + claims_markdown(claims))
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


def _previous_hours(path: Path, settings: dict) -> float:
    """Total wall time recorded by an earlier invocation with the same settings, else 0."""
    try:
        previous = json.loads(path.read_text())["settings"]
    except (OSError, ValueError, KeyError):
        return 0.0
    same = all(previous.get(k) == settings[k] for k in ("recipe", "max_steps", "batch_sizes", "objectives", "tasks"))
    return float(previous.get("total_hours", previous.get("hours", 0.0))) if same else 0.0


def _baseline_headlines(result: dict) -> dict:
    out = {}
    for task, (metric, _) in HEADLINE.items():
        for features in BASELINE_NAMES:
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
