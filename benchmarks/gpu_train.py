"""bf16 training throughput and MFU of the `molmim-base` recipe on one GPU (written for an NVIDIA H200).

    bash benchmarks/gpu_h200.sh                        # on the GPU machine, < 5 minutes
    bash benchmarks/gpu_h200.sh --device cpu --quick   # smoke test anywhere (tiny batch, a few steps)
    python -m cmim_hf.benchmarks.gpu_train --help      # the same, where cmim_hf is installed

A training step is what the training loop does with `bf16: true` (Accelerate's bf16 mixed precision): fp32
weights, forward under `torch.autocast(bfloat16)`, backward, gradient clipping at 1.0, AdamW (fused on CUDA).
Batches are real MOSES SMILES, length-grouped and padded to a multiple of 8 as the collator does (random tokens
with MOSES-like lengths if the data package is missing). MFU = analytic matmul FLOPs (`flops.py`) per second,
against (a) the GPU's bf16 dense peak from its data sheet and (b) a bf16 matmul peak measured here.
Writes `gpu_results.json` (`gpu_results_compiled.json` with --compile) to --output_dir and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from cmim_hf.checks import ArgumentParser

from .flops import cmim_training_step_flops, decoder_cross_attention_queries
from .measure import read_moses_smiles
from .suite import length_grouped_batches, load_recipe_geometry

# bf16 dense (no sparsity) tensor-core peaks from NVIDIA's data sheets, TFLOP/s.
BF16_DENSE_PEAK_TFLOPS = {"H200 NVL": 835.5, "H200": 989.4, "H100 NVL": 835.5, "H100 PCIe": 756.0, "H100": 989.4,
                          "A100": 312.0}


def datasheet_peak(device_name: str) -> float | None:
    for key, value in BF16_DENSE_PEAK_TFLOPS.items():  # most specific names first
        if key in device_name:
            return value * 1e12
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_matmul_peak(device: torch.device, size: int, repeats: int) -> float:
    """FLOP/s of the fastest of `repeats` bf16 (size x size) @ (size x size) products."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    out = torch.empty(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b, out=out)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def synthetic_batches(tokenizer, batch_size: int, count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random token batches with MOSES-like lengths (13-54 tokens, median ~36), when MOSES is not installed."""
    from cmim_hf.modeling import labels_from_input_ids
    from cmim_hf.tokenization import pad_sequences

    rng = random.Random(seed)
    batches = []
    for _ in range(count):
        lengths = sorted(min(56, max(15, int(rng.gauss(38, 5)))) for _ in range(batch_size))
        rows = [[tokenizer.bos_token_id, *torch.randint(5, 30, (n,))[1:-1].tolist(), tokenizer.eos_token_id]
                for n in lengths]
        ids, mask = pad_sequences(rows, tokenizer.pad_token_id)
        batches.append({"input_ids": ids, "attention_mask": mask,
                        "labels": labels_from_input_ids(ids, mask, tokenizer.bos_token_id).contiguous()})
    return batches


