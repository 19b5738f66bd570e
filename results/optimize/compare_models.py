"""results/optimize/small_vs_base.md: the optimisation benchmark of the old default generator (cmim-moses-small,
results/optimize/summary.json) beside the new one (cmim-moses-base, results/optimize/base/summary.json), same
start molecules, budget, population, sigma and seed.

    python results/optimize/compare_models.py
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = {"small": HERE / "summary.json", "base": HERE / "base" / "summary.json"}


def tasks(path: Path) -> dict:
    return {task["task"]: task for task in json.loads(path.read_text())["tasks"]}


runs = {name: tasks(path) for name, path in RUNS.items()}
lines = ["# Latent-space optimisation: cmim-moses-small (the old default) against cmim-moses-base (the new one)", "",
         "Made by `python results/optimize/compare_models.py` from the two runs' summary.json; each run's command, "
         "settings and full tables are in its summary.md (`results/optimize/summary.md`, "
         "`results/optimize/base/summary.md`). Improvement: mean over all 200 start molecules (0 when the start is "
         "returned); success: the task's criterion; valid: the fraction of decoded latents RDKit parses.", ""]
for task in runs["small"]:
    small, base = runs["small"][task], runs["base"].get(task)
    if base is None:
        continue
    lines += [f"## {task}: {small['start_molecules']} (success: {small['success']})", "",
              "| method | min similarity | improvement small / base | success small / base | valid small / base |",
              "|---|---|---|---|---|"]
    base_rows = {(r["method"], r["min_similarity"]): r for r in base["table"]}
    for row in small["table"]:
        other = base_rows[(row["method"], row["min_similarity"])]
        lines.append(f"| {row['method']} | {row['min_similarity']:.1f} | {row['improvement']['mean']:.2f} / "
                     f"{other['improvement']['mean']:.2f} | {row['success_rate']:.3f} / {other['success_rate']:.3f} | "
                     f"{row['fraction_valid']:.3f} / {other['fraction_valid']:.3f} |")
    lines += ["", "CMA-ES against random search, paired by start molecule (mean difference, Wilcoxon p):", "",
              "| min similarity | small | base |", "|---|---|---|"]
    base_pairs = {p["min_similarity"]: p for p in base["cmaes_vs_random"]}
    for pair in small["cmaes_vs_random"]:
        other = base_pairs[pair["min_similarity"]]
        lines.append(f"| {pair['min_similarity']:.1f} | {pair['mean_difference']:+.3f} (p = {pair['wilcoxon_p']:.3f}) "
                     f"| {other['mean_difference']:+.3f} (p = {other['wilcoxon_p']:.3f}) |")
    lines.append("")
(HERE / "small_vs_base.md").write_text("\n".join(lines))
print(HERE / "small_vs_base.md")
