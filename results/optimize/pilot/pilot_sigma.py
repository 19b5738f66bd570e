"""Sigma pilot for the optimisation benchmark: CMA-ES and random search at sigma 0.05, 0.1 and 0.2 on the
MOSES test molecules ranked 201-216 by lowest pLogP (disjoint from the benchmark's 200), budget 160,
population 20, seed 0. Run once, output in pilot.log:

    OMP_NUM_THREADS=1 .venv/bin/python results/optimize/pilot/pilot_sigma.py > results/optimize/pilot/pilot.log
"""
import time

import numpy as np
import torch

from cmim_hf import load_pretrained, optimize_molecules
from cmim_hf.evaluation.optimization_benchmark import select_start_molecules

torch.set_num_threads(1)
t = time.perf_counter()
starts = select_start_molecules("plogp", 216)
print("selection s", time.perf_counter() - t, flush=True)
pilot = [s["smiles"] for s in starts[200:216]]
model, tok = load_pretrained("cmim-moses-small", device="cpu")
for sigma in (0.05, 0.1, 0.2):
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
