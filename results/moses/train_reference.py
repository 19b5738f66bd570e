"""A calibration row: `moses.get_all_metrics` of N random MOSES *training* molecules (the README's Train row used
all of them). FCD and Unique@k depend on the number of samples; this row shows what a perfect generator scores at
the sample sizes our rows use. Writes results/moses/train_reference_N.json.

Usage: OMP_NUM_THREADS=1 nice -n 5 python results/moses/train_reference.py N
"""
import json
import sys
import time
from pathlib import Path

from cmim_hf.data import load_named_dataset
from cmim_hf.evaluation.moses_benchmark import moses_metrics
from cmim_hf.evaluation.report import write_json

n = int(sys.argv[1])
started = time.perf_counter()
train = list(load_named_dataset("moses", split="train", max_samples=n, seed=0)["text"])
metrics = moses_metrics(train)
out = Path(__file__).parent / f"train_reference_{n}.json"
write_json({**metrics, "seconds": round(time.perf_counter() - started, 1),
            "command": f"OMP_NUM_THREADS=1 nice -n 5 python results/moses/train_reference.py {n}"}, out)
print(out, json.dumps(metrics))
