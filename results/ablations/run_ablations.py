"""Measure one trained variant of the issue-22 ablations, or tabulate the measured ones.

    python results/ablations/run_ablations.py evaluate --model RUN/final --name baseline [--decoding]
    python results/ablations/run_ablations.py table          # results/ablations/*.json -> results.md table

`evaluate` writes results/ablations/<name>.json with, for one model:
  - prior: validity / uniqueness / novelty of 1000 greedy decodes of z ~ N(0, I) (`generate_smiles`);
  - aggregate: the same for 1000 z drawn from a diagonal Gaussian fitted to the aggregate posterior (per-dim
    mean and std of mu over the 512 test molecules): is the prior merely at the wrong place / scale?
  - around: samples mu(x) + N(0, r^2 I) around 50 MOSES test molecules, 10 per molecule, at each radius r:
    validity, uniqueness, novelty against MOSES train, mean ECFP4 Tanimoto to the seed;
  - reconstruction: exact greedy reconstruction and teacher-forced token accuracy of 512 MOSES test molecules
    (`reconstruction_metrics`, z = mu);
  - posterior: statistics of q(z|x) over those 512 molecules: mean sigma, fraction of dims at the sigma floor,
    per-dim std of mu (mean over dims), mean ||mu|| against sqrt(K*D) of a prior sample;
  - decoding (with --decoding): prior validity of 1000 samples under other decoding rules (multinomial
    sampling at temperatures 0.5 and 1.0, beam search of width 5).
All draws are seeded (seed 0); the molecules are a fixed seeded sample of MOSES test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cmim_hf.embeddings import generate_smiles, load_pretrained, max_input_length
from cmim_hf.evaluation.metrics import generation_metrics, mean_tanimoto_to_seed, validity
from cmim_hf.evaluation.model_eval import _moses_sample, _moses_training_set, reconstruction_metrics
from cmim_hf.chem import canonicalize
from cmim_hf.saving import atomic_write

HERE = Path(__file__).resolve().parent
RADII = (0.1, 0.25, 0.5, 1.0)
NUM_PRIOR = 1000
NUM_RECONSTRUCTION = 512
NUM_SEEDS = 50
SAMPLES_PER_SEED = 10
DECODE_BATCH = 250
DECODINGS = {
    "sample_t0.5": {"do_sample": True, "temperature": 0.5, "top_k": 0},
    "sample_t1.0": {"do_sample": True, "temperature": 1.0, "top_k": 0},
    "beam5": {"num_beams": 5},
}


@torch.no_grad()
def posterior_statistics(model, tokenizer, smiles: list[str]) -> tuple[dict, torch.Tensor]:
    """Statistics of q(z|x) over `smiles`; also returns mu, (N, K, D)."""
    batch = tokenizer(smiles, padding=True, truncation=True, max_length=max_input_length(model, tokenizer),
                      return_tensors="pt")
    means, log_scales = [], []
    for start in range(0, len(smiles), 128):
        mean, log_scale = model.encode(batch["input_ids"][start:start + 128],
                                       batch["attention_mask"][start:start + 128])
        means.append(mean.float())
        log_scales.append(log_scale.float())
    mu, log_sigma = torch.cat(means), torch.cat(log_scales)  # (N, K, D)
    floor = model.config.min_log_scale
    flat = mu.flatten(1)
    stats = {
        "sigma_mean": float(log_sigma.exp().mean()),
        "sigma_floor": math.exp(floor),
        "fraction_at_floor": float((log_sigma <= floor + 1e-4).float().mean()),
        "mu_dim_std": float(flat.std(dim=0).mean()),
        "mu_dim_mean_abs": float(flat.mean(dim=0).abs().mean()),
        "mu_norm": float(flat.norm(dim=1).mean()),
        "prior_norm": math.sqrt(flat.shape[1]),
    }
    return stats, mu


@torch.no_grad()
def decode(model, tokenizer, latents: torch.Tensor, **kwargs) -> list[str]:
    """Decode latents (N, K, D) in batches to strings."""
    texts: list[str] = []
    for start in range(0, latents.shape[0], DECODE_BATCH):
        ids = model.decode_latents(latents[start:start + DECODE_BATCH], **kwargs)
        texts += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return texts


def evaluate(model_path: str, name: str, decoding: bool) -> dict:
    started = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_pretrained(model_path, device="cpu")
    model.eval()
    training = _moses_training_set()
    test = _moses_sample("test", NUM_RECONSTRUCTION, seed=0)
    result: dict = {"model": model_path, "name": name,
                    "latent": [model.config.latent_tokens, model.config.latent_size],
                    "objective": model.config.objective, "min_log_scale": model.config.min_log_scale,
                    "latent_reduction": model.config.latent_reduction}

    result["posterior"], mu = posterior_statistics(model, tokenizer, test)
    print(name, "posterior", result["posterior"], flush=True)
    result["reconstruction"] = {k: v for k, v in reconstruction_metrics(model, tokenizer, test).items()
                                if k != "examples"}
    print(name, "reconstruction", result["reconstruction"], flush=True)

    prior = generate_smiles(model, tokenizer, NUM_PRIOR, seed=0)
    result["prior"] = {**generation_metrics(prior, training), "examples": prior[:5]}
    print(name, "prior", result["prior"], flush=True)

    generator = torch.Generator().manual_seed(0)
    flat_mu = mu.flatten(1)
    fitted = flat_mu.mean(0) + flat_mu.std(0) * torch.randn(NUM_PRIOR, flat_mu.shape[1], generator=generator)
    aggregate = decode(model, tokenizer, fitted.view(NUM_PRIOR, *mu.shape[1:]))
    result["aggregate"] = generation_metrics(aggregate, training)
    print(name, "aggregate", result["aggregate"], flush=True)

    around = {}
    seeds = test[:NUM_SEEDS]
    for radius in RADII:
        samples_by_seed = [generate_smiles(model, tokenizer, SAMPLES_PER_SEED, around=s, radius=radius, seed=0)
                           for s in seeds]
        samples = [t for per_seed in samples_by_seed for t in per_seed]
        tanimoto = [mean_tanimoto_to_seed(valid, s) for s, per_seed in zip(seeds, samples_by_seed)
                    if (valid := [t for t in per_seed if canonicalize(t) is not None])]
        same = [canonicalize(t) == canonicalize(s) for s, per_seed in zip(seeds, samples_by_seed) for t in per_seed]
        around[str(radius)] = {**generation_metrics(samples, training),
                               "same_as_seed": float(np.mean(same)),
                               "tanimoto": float(np.mean(tanimoto)) if tanimoto else float("nan")}
        print(name, "around", radius, around[str(radius)], flush=True)
    result["around"] = around

    if decoding:
        result["decoding"] = {}
        shape = (NUM_PRIOR, model.config.latent_tokens, model.config.latent_size)
        for label, kwargs in DECODINGS.items():
            torch.manual_seed(0)
            latents = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            texts = decode(model, tokenizer, latents, **kwargs)
            result["decoding"][label] = {"validity": validity(texts)}
            print(name, "decoding", label, result["decoding"][label], flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write(HERE / f"{name}.json", json.dumps(result, indent=2) + "\n")
    return result


def fmt(value, percent: bool = True) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * value:.1f}" if percent else f"{value:.3g}"


def table() -> str:
    rows = [json.loads(p.read_text()) for p in sorted(HERE.glob("*.json"))]
    head = ("| variant | prior valid % | prior uniq % | prior novel % | aggregate-fit valid % | "
            + " | ".join(f"r={r} valid / novel %" for r in RADII)
            + " | exact recon % | token acc % | sigma mean | at floor % | mu dim std | mu norm / prior norm |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        p, post, rec = r["prior"], r["posterior"], r["reconstruction"]
        cells = [r["name"], fmt(p["validity"]), fmt(p["uniqueness"]), fmt(p.get("novelty")),
                 fmt(r["aggregate"]["validity"])]
        cells += [f"{fmt(r['around'][str(x)]['validity'])} / {fmt(r['around'][str(x)].get('novelty'))}"
                  for x in RADII]
        cells += [fmt(rec["exact"]), fmt(rec["token_accuracy"]), fmt(post["sigma_mean"], False),
                  fmt(post["fraction_at_floor"]), fmt(post["mu_dim_std"], False),
                  f"{post['mu_norm']:.2f} / {post['prior_norm']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    decoding = [r for r in rows if "decoding" in r]
    if decoding:
        labels = list(DECODINGS)
        lines += ["", "| variant | greedy | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
        for r in decoding:
            lines.append(f"| {r['name']} | {fmt(r['prior']['validity'])} | "
                         + " | ".join(fmt(r["decoding"][k]["validity"]) for k in labels) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate")
    ev.add_argument("--model", required=True, help="a model folder or a shipped model name")
    ev.add_argument("--name", required=True, help="the variant's name (the JSON file's stem)")
    ev.add_argument("--decoding", action="store_true", help="also measure sampling and beam decoding")
    sub.add_parser("table")
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        evaluate(args.model, args.name, args.decoding)
    else:
        sys.stdout.write(table())


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