def run(args: argparse.Namespace) -> dict:
    from cmim_hf import default_smiles_tokenizer
    from cmim_hf.modeling import CMIMConfig, CMIMForConditionalGeneration

    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    notes = []
    geometry, recipe_batch = load_recipe_geometry(args.recipe, notes)
    batch_size = args.batch_size or recipe_batch
    tokenizer = default_smiles_tokenizer(model_max_length=geometry.get("max_position_embeddings", 128))
    try:
        smiles = read_moses_smiles(50 * batch_size)
        batches = length_grouped_batches(smiles, tokenizer, batch_size, args.batches, tokenizer.bos_token_id)
        data = "MOSES train, length-grouped"
    except (ModuleNotFoundError, FileNotFoundError) as error:
        batches = synthetic_batches(tokenizer, batch_size, args.batches)
        data = "synthetic (MOSES not installed)"
        notes.append(f"MOSES unavailable ({error}); random tokens with MOSES-like lengths")
    batches = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in batches]

    torch.manual_seed(0)
    config = CMIMConfig(vocab_size=len(tokenizer), **geometry)
    model = CMIMForConditionalGeneration(config).to(device).train()
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=fused)
    if args.compile:
        model = torch.compile(model)

    def step(batch) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    peak_measured = measured_matmul_peak(device, args.matmul_size, args.matmul_repeats)
    for i in range(args.warmup):
        step(batches[i % len(batches)])
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    queries = decoder_cross_attention_queries(model)
    # Counted before timing: reading a count off the GPU inside the loop would synchronize every step.
    batch_tokens = [int(b["attention_mask"].sum()) for b in batches]
    batch_flops = [cmim_training_step_flops(config, *b["input_ids"].shape, b["labels"].shape[1],
                                            cross_attention_queries=queries) for b in batches]
    steps, tokens, flops = 0, 0, 0
    start = time.perf_counter()
    while steps < args.steps and (time.perf_counter() - start) < args.time_budget_s:
        i = steps % len(batches)
        step(batches[i])
        steps += 1
        tokens += batch_tokens[i]
        flops += batch_flops[i]
    synchronize(device)
    elapsed = time.perf_counter() - start
    achieved = flops / elapsed
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak_sheet = args.peak_tflops * 1e12 if args.peak_tflops else datasheet_peak(name)
    result = {
        "device": name,
        "recipe": args.recipe,
        "geometry": geometry,
        "params": sum(p.numel() for p in model.parameters()),
        "precision": "bf16 autocast, fp32 weights (Accelerate mixed_precision=bf16)",
        "compile": bool(args.compile),
        "data": data,
        "batch_size": batch_size,
        "batch_shapes": [list(b["input_ids"].shape) for b in batches],
        "steps_timed": steps,
        "warmup_steps": args.warmup,
        "seconds": elapsed,
        "step_ms": 1000 * elapsed / max(steps, 1),
        "tokens_per_s": tokens / elapsed,
        "samples_per_s": steps * batch_size / elapsed,
        "achieved_tflops": achieved / 1e12,
        "matmul_peak_measured_tflops": peak_measured / 1e12,
        "matmul_size": args.matmul_size,
        "peak_datasheet_tflops": peak_sheet / 1e12 if peak_sheet else None,
        "mfu_vs_measured_matmul": achieved / peak_measured,
        "mfu_vs_datasheet": achieved / peak_sheet if peak_sheet else None,
        "max_memory_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "total_seconds": time.perf_counter() - started,
        "notes": notes,
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # A compiled run writes next to, not over, the eager one: both come from the same short GPU session.
    name = "gpu_results_compiled.json" if args.compile else "gpu_results.json"
    (output_dir / name).write_text(json.dumps(result, indent=2) + "\n")
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m cmim_hf.benchmarks.gpu_train", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny batch and a few steps (a smoke test)")
    parser.add_argument("--recipe", default="molmim-base")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the recipe's (256 for molmim-base)")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches cycled through")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (at most; see --time_budget_s)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--time_budget_s", type=float, default=120.0, help="stop timing steps after this long")
    parser.add_argument("--matmul_size", type=int, default=8192)
    parser.add_argument("--matmul_repeats", type=int, default=20)
    parser.add_argument("--peak_tflops", type=float, default=None, help="override the data-sheet bf16 dense peak")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--output_dir", default="benchmarks")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size = args.batch_size or 4
        args.batches, args.steps, args.warmup = 1, 2, 1
        args.matmul_size, args.matmul_repeats = 512, 3
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_train: CUDA is not available; use --device cpu --quick for a smoke test", file=sys.stderr)
        return 2
    result = run(args)
    sheet = result["mfu_vs_datasheet"]
    print(f"{result['device']}: {result['recipe']} bf16, batch {result['batch_size']}, {result['steps_timed']} steps: "
          f"{result['step_ms']:.1f} ms/step, {result['tokens_per_s']:,.0f} tokens/s, "
          f"{result['achieved_tflops']:.3g} TFLOP/s; MFU {result['mfu_vs_measured_matmul']:.1%} of the measured "
          f"bf16 matmul peak ({result['matmul_peak_measured_tflops']:.3g} TFLOP/s)"
          + (f", {sheet:.1%} of the data-sheet bf16 dense peak ({result['peak_datasheet_tflops']:.4g} TFLOP/s)"
             if sheet else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
