"""results/optimize/small_vs_base.md: the optimisation benchmark of the old default generator (cmim-moses-small at
sigma 0.1, results/optimize/summary.json) beside the new one (cmim-moses-base at the same sigma 0.1,
results/optimize/base/, and at its own pilot's sigma 0.5, results/optimize/base-sigma0.5/): the same start
molecules, budget, population and seed.

    python results/optimize/compare_models.py
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = {"small, sigma 0.1": HERE / "summary.json", "base, sigma 0.1": HERE / "base" / "summary.json",
        "base, sigma 0.5": HERE / "base-sigma0.5" / "summary.json"}


def tasks(path: Path) -> dict:
    return {task["task"]: task for task in json.loads(path.read_text())["tasks"]}


runs = {name: tasks(path) for name, path in RUNS.items() if path.is_file()}
names = list(runs)
header = " / ".join(names)
lines = ["# Latent-space optimisation: cmim-moses-small (the old default) against cmim-moses-base (the new one)", "",
         "Made by `python results/optimize/compare_models.py` from the runs' summary.json; each run's command, "
         "settings and full tables are in its summary.md (`results/optimize/summary.md`, "
         "`results/optimize/base/summary.md`, `results/optimize/base-sigma0.5/summary.md`). Improvement: mean over "
         "all 200 start molecules (0 when the start is returned); success: the task's criterion; valid: the fraction "
         "of decoded latents RDKit parses. Each cell lists the runs in the order " + header + ".", ""]
first = runs[names[0]]
for task, reference in first.items():
    if not all(task in runs[name] for name in names):
        continue
    lines += [f"## {task}: {reference['start_molecules']} (success: {reference['success']})", "",
              "| method | min similarity | improvement | success | valid |", "|---|---|---|---|---|"]
    tables = {name: {(r["method"], r["min_similarity"]): r for r in runs[name][task]["table"]} for name in names}
    for key in tables[names[0]]:
        rows = [tables[name][key] for name in names]
        lines.append(f"| {key[0]} | {key[1]:.1f} | " + " / ".join(f"{r['improvement']['mean']:.2f}" for r in rows)
                     + " | " + " / ".join(f"{r['success_rate']:.3f}" for r in rows)
                     + " | " + " / ".join(f"{r['fraction_valid']:.3f}" for r in rows) + " |")
    lines += ["", "CMA-ES against random search, paired by start molecule (mean difference, Wilcoxon p):", "",
              "| min similarity | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    pairs = {name: {p["min_similarity"]: p for p in runs[name][task]["cmaes_vs_random"]} for name in names}
    for floor in pairs[names[0]]:
        lines.append(f"| {floor:.1f} | " + " | ".join(
            f"{pairs[name][floor]['mean_difference']:+.3f} (p = {pairs[name][floor]['wilcoxon_p']:.3f})"
            for name in names) + " |")
    lines.append("")
(HERE / "small_vs_base.md").write_text("\n".join(lines))
print(HERE / "small_vs_base.md")
