"""The latent-space optimisation benchmark (`cmim-hf optimize --benchmark plogp qed --output_dir DIR`).

Two tasks from the constrained-optimisation literature (JT-VAE, MolMIM), on MOSES test molecules:
  - plogp: the `num_molecules` molecules of MOSES test with the lowest penalised logP; improve pLogP under
    Tanimoto floors 0.0, 0.2, 0.4 and 0.6. Success: a molecule that scores higher was found.
  - qed: `num_molecules` molecules of MOSES test with QED in [0.7, 0.8] (a seeded random sample); improve QED
    under a floor of 0.4. Success: QED above 0.9.
CMA-ES and random search run with the same oracle budget on every start molecule.

Resumable: each task folder holds `starts.json` (the chosen molecules), `settings.json`, and `rows.jsonl`,
one line per finished start molecule, appended and flushed as it finishes. A rerun with the same settings
skips the molecules already done; the wall time is summed over the invocations. `summary.json` and
`summary.md` (per task and for all tasks together, in the output folder) are rewritten at the end of each
invocation from all rows so far.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..pretrained import DEFAULT_GENERATOR
from ..saving import atomic_write
from .report import write_json

__all__ = ["BENCHMARK_TASKS", "run_optimization_benchmark", "select_start_molecules", "summarize_task"]


@dataclass(frozen=True)
class BenchmarkTask:
    objective: str
    thresholds: tuple[float, ...]
    description: str
    success: Callable[[dict], bool]  # on a result row that did not fail
    success_text: str


BENCHMARK_TASKS: dict[str, BenchmarkTask] = {
    "plogp": BenchmarkTask("plogp", (0.0, 0.2, 0.4, 0.6), "lowest penalised logP of MOSES test",
                           lambda row: row["improvement"] > 0, "improvement > 0"),
    "qed": BenchmarkTask("qed", (0.4,), "QED in [0.7, 0.8], random sample of MOSES test",
                         lambda row: row["best_score"] > 0.9, "QED > 0.9"),
}
QED_RANGE = (0.7, 0.8)


def _moses_test() -> list[str]:
    from ..data import moses_data_dir

    with gzip.open(moses_data_dir() / "test.csv.gz", "rt") as handle:
        next(handle)  # header: SMILES
        return [line.strip() for line in handle if line.strip()]


def select_start_molecules(task: str, num_molecules: int, seed: int = 0, progress: bool = False) -> list[dict]:
    """The start molecules of `task` as [{"smiles", "score"}], from MOSES test (176,074 molecules).

    plogp: the `num_molecules` lowest pLogP (all of MOSES test is scored: about 2 min on one core).
    qed: the first `num_molecules` with QED in [0.7, 0.8] in a seeded shuffle of MOSES test.
    """
    from ..scoring import plogp, qed

    smiles = _moses_test()
    if task == "plogp":
        scores = np.array([plogp(s) for s in tqdm(smiles, desc="pLogP of MOSES test", disable=not progress)],
                          dtype=float)
        order = np.argsort(scores, kind="stable")[:num_molecules]
        return [{"smiles": smiles[i], "score": float(scores[i])} for i in order]
    if task == "qed":
        chosen = []
        for i in np.random.default_rng(seed).permutation(len(smiles)):
            value = qed(smiles[i])
            if QED_RANGE[0] <= value <= QED_RANGE[1]:
                chosen.append({"smiles": smiles[i], "score": value})
                if len(chosen) == num_molecules:
                    break
        return chosen
    raise ValueError(f"unknown benchmark task {task!r}; expected one of {', '.join(BENCHMARK_TASKS)}")


def _read_rows(path: Path) -> list[dict]:
    """The finished molecules in `rows.jsonl`; a last line cut short by an interruption is dropped from the
    file, so the next append starts on a fresh line."""
    if not path.exists():
        return []
    rows, good_bytes = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
            good_bytes += len(line)
    if good_bytes < path.stat().st_size:
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    return rows


def _append_row(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _stats(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=float)
    if not len(values):
        return {"mean": None, "std": None}
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def summarize_task(task: str, rows: list[dict], settings: dict) -> dict:
    """Per method and threshold: improvement (mean, std over all start molecules: 0 when the start is
    returned), success rate, similarity of the successes, validity; and CMA-ES against random search per
    threshold (paired: the same molecules)."""
    spec = BENCHMARK_TASKS[task]
    results = [r for row in rows for r in row["results"]]
    table = []
    for method in ("cmaes", "random"):
        for threshold in spec.thresholds:
            mine = [r for r in results if r["method"] == method and r["min_similarity"] == threshold]
            done = [r for r in mine if r["status"] != "failed"]
            wins = [r for r in done if spec.success(r)]
            table.append({
                "method": method, "min_similarity": threshold, "molecules": len(mine), "failed": len(mine) - len(done),
                "improvement": _stats([r["improvement"] for r in done]),
                "improvement_of_successes": _stats([r["improvement"] for r in wins]),
                "success_rate": len(wins) / len(done) if done else None,
                "similarity_of_successes": _stats([r["similarity"] for r in wins])["mean"],
                "fraction_valid": _stats([r["fraction_valid"] for r in done])["mean"],
            })
    return {"task": task, "objective": spec.objective, "start_molecules": spec.description,
            "success": spec.success_text, "molecules_done": len(rows), "table": table,
            "cmaes_vs_random": [_paired(results, threshold) for threshold in spec.thresholds],
            "settings": settings,
            "wall_hours": (settings.get("selection_seconds", 0.0) + sum(row["wall_seconds"] for row in rows)) / 3600}


def _paired(results: list[dict], threshold: float) -> dict:
    """CMA-ES against random search on the same start molecules: mean difference of improvement, how often
    each is better, and the Wilcoxon signed-rank p-value (two-sided, ties dropped)."""
    from scipy.stats import wilcoxon

    by = {(r["start_smiles"], r["method"]): r["improvement"] for r in results
          if r["min_similarity"] == threshold and r["status"] != "failed"}
    starts = [s for (s, m) in by if m == "cmaes" and (s, "random") in by]
    difference = np.array([by[s, "cmaes"] - by[s, "random"] for s in starts], dtype=float)
    out = {"min_similarity": threshold, "pairs": len(starts),
           "mean_difference": float(difference.mean()) if len(starts) else None,
           "cmaes_better": int((difference > 0).sum()), "random_better": int((difference < 0).sum()),
           "ties": int((difference == 0).sum()), "wilcoxon_p": None}
    if (difference != 0).sum() >= 1:
        out["wilcoxon_p"] = float(wilcoxon(difference, zero_method="wilcox").pvalue)
    return out


def _number(value, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def summary_markdown(summaries: list[dict]) -> str:
    lines = ["# Latent-space optimisation benchmark", ""]
    for summary in summaries:
        settings = summary["settings"]
        lines += [f"## {summary['task']}: {summary['start_molecules']} ({summary['molecules_done']} of "
                  f"{settings['num_molecules']} start molecules done)", "",
                  f"Model `{settings['model']}`; oracle budget {settings['budget']} decoded latents per search, "
                  f"population {settings['population_size']}, sigma {settings['sigma']}, seed {settings['seed']}. "
                  f"Success: {summary['success']}. Improvement: mean +- std over all start molecules (0 when the "
                  f"start is returned). Wall time {summary['wall_hours']:.2f} h over {settings['invocations']} "
                  f"invocation(s).", "",
                  f"Command: `{settings['command']}`", "",
                  "| method | min similarity | improvement | success | improvement of successes | "
                  "similarity of successes | valid decodes |", "|---|---|---|---|---|---|---|"]
        for row in summary["table"]:
            improvement, of_wins = row["improvement"], row["improvement_of_successes"]
            lines.append(f"| {row['method']} | {row['min_similarity']:.1f} | {_number(improvement['mean'])} +- "
                         f"{_number(improvement['std'])} | {_number(row['success_rate'], 3)} | "
                         f"{_number(of_wins['mean'])} +- {_number(of_wins['std'])} | "
                         f"{_number(row['similarity_of_successes'])} | {_number(row['fraction_valid'], 3)} |")
        lines += ["", "CMA-ES against random search, paired by start molecule:", "",
                  "| min similarity | pairs | mean difference (CMA-ES - random) | CMA-ES better | random better | "
                  "ties | Wilcoxon p |", "|---|---|---|---|---|---|---|"]
        for pair in summary["cmaes_vs_random"]:
            lines.append(f"| {pair['min_similarity']:.1f} | {pair['pairs']} | {_number(pair['mean_difference'], 3)} | "
                         f"{pair['cmaes_better']} | {pair['random_better']} | {pair['ties']} | "
                         f"{_number(pair['wilcoxon_p'], 3)} |")
        lines.append("")
    return "\n".join(lines)


def run_optimization_benchmark(tasks: Sequence[str], output_dir: str | os.PathLike, *, model: str = DEFAULT_GENERATOR,
                               num_molecules: int = 200, budget: int = 120, population_size: int = 20,
                               sigma: float = 0.5, seed: int = 0, device: str | None = None, command: str = "",
                               progress: bool = False) -> list[dict]:
    """Run (or resume) the benchmark `tasks` into `output_dir/<task>/`; returns one summary per task."""
    from ..embeddings import load_pretrained
    from ..optimization import optimize_molecules

    output_dir = Path(output_dir)
    loaded = None
    summaries = []
    for task in tasks:
        spec = BENCHMARK_TASKS[task]
        folder = output_dir / task
        folder.mkdir(parents=True, exist_ok=True)
        settings = {"model": str(model), "num_molecules": num_molecules, "budget": budget,
                    "population_size": population_size, "sigma": sigma, "seed": seed,
                    "thresholds": list(spec.thresholds)}
        settings_path = folder / "settings.json"
        if settings_path.exists():
            previous = json.loads(settings_path.read_text())
            changed = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
            if changed:
                raise ValueError(f"{folder} holds a run with other settings ({', '.join(f'{k}: {a!r} there, {b!r} now' for k, (a, b) in changed.items())}); "
                                 "resume with the same settings or choose another --output_dir")
            settings = {**previous, "invocations": previous["invocations"] + 1}
        else:
            settings.update(invocations=1, command=command, selection_seconds=0.0)
        starts_path = folder / "starts.json"
        if not starts_path.exists():
            started = time.perf_counter()
            starts = select_start_molecules(task, num_molecules, seed=seed, progress=progress)
            settings["selection_seconds"] = round(time.perf_counter() - started, 1)
            write_json({"task": task, "description": spec.description, "molecules": starts}, starts_path)
        write_json(settings, settings_path)
        starts = json.loads(starts_path.read_text())["molecules"]

        rows_path = folder / "rows.jsonl"
        rows = _read_rows(rows_path)
        done = {row["start_smiles"] for row in rows}
        todo = [s["smiles"] for s in starts if s["smiles"] not in done]
        if todo and loaded is None:
            loaded = load_pretrained(model, device=device)
        for smiles in tqdm(todo, desc=f"{task} (budget {budget})", unit="molecule", disable=not progress,
                           initial=len(done), total=len(starts)):
            started = time.perf_counter()
            results = optimize_molecules(*loaded, [smiles], spec.objective, method="both", budget=budget,
                                         population_size=population_size, sigma=sigma,
                                         min_similarity=spec.thresholds, seed=seed)
            row = {"start_smiles": smiles, "wall_seconds": round(time.perf_counter() - started, 3),
                   "results": [r.as_dict() for r in results]}
            _append_row(rows_path, row)
            rows.append(row)
        summary = summarize_task(task, rows, settings)
        write_json(summary, folder / "summary.json")
        atomic_write(folder / "summary.md", summary_markdown([summary]))
        summaries.append(summary)

    everything = [json.loads((output_dir / t / "summary.json").read_text()) for t in BENCHMARK_TASKS
                  if (output_dir / t / "summary.json").exists()]
    write_json({"tasks": everything}, output_dir / "summary.json")
    atomic_write(output_dir / "summary.md", summary_markdown(everything))
    return summaries
