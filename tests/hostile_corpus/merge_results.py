"""Merge the corpus tables into results.md: BEFORE (fresh clone of main at 1513c15: the round-robin run cut short +
the numeric-option run) and AFTER (branch hostile2), with counts, and the hand-reviewed verdicts of the rows
the automatic classifier got wrong or that need judgement."""
import re
import sys
from collections import Counter

REVIEWED = {  # case -> (class, why); applied to both runs where the row exists
    "ckpt/random_states_1.pkl payload forged manifest": ("b", "an unused file (rank 1's states in a 1-process run): never read, no code ran, resume correct"),
    "ckpt/scheduler.bin payload forged manifest": ("b", "an unused file (the schedule is scheduler.json): never read, no code ran, resume correct"),
    "ckpt/payload in a subfolder forged": ("b", "an unused file listed by a forged manifest: never read, no code ran"),
    "sig/SIGINT during train after a checkpoint": ("b", "only when the signal lands mid-save: a hidden .checkpoint-N.tmp staging folder, which the next run deletes (training/checkpoints.py prepare_output_dir)"),
    "out/generate --output /dev/full": ("e", "exit 0 because, as root, the atomic write renamed a regular file over the /dev/full device node (restored by hand: mknod /dev/full c 1 7); the corpus now uses a FIFO instead"),
    "num/train --num_train_epochs -1": ("b", "--max_steps 2 is given, so epochs are documented as unused"),
    "num/embed --batch_size 100000000000000000000": ("b", "a batch larger than the input is harmless (one batch)"),
}


def read(path):
    rows = {}
    for line in open(path):
        if re.match(r"\| \d+ \| ", line):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[1]] = cells
    return rows


def table(rows, title):
    counts, reviewed = Counter(), Counter()
    out = [f"## {title}: cases", "", "| case | command | exit | first stderr line | auto class | reviewed | note |",
           "|---|---|---|---|---|---|---|"]
    for name, c in rows.items():
        auto = c[5]
        rev, why = REVIEWED.get(name, (auto, ""))
        counts[auto] += 1
        reviewed[rev] += 1
        out.append(f"| {name} | {c[2]} | {c[3]} | {c[4]} | {auto} | {rev} | {why or c[6]} |")
    head = [f"## {title}: counts ({len(rows)} cases)", "", "| class | automatic | reviewed |", "|---|---|---|"]
    head += [f"| {k} | {counts.get(k, 0)} | {reviewed.get(k, 0)} |" for k in "abcdef?"]
    return head + [""] + out + [""], counts, reviewed


before = read("results-main.md")
before.update(read("results-num.md"))
after = read("results-after.md")
lines = ["# Hostile corpus (issue 17): results", "",
         "Corpus: `run_corpus.py` (272 cases defined; classes a-f as in its docstring). BEFORE: a fresh clone of main at "
         "1513c15 (its .venv from `bash .ci/install`), run in round-robin order over the kinds and cut short at the "
         "time limit, plus a complete run of the 83 numeric-option cases. AFTER: branch hostile2 (its .venv), run in "
         "the same order, cut short at the time limit. Rows whose automatic verdict was reviewed by hand say why.", ""]
b, *_ = table(before, "BEFORE (main 1513c15)")
a, *_ = table(after, "AFTER (branch hostile2)")
lines += b + a
open("results.md", "w").write("\n".join(lines) + "\n")
print(open("results.md").read()[:3000])
