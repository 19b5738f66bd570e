"""Sigma pilot for the optimisation benchmark: CMA-ES and random search at sigma 0.05, 0.1 and 0.2 on the
MOSES test molecules ranked 201-216 by lowest pLogP (disjoint from the benchmark's 200), budget 160,
population 20, seed 0. Run once per model, output in pilot.log (cmim-moses-small) and pilot-base.log:

    OMP_NUM_THREADS=1 .venv/bin/python results/optimize/pilot/pilot_sigma.py > results/optimize/pilot/pilot.log
    OMP_NUM_THREADS=1 .venv/bin/python results/optimize/pilot/pilot_sigma.py --model cmim-moses-base \
        --sigmas 0.1 0.3 0.5 1.0 > results/optimize/pilot/pilot-base.log
"""
import argparse
import time

import numpy as np
import torch

from cmim_hf import load_pretrained, optimize_molecules
from cmim_hf.evaluation.optimization_benchmark import select_start_molecules

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="cmim-moses-small")
parser.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1, 0.2])
args = parser.parse_args()
torch.set_num_threads(1)
t = time.perf_counter()
starts = select_start_molecules("plogp", 216)
print("selection s", time.perf_counter() - t, flush=True)
pilot = [s["smiles"] for s in starts[200:216]]
model, tok = load_pretrained(args.model, device="cpu")
for sigma in args.sigmas:
    t = time.perf_counter()
    res = optimize_molecules(model, tok, pilot, "plogp", method="both", budget=160, sigma=sigma,
                             min_similarity=[0.0, 0.4], seed=0)
    dt = time.perf_counter() - t
    for m in ("cmaes", "random"):
        for th in (0.0, 0.4):
            r = [x for x in res if x.method == m and x.min_similarity == th]
            print(f"sigma {sigma} {m} sim>={th}: mean impr {np.mean([x.improvement for x in r]):.3f} "
                  f"success {np.mean([x.status == 'improved' for x in r]):.2f} "
                  f"valid {np.mean([x.fraction_valid for x in r]):.2f}", flush=True)
    print(f"sigma {sigma}: {dt:.0f} s for {16 * 3 * 160} decodes -> {16 * 3 * 160 / dt:.1f}/s", flush=True)
