"""Validity, uniqueness and novelty of cmim-moses-base's samples from N(0, scale^2 I), 1000 per scale, seed 0:
how much of the prior-validity gap is the prior being wider than the aggregate posterior.

    OMP_NUM_THREADS=1 python results/flagship/prior_scale.py > results/flagship/prior_scale.txt
"""
import torch

from cmim_hf.embeddings import generate_smiles, load_pretrained
from cmim_hf.evaluation.metrics import generation_metrics
from cmim_hf.evaluation.model_eval import _moses_training_set

SCALES = (1.0, 0.7, 0.5, 0.3, 0.2)

torch.set_num_threads(1)
model, tokenizer = load_pretrained("cmim-moses-base", device="cpu")
train = _moses_training_set()
print("scale | validity | uniqueness | novelty (1000 samples, seed 0)")
for scale in SCALES:
    metrics = generation_metrics(generate_smiles(model, tokenizer, 1000, seed=0, scale=scale), train)
    print(f"{scale} | {metrics['validity']:.3f} | {metrics['uniqueness']:.3f} | {metrics['novelty']:.3f}", flush=True)
