"""results/moses/results.md: our MOSES rows (from each `cmim-hf evaluate --sections moses` run's results.json)
beside the published baselines (baselines.md, copied from the MOSES README by baselines_from_readme.py).

Usage: python results/moses/make_results.py   (from the repository root; reads results/moses/*/results.json)
"""
import json
from pathlib import Path

from cmim_hf.evaluation.moses_benchmark import MOSES_METRICS

HERE = Path(__file__).parent
baseline_lines = (HERE / "baselines.md").read_text().splitlines()
header = next(i for i, line in enumerate(baseline_lines) if line.startswith("| Model |"))
table = baseline_lines[header:header + 2]
table[0] = table[0].replace("| Model |", "| Model (samples, n) |", 1)
ours, notes = [], []
for path in sorted(HERE.glob("*/results.json")):
    results = json.loads(path.read_text())
    moses, settings = results["moses"], results["settings"]
    for row, label in (("prior", "prior"), ("around_test", f"around test, r = {moses['settings']['radius']}")):
        metrics = moses[row]
        cells = []
        for key in MOSES_METRICS:
            value = metrics.get(key)
            cells.append("n/a" if value is None else f"{value:.3f}" if key.startswith("FCD") else f"{value:.4f}")
        ours.append(f"| **{settings['model']}** ({label}, n = {metrics['n']:,}) | " + " | ".join(cells) + " |")
        short = [name for name, k in (("Unique@1k", 1000), ("Unique@10k", 10_000)) if metrics["n_valid"] < k]
        if short:
            notes.append(f"{settings['model']} {label}: {metrics['n_valid']} valid of {metrics['n']:,}, so its "
                         f"{' and '.join(short)} count over those {metrics['n_valid']} (MOSES divides by "
                         "min(k, valid)).")
    command = (path.parent / "command.txt").read_text().strip()
    notes.append(f"{settings['model']}: `{command}`; {settings['seconds']:.0f} s wall for the "
                 f"whole evaluation (sampling {moses['prior']['sampling_seconds']:.0f} + "
                 f"{moses['around_test']['sampling_seconds']:.0f} s, metrics {moses['prior']['metrics_seconds']:.0f} + "
                 f"{moses['around_test']['metrics_seconds']:.0f} s) on the shared 2-core machine.")
for path in sorted(HERE.glob("train_reference_*.json")):
    metrics = json.loads(path.read_text())
    cells = [f"{metrics[key]:.3f}" if key.startswith("FCD") else f"{metrics[key]:.4f}" for key in MOSES_METRICS]
    ours.append(f"| *MOSES train sample* (calibration, n = {metrics['n']:,}) | " + " | ".join(cells) + " |")
    notes.append(f"MOSES train sample: `{metrics['command']}`, {metrics['seconds']:.0f} s wall: what real "
                 f"molecules of the training distribution score at n = {metrics['n']:,} (FCD grows as n shrinks).")
text = ["# MOSES benchmark: cMIM generators beside the published baselines", "",
        "Ours: raw greedy decodings (invalid ones included), from the prior N(0, I) and one per MOSES test molecule "
        "from mu(x) + r N(0, I), scored by molsets 0.3.1's `moses.get_all_metrics` with its shipped test "
        "statistics. Baselines: the MOSES README's table, see baselines.md for the source and commit. FCD lower is "
        "better, the rest higher.", "", *table, *ours, *baseline_lines[header + 2:], "", "Notes:", "",
        *[f"- {note}" for note in notes], ""]
(HERE / "results.md").write_text("\n".join(text))
print(HERE / "results.md")
