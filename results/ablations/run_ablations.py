"""Measure the trained variants of the issue-22 ablations in two steps, then tabulate them.

    python results/ablations/run_ablations.py decode --model RUN/final --name baseline [--decoding]
    python results/ablations/run_ablations.py score --name baseline     # needs RDKit and MOSES train
    python results/ablations/run_ablations.py table                     # results/ablations/*.json -> table

`decode` (torch only, no RDKit: it runs on a GPU machine too) writes decoded/<name>.json.gz, every string a model
decodes for the measurements below, plus what needs the model itself (token accuracy, posterior statistics).
`score` turns those strings into results/ablations/<name>.json with RDKit:
  - prior: validity / uniqueness / novelty of 1000 greedy decodes of z ~ N(0, I) (`generate_smiles`);
  - aggregate: the same for 1000 z drawn from a diagonal Gaussian fitted to the aggregate posterior (per-dim
    mean and std of mu over the 512 test molecules): is the prior merely at the wrong place / scale?
  - around: mu(x) + N(0, r^2 I) around 50 MOSES test molecules, 10 samples each, at each radius r: validity,
    uniqueness, novelty against MOSES train, fraction equal to the seed, mean ECFP4 Tanimoto to the seed;
  - reconstruction: exact greedy reconstruction (raw and canonical) and teacher-forced token accuracy of 512
    MOSES test molecules (z = mu; `greedy_reconstructions`, `count_reconstructed_tokens`);
  - posterior: q(z|x) over those 512 molecules: mean sigma, fraction of dims at the sigma floor, per-dim std of
    mu (mean over dims), mean ||mu|| against sqrt(K*D), the norm of a prior sample;
  - decoding (with --decoding): prior validity of the same 1000 latents under other decoding rules
    (multinomial sampling at temperatures 0.5 and 1.0, beam search of width 5).
All draws are seeded (seed 0); the molecules are a fixed seeded sample of MOSES test (`load_named_dataset`,
seed 0, the sample `cmim-hf evaluate` uses).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DECODED = HERE / "decoded"
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


def test_molecules() -> list[str]:
    from cmim_hf.data import load_named_dataset

    return list(load_named_dataset("moses", split="test", max_samples=NUM_RECONSTRUCTION, seed=0)["text"])


@torch.no_grad()
def decode_strings(model, tokenizer, latents: torch.Tensor, **kwargs) -> list[str]:
    """Decode latents (N, K, D) in batches to strings."""
    texts: list[str] = []
    for start in range(0, latents.shape[0], DECODE_BATCH):
        ids = model.decode_latents(latents[start:start + DECODE_BATCH], **kwargs)
        texts += tokenizer.batch_decode(ids, skip_special_tokens=True)
    return texts


@torch.no_grad()
def decode(model_path: str, name: str, decoding: bool, device: str, quick: bool = False) -> dict:
    """Everything the model decodes for the measurements, written to decoded/<name>.json.gz. `quick`: a handful of
    each, to check the pipeline end to end (a dry run), not to measure."""
    global NUM_PRIOR, NUM_RECONSTRUCTION, NUM_SEEDS, SAMPLES_PER_SEED
    if quick:
        NUM_PRIOR, NUM_RECONSTRUCTION, NUM_SEEDS, SAMPLES_PER_SEED = 8, 8, 2, 2
    from cmim_hf.embeddings import generate_smiles, load_pretrained, max_input_length
    from cmim_hf.evaluation.reconstruction import count_reconstructed_tokens, greedy_reconstructions

    started = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_pretrained(model_path, device=device)
    model.eval()
    test = test_molecules()
    out: dict = {"model": model_path, "name": name, "test": test,
                 "config": {k: getattr(model.config, k) for k in (
                     "latent_tokens", "latent_size", "objective", "min_log_scale", "latent_reduction", "vae_beta",
                     "encoder_hidden_size", "encoder_layers", "decoder_layers", "max_position_embeddings")}}
    means, log_scales, reconstructions, correct, total = [], [], [], 0, 0
    for start in range(0, len(test), 128):
        batch = tokenizer(test[start:start + 128], padding=True, truncation=True,
                          max_length=max_input_length(model, tokenizer), return_tensors="pt").to(model.device)
        mean, log_scale = model.encode(batch["input_ids"], batch["attention_mask"])
        means.append(mean.float().cpu())
        log_scales.append(log_scale.float().cpu())
        hits, real = count_reconstructed_tokens(model, batch["input_ids"], batch["attention_mask"])
        correct, total = correct + int(hits), total + int(real)
        reconstructions += greedy_reconstructions(model, tokenizer, batch["input_ids"], batch["attention_mask"])
    mu, log_sigma = torch.cat(means), torch.cat(log_scales)  # (N, K, D)
    floor, flat = model.config.min_log_scale, mu.flatten(1)
    out["posterior"] = {
        "sigma_mean": float(log_sigma.exp().mean()),
        "sigma_floor": math.exp(floor),
        "fraction_at_floor": float((log_sigma <= floor + 1e-4).float().mean()),
        "mu_dim_std": float(flat.std(dim=0).mean()),
        "mu_dim_mean_abs": float(flat.mean(dim=0).abs().mean()),
        "mu_norm": float(flat.norm(dim=1).mean()),
        "prior_norm": math.sqrt(flat.shape[1]),
    }
    out["token_accuracy"] = correct / max(total, 1)
    out["reconstructions"] = reconstructions
    out["prior"] = generate_smiles(model, tokenizer, NUM_PRIOR, seed=0)
    generator = torch.Generator().manual_seed(0)
    fitted = flat.mean(0) + flat.std(0) * torch.randn(NUM_PRIOR, flat.shape[1], generator=generator)
    out["aggregate"] = decode_strings(model, tokenizer, fitted.view(NUM_PRIOR, *mu.shape[1:]))
    seeds = test[:NUM_SEEDS]
    out["seeds"] = seeds
    out["around"] = {str(r): [generate_smiles(model, tokenizer, SAMPLES_PER_SEED, around=s, radius=r, seed=0)
                              for s in seeds] for r in RADII}
    if decoding:
        shape = (NUM_PRIOR, model.config.latent_tokens, model.config.latent_size)
        out["decoding"] = {}
        for label, kwargs in DECODINGS.items():
            torch.manual_seed(0)
            latents = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            out["decoding"][label] = decode_strings(model, tokenizer, latents, **kwargs)
    out["decode_seconds"] = round(time.perf_counter() - started, 1)
    DECODED.mkdir(exist_ok=True)
    with gzip.open(DECODED / f"{name}.json.gz", "wt") as handle:  # a few MB of strings per model, 5x smaller
        handle.write(json.dumps(out) + "\n")
    print(name, "decoded in", out["decode_seconds"], "s; posterior", out["posterior"], flush=True)
    return out


def score(name: str) -> dict:
    """RDKit metrics of decoded/<name>.json.gz, written to <name>.json."""
    from cmim_hf.chem import canonicalize
    from cmim_hf.evaluation.metrics import exact_match_rate, generation_metrics, mean_tanimoto_to_seed, validity
    from cmim_hf.evaluation.model_eval import _moses_training_set
    from cmim_hf.saving import atomic_write

    with gzip.open(DECODED / f"{name}.json.gz", "rt") as handle:
        d = json.load(handle)
    training = _moses_training_set()
    result = {"name": name, "model": d["model"], "config": d["config"], "posterior": d["posterior"],
              "decode_seconds": d["decode_seconds"]}
    result["reconstruction"] = {
        "n": len(d["test"]), "token_accuracy": d["token_accuracy"],
        "exact": exact_match_rate(d["test"], d["reconstructions"]),
        "exact_canonical": exact_match_rate(d["test"], d["reconstructions"], canonical=True)}
    result["prior"] = {**generation_metrics(d["prior"], training), "examples": d["prior"][:5]}
    result["aggregate"] = generation_metrics(d["aggregate"], training)
    around = {}
    for radius, by_seed in d["around"].items():
        samples = [t for per_seed in by_seed for t in per_seed]
        tanimoto = [mean_tanimoto_to_seed(valid, s) for s, per_seed in zip(d["seeds"], by_seed)
                    if (valid := [t for t in per_seed if canonicalize(t) is not None])]
        same = [canonicalize(t) == canonicalize(s) for s, per_seed in zip(d["seeds"], by_seed) for t in per_seed]
        around[radius] = {**generation_metrics(samples, training), "same_as_seed": float(np.mean(same)),
                          "tanimoto": float(np.mean(tanimoto)) if tanimoto else float("nan")}
    result["around"] = around
    if "decoding" in d:
        result["decoding"] = {label: {"validity": validity(texts)} for label, texts in d["decoding"].items()}
    atomic_write(HERE / f"{name}.json", json.dumps(result, indent=2) + "\n")
    print(name, {k: result[k] for k in ("reconstruction", "aggregate")}, "prior", result["prior"]["validity"])
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
    dec = sub.add_parser("decode")
    dec.add_argument("--model", required=True, help="a model folder or a shipped model name")
    dec.add_argument("--name", required=True, help="the variant's name (the JSON files' stem)")
    dec.add_argument("--decoding", action="store_true", help="also decode with sampling and beam search")
    dec.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    dec.add_argument("--quick", action="store_true", help="a handful of samples: a dry run of the pipeline")
    sc = sub.add_parser("score")
    sc.add_argument("--name", required=True, nargs="+", help="variants decoded in decoded/<name>.json.gz")
    sub.add_parser("table")
    args = parser.parse_args(argv)
    if args.command == "decode":
        decode(args.model, args.name, args.decoding, args.device, args.quick)
    elif args.command == "score":
        for name in args.name:
            score(name)
    else:
        sys.stdout.write(table())


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
