"""Evaluate one stage of the flagship training and append a row to results/flagship/curve.csv.

    python results/flagship/evaluate_stage.py /work/runs/flagship/checkpoint-6000
    python results/flagship/evaluate_stage.py /work/runs/flagship/final
    python results/flagship/evaluate_stage.py /work/runs/flagship        # its newest checkpoint

A stage is a training checkpoint (`checkpoint-<step>`: Accelerate's state, rebuilt here from its recipe.yaml,
tokenizer/ and model.safetensors, read as safetensors) or a saved model folder (`final`). The row holds:
  step, molecules seen (step x batch x accumulation x processes, from the checkpoint's recipe),
  prior validity / uniqueness / novelty of 1000 greedy decodes of z ~ N(0, I), seed 0 (`generate_smiles`),
  exact greedy reconstruction and teacher-forced token accuracy of 512 MOSES test molecules (seed 0;
  `reconstruction_metrics`, z = mu),
  the posterior's mean sigma and per-dim std of mu over those molecules.
A row for a step already in the file is replaced, not duplicated. A run started from another's weights
(`--init_from`) counts on from it with --steps_before and --molecules_before (the GPU flagship's second stage:
`--steps_before 3000 --molecules_before 768000`, both of 256 molecules a step).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CURVE = HERE / "curve.csv"
FIELDS = ("step", "molecules_seen", "prior_validity", "prior_uniqueness", "prior_novelty", "exact_reconstruction",
          "exact_reconstruction_canonical", "token_accuracy", "sigma_mean", "mu_dim_std", "checkpoint",
          "eval_seconds")
NUM_PRIOR = 1000
NUM_RECONSTRUCTION = 512


def load_stage(folder: Path):
    """(model, tokenizer, step, molecules_seen) of a checkpoint folder or a saved model folder."""
    from cmim_hf.embeddings import load_pretrained
    from cmim_hf.training.arguments import parse_args
    from cmim_hf.training.checkpoints import load_checkpoint_model

    if (folder / "config.json").is_file():  # a saved model folder (`final`)
        model, tokenizer = load_pretrained(folder, device="cpu")
        recipe_file, step = folder / "recipe.yaml", None
        state_file = folder / "training_logs" / "metrics.csv"
        if state_file.is_file():
            step = max(int(row["step"]) for row in csv.DictReader(io.StringIO(state_file.read_text())))
    else:
        model, tokenizer, _, _ = load_checkpoint_model(folder)  # verified against its manifest first
        recipe_file, step = folder / "recipe.yaml", int(folder.name.rsplit("-", 1)[1])
    training_args, _, _ = parse_args(["--recipe", str(recipe_file)])
    batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    processes = int(os.environ.get("FLAGSHIP_PROCESSES", "1"))  # processes of the run (1 on this machine)
    seen = None if step is None else step * batch * processes
    return model, tokenizer, step, seen


def newest_stage(folder: Path) -> Path:
    if folder.name.startswith("checkpoint-") or (folder / "config.json").is_file():
        return folder
    from cmim_hf.training.checkpoints import find_checkpoints

    found = find_checkpoints(folder)
    if not found:
        raise SystemExit(f"error: {folder} holds no checkpoint-<step> folder yet")
    return found[-1]


@torch.no_grad()
def evaluate_stage(folder: Path) -> dict:
    from cmim_hf.embeddings import generate_smiles, max_input_length
    from cmim_hf.evaluation.metrics import generation_metrics
    from cmim_hf.data import moses_sample
    from cmim_hf.evaluation.model_eval import _moses_training_set
    from cmim_hf.evaluation.reconstruction import reconstruction_metrics

    started = time.perf_counter()
    model, tokenizer, step, seen = load_stage(folder)
    test = moses_sample("test", NUM_RECONSTRUCTION, seed=0)
    reconstruction = reconstruction_metrics(model, tokenizer, test)
    prior = generation_metrics(generate_smiles(model, tokenizer, NUM_PRIOR, seed=0), _moses_training_set())
    batch = tokenizer(test, padding=True, truncation=True, max_length=max_input_length(model, tokenizer),
                      return_tensors="pt")
    mu, log_sigma = model.encode(batch["input_ids"], batch["attention_mask"])
    return {
        "step": step, "molecules_seen": seen,
        "prior_validity": prior["validity"], "prior_uniqueness": prior["uniqueness"],
        "prior_novelty": prior["novelty"], "exact_reconstruction": reconstruction["exact"],
        "exact_reconstruction_canonical": reconstruction["exact_canonical"],
        "token_accuracy": reconstruction["token_accuracy"],
        "sigma_mean": float(log_sigma.float().exp().mean()), "mu_dim_std": float(mu.flatten(1).std(0).mean()),
        "checkpoint": folder.name, "eval_seconds": round(time.perf_counter() - started, 1),
    }


def append_row(row: dict, path: Path = CURVE) -> None:
    """Add `row` to the curve (replacing a row of the same step), sorted by step, written atomically."""
    from cmim_hf.saving import atomic_write

    rows = list(csv.DictReader(io.StringIO(path.read_text()))) if path.is_file() else []
    rows = [r for r in rows if str(r["step"]) != str(row["step"])] + [row]
    rows.sort(key=lambda r: math.inf if r["step"] in (None, "", "None") else int(r["step"]))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write(path, out.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", type=Path, help="a checkpoint-<step> folder, a saved model folder, or the run "
                                                 "folder (its newest checkpoint)")
    parser.add_argument("--curve", type=Path, default=CURVE, help="the CSV to append to (default %(default)s)")
    parser.add_argument("--steps_before", type=int, default=0,
                        help="steps of the run this one was started from (--init_from), added to the step")
    parser.add_argument("--molecules_before", type=int, default=0,
                        help="molecules that run saw, added to molecules_seen")
    args = parser.parse_args(argv)
    if not args.stage.is_dir():
        parser.error(f"stage {args.stage} is not a folder")
    row = evaluate_stage(newest_stage(args.stage))
    row["step"] += args.steps_before
    row["molecules_seen"] += args.molecules_before
    append_row(row, args.curve)
    print(row)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
