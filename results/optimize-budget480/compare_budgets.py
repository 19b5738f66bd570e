"""Budget 480 against budget 120 on the same start molecules (the first 40 of the pLogP benchmark).

    .venv/bin/python results/optimize-budget480/compare_budgets.py > results/optimize-budget480/budgets.md

Reads the rows of this folder's run (`cmim-hf optimize --benchmark plogp --budget 480 --num_molecules 40`) and of
`results/optimize/` (budget 120, 200 molecules), keeps the 120-call rows of the same start molecules, and prints
each run's CMA-ES-vs-random table and, per similarity floor, CMA-ES at 480 calls against CMA-ES at 120 (paired,
Wilcoxon signed-rank).
"""

import json
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

from cmim_hf.evaluation.optimization_benchmark import summarize_task, summary_markdown

HERE = Path(__file__).resolve().parent
LARGE, SMALL = HERE / "plogp", HERE.parent / "optimize" / "plogp"


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "rows.jsonl").read_text().splitlines() if line.strip()]


large = rows(LARGE)
starts = {row["start_smiles"] for row in large}
small = [row for row in rows(SMALL) if row["start_smiles"] in starts]
assert len(small) == len(large), (len(small), len(large))
for name, these, folder in (("480 calls", large, LARGE), ("120 calls, same molecules", small, SMALL)):
    settings = json.loads((folder / "settings.json").read_text())
    print(f"## Budget {name}\n")
    print(summary_markdown([summarize_task("plogp", these, settings)]))
print("## CMA-ES with 480 calls against CMA-ES with 120 calls (same molecules, paired)\n")
print("| min similarity | mean improvement 480 | mean improvement 120 | difference | 480 better / worse / ties | Wilcoxon p |")
print("|---|---|---|---|---|---|")


def cmaes(rows_: list[dict], floor: float) -> dict:
    return {r["start_smiles"]: r["improvement"] for row in rows_ for r in row["results"]
            if r["method"] == "cmaes" and r["min_similarity"] == floor and r["status"] != "failed"}


for floor in (0.0, 0.2, 0.4, 0.6):
    a, b = cmaes(large, floor), cmaes(small, floor)
    common = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in common])
    p = wilcoxon(d).pvalue if (d != 0).any() else float("nan")
    print(f"| {floor} | {np.mean([a[s] for s in common]):.3f} | {np.mean([b[s] for s in common]):.3f} | "
          f"{d.mean():+.3f} | {(d > 0).sum()} / {(d < 0).sum()} / {(d == 0).sum()} | {p:.3g} |")
