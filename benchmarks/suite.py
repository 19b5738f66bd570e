"""The benchmark suite: `cmim-hf benchmark [--quick] [--output_dir DIR]`.

Every number that matters is a ratio against a reference measured in the same run, back to back, in
interleaved rounds (see `measure.py`), because the machines are shared and noisy:

  train_vs_bart          training tokens/s of cMIM over an equal-geometry `BartForConditionalGeneration`
                         (same widths, layers, heads, FFN, vocabulary, and the same batches of real MOSES SMILES)
  mfu_small              model FLOPs utilisation of the `small` recipe's training step against this machine's
                         fp32 matmul peak, measured in the same rounds (FLOPs: `flops.py`)
  pipeline_vs_embed      molecules/s of `pipeline("feature-extraction", batch_size=64)` over batched `model.embed`
  embed_vs_rdkit2d       molecules/s of `model.embed` over RDKit 2D descriptors (all `CalcMolDescriptors`)
                         given the same cores (one RDKit process per torch thread, assumed to scale perfectly)
  tokenizer_vs_python    molecules/s of the fast tokenizer over a pure-Python regex tokenizer, both through a
                         batched `datasets.map`
  generate_cache_speedup molecules/s of greedy `generate` with the KV cache over `use_cache=False`, 40 tokens each

plus the absolute numbers behind them, peak memory, the preparation time of MOSES, and the scaling of a
training step with batch size and length (with the share of the O(B^2) contrastive term). `results.json`,
`results.md` and `scaling.png` go to `--output_dir`.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml

from .flops import (bart_training_step_flops, cmim_forward_flops, cmim_training_step_flops,
                    decoder_cross_attention_queries)
from .onnx_speed import bench_onnx, md_onnx
from .library import bench_library, md_library
from .measure import (_quiet_stderr, interleaved, machine_info, matmul_peak_flops, median, paired_ratio,
                      read_moses_smiles, rss_bytes, tensor_memory_peak, timed, torch_threads)
from .search import bench_search, md_search

__all__ = ["RATIO_KEYS", "TARGETS", "BenchmarkSettings", "load_recipe_geometry", "run_benchmarks",
           "write_markdown"]

# The headline ratios (top-level keys of results.json) and the targets of the performance issue.
TARGETS: dict[str, tuple[float, str]] = {
    "train_vs_bart": (1.3, "training tokens/s, cMIM `small` / equal-geometry BART"),
    "mfu_small": (0.35, "model FLOPs utilisation of the `small` training step vs measured fp32 matmul peak"),
    "pipeline_vs_embed": (0.9, "molecules/s, feature-extraction pipeline (batch_size=64) / batched `model.embed`"),
    "embed_vs_rdkit2d": (10.0, "molecules/s, `model.embed` / RDKit 2D descriptors on the same cores"),
    "tokenizer_vs_python": (5.0, "molecules/s, fast tokenizer / pure-Python regex tokenizer, batched `datasets.map`"),
    "generate_cache_speedup": (3.0, "molecules/s, greedy `generate` with KV cache / `use_cache=False`, 40 tokens"),
}
RATIO_KEYS = tuple(TARGETS)

# Used only when a recipe file is missing (the recipes live in training/recipes/, read as data).
_PLACEHOLDER_GEOMETRY = {
    "tiny-cpu": dict(encoder_hidden_size=128, decoder_hidden_size=128, encoder_layers=2, decoder_layers=2,
                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512,
                     latent_tokens=1, latent_size=64, max_position_embeddings=64, dropout=0.0),
    "small": dict(encoder_hidden_size=256, decoder_hidden_size=256, encoder_layers=5, decoder_layers=5,
                  encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=1024, decoder_ffn_dim=1024,
                  latent_tokens=1, latent_size=128, max_position_embeddings=64, dropout=0.0),
}
_PLACEHOLDER_BATCH = {"tiny-cpu": 64, "small": 128, "molmim-base": 256}


@dataclass
class BenchmarkSettings:
    """Sizes of one run. `full()` is the committed run; `quick()` takes well under a minute."""

    quick: bool
    train_geometries: tuple[str, ...] = ("tiny-cpu", "small")
    train_batch_size: int | None = None  # None: the recipe's per_device_train_batch_size
    train_batches: int = 2  # distinct length-grouped batches, each stepped once per round
    train_rounds: int = 5
    warmup_steps: int = 2
    matmul_size: int = 2048
    embed_geometry: str = "small"
    embed_batch_size: int = 64
    embed_molecules: int = 512  # per round (a different slice of MOSES each round)
    embed_rounds: int = 5
    tokenize_molecules: int = 100_000
    tokenize_rounds: int = 3
    prepare_max_samples: int | None = None  # None: the full 1.58M-row MOSES train split
    generate_geometry: str = "small"
    generate_batch_size: int = 64
    generate_tokens: int = 40
    generate_rounds: int = 3
    scaling_geometry: str = "small"
    scaling_batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)
    scaling_fixed_length: int = 32
    scaling_lengths: tuple[int, ...] = (8, 16, 32, 64)
    scaling_fixed_batch: int = 32
    scaling_rounds: int = 5
    contrastive_batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    single_key_geometry: str = "molmim-base"  # K=1: exact single-key cross-attention vs full attention
    single_key_batch_size: int = 16
    compile_geometries: tuple[str, ...] = ("tiny-cpu", "small")  # torch.compile vs eager training step
    compile_batches: int = 3  # of different lengths, so the dynamic-shape recompile is part of the compile time
    onnx_geometries: tuple[str, ...] = ("tiny", "small")  # shipped checkpoints' geometries (onnx_speed.CHECKPOINTS)
    profile: bool = True
    fresh_process_rss: bool = True  # peak RSS of a fresh process per geometry and model (full run only)
    threads: int | None = None  # torch intra-op threads; None: torch's default (all usable cores)
    sections: tuple[str, ...] = ("training", "bf16", "single_key", "compile", "embedding", "tokenization",
                                 "generation", "scaling", "onnx", "search", "library")
    notes: list[str] = field(default_factory=list)

    @classmethod
    def full(cls) -> "BenchmarkSettings":
        return cls(quick=False)

    @classmethod
    def quick_settings(cls) -> "BenchmarkSettings":
        return cls(quick=True, train_batch_size=8, train_batches=1, train_rounds=3, warmup_steps=1, matmul_size=512,
                   embed_molecules=64, embed_rounds=2, tokenize_molecules=2000, tokenize_rounds=2,
                   prepare_max_samples=2000, generate_batch_size=4, generate_rounds=2,
                   scaling_geometry="tiny-cpu", scaling_batch_sizes=(2, 4, 8), scaling_fixed_length=16,
                   scaling_lengths=(8, 16, 32), scaling_fixed_batch=4, scaling_rounds=2,
                   contrastive_batch_sizes=(2, 4, 8, 64, 256), single_key_geometry="tiny-cpu",
                   single_key_batch_size=4, compile_geometries=("tiny-cpu",), compile_batches=1, onnx_geometries=("tiny",), profile=False,
                   fresh_process_rss=False, threads=1)


# ---------------------------------------------------------------------------------------------------------
# Inputs: recipes, molecules, batches
# ---------------------------------------------------------------------------------------------------------


def _recipes_dir() -> Path:
    """training/recipes, found without importing cmim_hf.training (the recipes are read as data)."""
    try:
        spec = importlib.util.find_spec("cmim_hf.training")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / "recipes"
    return Path(__file__).resolve().parents[1] / "training" / "recipes"


def load_recipe_geometry(name: str, notes: list[str] | None = None) -> tuple[dict, int]:
    """The `model:` section of training/recipes/<name>.yaml and its per-device batch size."""
    path = _recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        if name not in _PLACEHOLDER_GEOMETRY:
            raise FileNotFoundError(f"recipe {name!r} not found at {path}")
        if notes is not None:
            notes.append(f"recipe {path} missing: used a placeholder geometry for {name!r}")
        return dict(_PLACEHOLDER_GEOMETRY[name]), _PLACEHOLDER_BATCH[name]
    recipe = yaml.safe_load(path.read_text())
    model = dict(recipe.get("model") or {})
    batch = int((recipe.get("training") or {}).get("per_device_train_batch_size", _PLACEHOLDER_BATCH.get(name, 64)))
    return model, batch


def length_grouped_batches(smiles: Sequence[str], tokenizer, batch_size: int, count: int,
                           decoder_start_token_id: int) -> list[dict[str, torch.Tensor]]:
    """`count` training batches as the trainer builds them (length-grouped mega-batch of 50 batches, padded to a
    multiple of 8, labels = the input without <bos>), taken at evenly spaced length quantiles."""
    from cmim_hf.modeling import labels_from_input_ids
    from cmim_hf.tokenization import pad_sequences

    rows = tokenizer(list(smiles[: 50 * batch_size]), add_special_tokens=True)["input_ids"]
    rows.sort(key=len)
    chunks = [rows[i:i + batch_size] for i in range(0, len(rows) - batch_size + 1, batch_size)]
    picks = [chunks[int((j + 0.5) * len(chunks) / count)] for j in range(count)]
    batches = []
    for chunk in picks:
        ids, mask = pad_sequences(chunk, tokenizer.pad_token_id)
        labels = labels_from_input_ids(ids, mask, decoder_start_token_id).contiguous()
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return batches


def fixed_shape_batch(token_stream: list[int], batch_size: int, length: int, tokenizer, offset: int = 0
                      ) -> dict[str, torch.Tensor]:
    """A (batch_size, length) batch without padding, cut from a stream of real MOSES tokens: <bos> + tokens +
    <eos>, so the time of a step depends on the shape alone."""
    from cmim_hf.modeling import labels_from_input_ids

    body = length - 2
    rows = []
    for i in range(batch_size):
        start = (offset + i * body) % max(len(token_stream) - body, 1)
        rows.append([tokenizer.bos_token_id, *token_stream[start:start + body], tokenizer.eos_token_id])
    ids = torch.tensor(rows, dtype=torch.long)
    mask = torch.ones_like(ids)
    labels = labels_from_input_ids(ids, mask, tokenizer.bos_token_id).contiguous()
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------


def build_cmim(geometry: dict, vocab_size: int, seed: int = 0):
    from cmim_hf.modeling import CMIMConfig, CMIMForConditionalGeneration

    torch.manual_seed(seed)
    return CMIMForConditionalGeneration(CMIMConfig(vocab_size=vocab_size, **geometry))


def build_bart(geometry: dict, vocab_size: int, tokenizer, seed: int = 0):
    """`BartForConditionalGeneration` with the cMIM geometry's widths, layers, heads, FFN and vocabulary."""
    from transformers import BartConfig, BartForConditionalGeneration

    if geometry["encoder_hidden_size"] != geometry["decoder_hidden_size"]:
        raise ValueError("BART needs equal encoder and decoder widths")
    dropout = geometry.get("dropout", 0.1)
    config = BartConfig(
        vocab_size=vocab_size, d_model=geometry["encoder_hidden_size"],
        encoder_layers=geometry["encoder_layers"], decoder_layers=geometry["decoder_layers"],
        encoder_attention_heads=geometry["encoder_attention_heads"],
        decoder_attention_heads=geometry["decoder_attention_heads"],
        encoder_ffn_dim=geometry["encoder_ffn_dim"], decoder_ffn_dim=geometry["decoder_ffn_dim"],
        max_position_embeddings=geometry.get("max_position_embeddings", 128),
        dropout=dropout, attention_dropout=geometry.get("attention_dropout", 0.0), activation_dropout=0.0,
        activation_function=geometry.get("activation_function", "gelu"),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.bos_token_id, forced_eos_token_id=None,
    )
    torch.manual_seed(seed)
    return BartForConditionalGeneration(config)


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


class Trainer:
    """One model + AdamW; `step(batch)` is a full training step as the training loop does it: forward with
    labels, backward, gradient clipping at 1.0, AdamW step, zero_grad. `bf16=True` runs the forward under
    `torch.autocast(bfloat16)` with fp32 weights, as `cmim-hf train --bf16 true` (Accelerate) does."""

    def __init__(self, model, lr: float = 1e-4, bf16: bool = False):
        self.model = model.train()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        self.bf16 = bf16

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def steps(self, batches) -> Callable[[], None]:
        def run() -> None:
            for batch in batches:
                self.step(batch)

        return run


def recipe_batches(settings: BenchmarkSettings, tokenizer, smiles: list[str], name: str, count: int
                   ) -> tuple[dict, int, list[dict[str, torch.Tensor]]]:
    """The geometry of recipe `name`, its batch size (or the settings' override) and `count` training batches."""
    geometry, recipe_batch = load_recipe_geometry(name, settings.notes)
    batch_size = settings.train_batch_size or recipe_batch
    return geometry, batch_size, length_grouped_batches(smiles, tokenizer, batch_size, count, tokenizer.bos_token_id)


def warm_up(trainers, batches, steps: int) -> None:
    """`steps` training steps of each trainer on the first batch, before anything is timed."""
    for _ in range(steps):
        for trainer in trainers:
            trainer.steps(batches[:1])()


def _real_tokens(batches) -> int:
    return sum(int(b["attention_mask"].sum()) for b in batches)


def _paired_timing(batches, times: dict[str, list[float]], candidate: str, reference: str, ratio_key: str,
                   rounds: int) -> dict:
    """What every section that times two training steps on the same batches reports: the batch shapes, real
    tokens per second of each, `ratio_key` = how many times faster `candidate` is (paired over rounds), and
    the rounds."""
    real_tokens = _real_tokens(batches)
    return {
        "batch_shapes": [list(b["input_ids"].shape) for b in batches],
        f"{candidate}_tokens_per_s": real_tokens / median(times[candidate]),
        f"{reference}_tokens_per_s": real_tokens / median(times[reference]),
        ratio_key: paired_ratio(times[candidate], times[reference]),
        "rounds": rounds,
        "round_times_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
    }


def _mb(n_bytes: int) -> float:
    return round(n_bytes / 2**20, 1)


def _step_memory(trainer: Trainer, batch) -> dict:
    """Peak tensor memory of one step (activations, gradients, optimizer temporaries) and the process RSS."""
    peak = tensor_memory_peak(lambda: trainer.step(batch))
    return {"step_tensor_peak_mb": _mb(peak), "process_rss_mb": _mb(rss_bytes())}


_FRESH_PROCESS_RSS = """
import json, resource, sys
import torch
torch.set_num_threads({threads})
from {package}.suite import Trainer, build_bart, build_cmim, length_grouped_batches, load_recipe_geometry
from {package}.measure import read_moses_smiles, rss_bytes
from cmim_hf import default_smiles_tokenizer
tokenizer = default_smiles_tokenizer(model_max_length=64)
geometry, recipe_batch = load_recipe_geometry({geometry!r})
batch_size = {batch_size} or recipe_batch
batches = length_grouped_batches(read_moses_smiles(50 * batch_size), tokenizer, batch_size, {batches}, 1)
model = build_cmim(geometry, len(tokenizer)) if {kind!r} == "cmim" else build_bart(geometry, len(tokenizer), tokenizer)
trainer = Trainer(model)
before = rss_bytes()
for _ in range(2):
    for batch in batches:
        trainer.step(batch)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
try:
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"rss_before_steps_mb": before / 2**20, "peak_rss_mb": peak / 2**20}}))
"""


def fresh_process_peak_rss(geometry: str, kind: str, batch_size: int | None, batches: int, threads: int) -> dict:
    """Peak RSS of a fresh Python process that builds one model (`kind` "cmim" or "bart") and trains it on the
    benchmark's batches for two rounds: what a training run on this geometry needs, allocator included."""
    code = _FRESH_PROCESS_RSS.format(threads=threads, package=__package__, geometry=geometry, batch_size=batch_size,
                                     batches=batches, kind=kind)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"fresh-process RSS measurement failed:\n{done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: round(v, 1) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------------


def bench_training(settings: BenchmarkSettings, tokenizer, smiles: list[str]) -> dict:
    """Training tokens/s of cMIM and equal-geometry BART on the same batches, MFU against the matmul peak."""
    results = {}
    peak = matmul_peak_flops(settings.matmul_size)
    mm_flops = 2 * settings.matmul_size ** 3
    for name in settings.train_geometries:
        geometry, batch_size, batches = recipe_batches(settings, tokenizer, smiles, name, settings.train_batches)
        cmim = Trainer(build_cmim(geometry, len(tokenizer)))
        bart = Trainer(build_bart(geometry, len(tokenizer), tokenizer))
        warm_up((cmim, bart), batches, settings.warmup_steps)
        times = interleaved({"cmim": cmim.steps(batches), "bart": bart.steps(batches), "matmul": peak},
                            settings.train_rounds)
        real_tokens = _real_tokens(batches)
        padded_tokens = sum(b["input_ids"].numel() for b in batches)
        queries = decoder_cross_attention_queries(cmim.model)
        cmim_flops = sum(cmim_training_step_flops(cmim.model.config, *b["input_ids"].shape, b["labels"].shape[1],
                                                  cross_attention_queries=queries) for b in batches)
        bart_flops = sum(bart_training_step_flops(bart.model.config, *b["input_ids"].shape, b["labels"].shape[1])
                         for b in batches)
        mfu_cmim = [cmim_flops / t / (mm_flops / p) for t, p in zip(times["cmim"], times["matmul"])]
        mfu_bart = [bart_flops / t / (mm_flops / p) for t, p in zip(times["bart"], times["matmul"])]
        forward = cmim_forward_flops(cmim.model.config, *batches[0]["input_ids"].shape,
                                     batches[0]["labels"].shape[1], cross_attention_queries=queries)
        results[name] = {
            "geometry": geometry,
            "batch_size": batch_size,
            "batches": len(batches),
            **_paired_timing(batches, times, "cmim", "bart", "ratio_vs_bart", settings.train_rounds),
            "real_tokens_per_round": real_tokens,
            "padding_share": round(1 - real_tokens / padded_tokens, 4),
            "params_cmim": _n_params(cmim.model),
            "params_bart": _n_params(bart.model),
            "cmim_step_s": median(times["cmim"]) / len(batches),
            "bart_step_s": median(times["bart"]) / len(batches),
            "cmim_train_flops_per_round": cmim_flops,
            "bart_train_flops_per_round": bart_flops,
            "flop_ratio_bart_over_cmim": bart_flops / cmim_flops,
            "cmim_forward_flops_breakdown_first_batch": asdict(forward),
            "cmim_achieved_gflops": cmim_flops / median(times["cmim"]) / 1e9,
            "matmul_peak_gflops": mm_flops / median(times["matmul"]) / 1e9,
            "matmul_size": settings.matmul_size,
            "mfu_cmim": median(mfu_cmim),
            "mfu_bart": median(mfu_bart),
            "memory_cmim": _step_memory(cmim, batches[-1]),
            "memory_bart": _step_memory(bart, batches[-1]),
        }
        del cmim, bart
        if settings.fresh_process_rss:
            for kind in ("cmim", "bart"):
                results[name][f"memory_{kind}"]["fresh_process"] = fresh_process_peak_rss(
                    name, kind, settings.train_batch_size, settings.train_batches, torch.get_num_threads())
    return results


def with_full_cross_attention(model):
    """A copy of a K=1 model whose decoder cross-attention is computed the general way (query projection and
    its LayerNorm, scores, softmax over the one key, out_proj at every position): the "before" of the
    single-key shortcut. Same weights where they exist, so it computes the same function."""
    from torch import nn

    from cmim_hf.modeling.modeling_cmim import CMIMAttention

    before = copy.deepcopy(model)
    config = before.config
    for i, layer in enumerate(before.model.decoder.layers):
        width = config.decoder_hidden_size
        full = CMIMAttention(config, width, config.decoder_attention_heads, is_causal=False,
                             is_cross_attention=True, layer_idx=i)
        full.kv_proj.load_state_dict(layer.cross_attn.kv_proj.state_dict())
        full.out_proj.load_state_dict(layer.cross_attn.out_proj.state_dict())
        layer.cross_attn, layer.cross_attn_norm = full, nn.LayerNorm(width)
    return before


def bench_single_key(settings: BenchmarkSettings, tokenizer, smiles: list[str]) -> dict:
    """Training step of a K=1 model with the exact single-key cross-attention against the general attention."""
    geometry, _ = load_recipe_geometry(settings.single_key_geometry, settings.notes)
    geometry = {**geometry, "latent_tokens": 1, "dropout": 0.0}
    batches = length_grouped_batches(smiles, tokenizer, settings.single_key_batch_size, settings.train_batches,
                                     tokenizer.bos_token_id)
    after = build_cmim(geometry, len(tokenizer))
    before = with_full_cross_attention(after)
    probe = batches[0]
    same = torch.allclose(after.embed(probe["input_ids"], probe["attention_mask"]),
                          before.embed(probe["input_ids"], probe["attention_mask"]), atol=1e-4)
    trainers = {"single_key": Trainer(after), "full_attention": Trainer(before)}
    warm_up(trainers.values(), batches, settings.warmup_steps)
    times = interleaved({name: trainer.steps(batches) for name, trainer in trainers.items()}, settings.train_rounds)
    flops = {queries: sum(cmim_training_step_flops(after.config, *b["input_ids"].shape, b["labels"].shape[1],
                                                   cross_attention_queries=queries) for b in batches)
             for queries in (False, True)}  # fmt: skip
    return {
        "geometry": settings.single_key_geometry,
        **_paired_timing(batches, times, "single_key", "full_attention", "single_key_speedup", settings.train_rounds),
        "params_single_key": _n_params(after),
        "params_full_attention": _n_params(before),
        "same_embeddings": bool(same),
        "flop_ratio_full_over_single_key": flops[True] / flops[False],
    }


def bench_bf16(settings: BenchmarkSettings, tokenizer, smiles: list[str]) -> dict:
    """bf16 mixed precision (autocast, fp32 weights: `cmim-hf train --bf16 true`) against fp32: the same training
    step from the same weights on the same batches, and how far the first bf16 loss is from the fp32 one."""
    results = {}
    for name in settings.train_geometries:
        geometry, _, batches = recipe_batches(settings, tokenizer, smiles, name, settings.train_batches)
        fp32 = Trainer(build_cmim(geometry, len(tokenizer)))
        bf16 = Trainer(build_cmim(geometry, len(tokenizer)), bf16=True)
        first_loss = {}  # same weights (build_cmim is seeded), same batch: the losses differ only by precision
        for key, trainer in (("fp32", fp32), ("bf16", bf16)):
            trainer.model.eval()
            torch.manual_seed(0)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=trainer.bf16):
                first_loss[key] = float(trainer.model(**batches[0]).loss)
            trainer.model.train()
        loss_fp32, loss_bf16 = first_loss["fp32"], first_loss["bf16"]
        warm_up((fp32, bf16), batches, settings.warmup_steps)
        times = interleaved({"fp32": fp32.steps(batches), "bf16": bf16.steps(batches)}, settings.train_rounds)
        results[name] = {
            **_paired_timing(batches, times, "bf16", "fp32", "bf16_vs_fp32", settings.train_rounds),
            "first_loss_fp32": loss_fp32,
            "first_loss_bf16": loss_bf16,
            "first_loss_relative_difference": abs(loss_bf16 - loss_fp32) / abs(loss_fp32),
        }
    return results


def _cxx_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU, or None."""
    import shutil

    return next((path for name in ("c++", "g++", "clang++") if (path := shutil.which(name))), None)


def bench_compile(settings: BenchmarkSettings, tokenizer, smiles: list[str]) -> dict:
    """`torch.compile` (inductor, what `cmim-hf train --torch_compile` does) against eager: the same training step
    on the same length-grouped batches of several lengths, from the same initial weights. Caches are off, so
    the first compiled round carries the whole compile (including the recompile for dynamic lengths)."""
    if settings.compile_geometries and _cxx_compiler() is None:
        settings.notes.append("no C++ compiler: torch.compile (inductor on CPU) was not measured")
        return {}
    results = {}
    for name in settings.compile_geometries:
        geometry, _, batches = recipe_batches(settings, tokenizer, smiles, name, settings.compile_batches)
        eager = Trainer(build_cmim(geometry, len(tokenizer)))
        compiled = Trainer(build_cmim(geometry, len(tokenizer)))
        torch._dynamo.reset()
        compiled.model = torch.compile(compiled.model)  # the optimizer keeps the same parameters
        with torch._inductor.config.patch(force_disable_caches=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "dynamo_pgo force disabled": that is the point
            first_compiled = timed(compiled.steps(batches))
        first_eager = timed(eager.steps(batches))
        warm_up((eager, compiled), batches, settings.warmup_steps)
        times = interleaved({"eager": eager.steps(batches), "compiled": compiled.steps(batches)},
                            settings.train_rounds)
        saved_per_round = median(times["eager"]) - median(times["compiled"])
        compile_s = first_compiled - first_eager
        results[name] = {
            **_paired_timing(batches, times, "compiled", "eager", "compiled_vs_eager", settings.train_rounds),
            "compile_s": compile_s,
            # steps after which the compile time is paid back (None: compiled steps are not faster)
            "break_even_steps": (math.ceil(compile_s / (saved_per_round / len(batches)))
                                 if saved_per_round > 0 else None),
        }
        del eager, compiled
        torch._dynamo.reset()
    return results


def _rdkit_featurizer():
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import Descriptors
    except ImportError:
        return None
    RDLogger.DisableLog("rdApp.*")

    def featurize(smiles: Sequence[str]) -> list[dict]:
        return [Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(s)) for s in smiles]

    return featurize


def bench_embedding(settings: BenchmarkSettings, tokenizer, smiles: list[str], workdir: Path) -> dict:
    """Batched `model.embed` vs the feature-extraction pipeline vs RDKit 2D descriptors, same molecules."""
    import transformers

    from cmim_hf import CMIMFeatureExtractionPipeline
    from cmim_hf.saving import save_model_folder

    from transformers.utils import logging as hf_logging

    geometry, _ = load_recipe_geometry(settings.embed_geometry, settings.notes)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the save/load progress bars would clutter the report's log
    try:
        folder = save_model_folder(build_cmim(geometry, len(tokenizer)), tokenizer, workdir / "embed-model")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe = transformers.pipeline("feature-extraction", model=str(folder),
                                         pipeline_class=CMIMFeatureExtractionPipeline)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model = pipe.model.eval()  # the very model the pipeline runs
    n, bs = settings.embed_molecules, settings.embed_batch_size
    chunks = [smiles[r * n:(r + 1) * n] for r in range(settings.embed_rounds)]
    calls: dict[str, int] = {}

    def on_next_chunk(name: str, work: Callable[[list[str]], object]) -> Callable[[], None]:
        """A contestant that runs `work` on the next chunk of molecules at each call."""
        calls[name] = 0

        def run() -> None:
            work(chunks[calls[name] % len(chunks)])
            calls[name] += 1

        return run

    def batched_embed(embedder) -> Callable[[list[str]], None]:
        def work(chunk: list[str]) -> None:
            for i in range(0, len(chunk), bs):
                enc = tokenizer(chunk[i:i + bs], padding=True, return_tensors="pt")
                embedder.embed(enc["input_ids"], enc["attention_mask"])

        return work

    # bfloat16 = `load_pretrained(..., dtype="bfloat16")`; tiny-cpu = the shipped cmim-moses-tiny's geometry.
    half = copy.deepcopy(model).to(torch.bfloat16)
    tiny_geometry, _ = load_recipe_geometry("tiny-cpu", settings.notes)
    tiny = build_cmim(tiny_geometry, len(tokenizer)).eval()
    contestants = {
        "embed": on_next_chunk("embed", batched_embed(model)),
        "pipeline": on_next_chunk("pipeline", lambda chunk: pipe(chunk, batch_size=bs)),
        "embed_bf16": on_next_chunk("embed_bf16", batched_embed(half)),
        "embed_tiny": on_next_chunk("embed_tiny", batched_embed(tiny)),
        "embed_tiny_bf16": on_next_chunk("embed_tiny_bf16", batched_embed(copy.deepcopy(tiny).to(torch.bfloat16))),
    }
    featurize = _rdkit_featurizer()
    if featurize is not None:
        contestants["rdkit"] = on_next_chunk("rdkit", featurize)
        featurize(smiles[:4])  # warm-up
    # Check that the pipeline and bfloat16 give the same vectors as embed, and warm them up.
    enc = tokenizer(smiles[:8], padding=True, return_tensors="pt")
    full_vectors = model.embed(enc["input_ids"], enc["attention_mask"])
    same = torch.allclose(torch.tensor(pipe(smiles[:8], batch_size=bs)), full_vectors, atol=1e-4)
    half_cosine = torch.nn.functional.cosine_similarity(
        full_vectors, half.embed(enc["input_ids"], enc["attention_mask"]).float()).min().item()
    times = interleaved(contestants, settings.embed_rounds)
    threads = torch.get_num_threads()
    out = {
        "geometry": settings.embed_geometry,
        "batch_size": bs,
        "molecules_per_round": n,
        "rounds": settings.embed_rounds,
        "pipeline_matches_embed": bool(same),
        "embed_molecules_per_s": n / median(times["embed"]),
        "pipeline_molecules_per_s": n / median(times["pipeline"]),
        "pipeline_vs_embed": paired_ratio(times["pipeline"], times["embed"]),
        "embed_bf16_molecules_per_s": n / median(times["embed_bf16"]),
        "embed_bf16_vs_fp32": paired_ratio(times["embed_bf16"], times["embed"]),
        "embed_bf16_min_cosine_to_fp32": half_cosine,
        "torch_threads": threads,
        "round_times_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
    }
    if "rdkit" in times:
        # RDKit is single-threaded: give it one process per torch thread, scaling perfectly (its best case).
        out["rdkit_descriptors"] = len(featurize(smiles[:1])[0])
        out["rdkit_molecules_per_s_one_core"] = n / median(times["rdkit"])
        out["rdkit_molecules_per_s_same_cores"] = threads * n / median(times["rdkit"])
        out["embed_vs_rdkit2d"] = paired_ratio(times["embed"], [t / threads for t in times["rdkit"]])
        out["embed_vs_rdkit2d_one_core"] = paired_ratio(times["embed"], times["rdkit"])
        out["embed_bf16_vs_rdkit2d"] = paired_ratio(times["embed_bf16"], [t / threads for t in times["rdkit"]])
        for name in ("embed_tiny", "embed_tiny_bf16"):
            out[f"{name}_molecules_per_s"] = n / median(times[name])
            out[f"{name}_vs_rdkit2d"] = paired_ratio(times[name], [t / threads for t in times["rdkit"]])
    else:
        settings.notes.append("RDKit is not installed: embed_vs_rdkit2d was not measured")
    return out


def python_regex_tokenizer(tokenizer) -> Callable[[list[str]], dict]:
    """The reference: `re.findall` with the SMILES regex and a dict lookup, <bos>/<eos> around each row."""
    from cmim_hf.tokenization import SMILES_REGEX

    pattern = re.compile(SMILES_REGEX)
    vocab = tokenizer.get_vocab()
    unk, bos, eos = tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id

    def tokenize(texts: list[str]) -> dict:
        ids = [[bos, *[vocab.get(t, unk) for t in pattern.findall(s)], eos] for s in texts]
        return {"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]}

    return tokenize


def bench_tokenization(settings: BenchmarkSettings, tokenizer, smiles: list[str]) -> dict:
    """Fast tokenizer vs pure-Python regex tokenizer through the same batched `datasets.map`; MOSES preparation."""
    import datasets
    from tokenizers import Tokenizer

    from cmim_hf.data import load_named_dataset, tokenize_dataset
    from cmim_hf.tokenization import regex_smiles_encoder

    texts = smiles[: settings.tokenize_molecules]
    n = len(texts)
    py = python_regex_tokenizer(tokenizer)
    backend = tokenizer.backend_tokenizer

    def fast(batch: list[str]) -> dict:
        enc = tokenizer(batch, add_special_tokens=True, truncation=False)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def backend_fast(batch: list[str]) -> dict:
        ids = [e.ids for e in backend.encode_batch_fast(batch)]
        return {"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]}

    # The library's floor: no pre-tokenizer and no post-processor, so each molecule is one piece and one id.
    # What is left is the per-molecule cost of the Python binding (Encoding objects, the batch, the GIL).
    bare = Tokenizer.from_str(backend.to_str())
    bare.pre_tokenizer, bare.post_processor = None, None

    def backend_floor(batch: list[str]) -> list:
        return [e.ids for e in bare.encode_batch_fast(batch)]

    encode = regex_smiles_encoder(tokenizer)

    def data_path(batch: list[str]) -> dict:  # what `tokenize_dataset` encodes with
        ids = encode(batch)
        return {"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]}

    identical = fast(texts[:2000])["input_ids"] == py(texts[:2000])["input_ids"] == \
        backend_fast(texts[:2000])["input_ids"] == data_path(texts[:2000])["input_ids"]
    was_progress = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        dataset = datasets.Dataset.from_dict({"text": texts})

        def mapped(fn):
            return lambda: dataset.map(lambda b: fn(b["text"]), batched=True, batch_size=1000)

        times = interleaved({
            "fast_map": mapped(fast), "python_map": mapped(py), "backend_encode_batch_fast_map": mapped(backend_fast),
            "regex_encoder_map": mapped(data_path),
            "fast_call": lambda: fast(texts), "python_call": lambda: py(texts),
            "backend_floor_call": lambda: backend_floor(texts),
        }, settings.tokenize_rounds)

        # Preparing MOSES train as the training loop does, with the `datasets` cache off so nothing is reused.
        caching = datasets.is_caching_enabled()
        datasets.disable_caching()
        try:
            start = time.perf_counter()
            moses = load_named_dataset("moses", "train", max_samples=settings.prepare_max_samples)
            load_s = time.perf_counter() - start
            start = time.perf_counter()
            prepared, report = tokenize_dataset(moses, tokenizer, max_length=tokenizer.model_max_length)
            tokenize_s = time.perf_counter() - start
        finally:
            if caching:
                datasets.enable_caching()
    finally:
        if was_progress:
            datasets.enable_progress_bars()
    rate = {k: n / median(v) for k, v in times.items()}
    return {
        "molecules": n,
        "rounds": settings.tokenize_rounds,
        "outputs_identical": bool(identical),
        "molecules_per_s": rate,
        "tokenizer_vs_python": paired_ratio(times["fast_map"], times["python_map"]),
        "tokenizer_vs_python_no_map": paired_ratio(times["fast_call"], times["python_call"]),
        "backend_encode_batch_fast_vs_python": paired_ratio(times["backend_encode_batch_fast_map"],
                                                            times["python_map"]),
        "regex_encoder_vs_fast_tokenizer": paired_ratio(times["regex_encoder_map"], times["fast_map"]),
        # an upper bound on any tokenizers-library pipeline, however its pre-tokenizer is built
        "backend_floor_vs_python": paired_ratio(times["backend_floor_call"], times["python_call"]),
        "round_times_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "prepare_moses": {
            "subset": settings.prepare_max_samples is not None,
            "rows": len(moses),
            "kept": report.kept,
            "max_length": tokenizer.model_max_length,
            "load_s": load_s,
            "tokenize_s": tokenize_s,
            "total_s": load_s + tokenize_s,
            "rows_per_s": len(moses) / (load_s + tokenize_s),
            "num_proc": None,
            "cache": "datasets transform cache disabled; the CSV->Arrow conversion of load_dataset may be cached",
        },
    }


def bench_generation(settings: BenchmarkSettings, tokenizer) -> dict:
    """Greedy `generate` from fixed latents with and without the KV cache, exactly `generate_tokens` each."""
    geometry, _ = load_recipe_geometry(settings.generate_geometry, settings.notes)
    model = build_cmim(geometry, len(tokenizer)).eval()
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(settings.generate_batch_size, model.config.latent_tokens, model.config.latent_size,
                          generator=generator)
    n_tokens = settings.generate_tokens
    kwargs = dict(do_sample=False, num_beams=1, min_new_tokens=n_tokens, max_new_tokens=n_tokens)
    outputs = {}

    def run(use_cache: bool) -> Callable[[], None]:
        def go() -> None:
            outputs[use_cache] = model.decode_latents(latents, use_cache=use_cache, **kwargs)
        return go

    run(True)(), run(False)()  # warm-up
    times = interleaved({"cache": run(True), "no_cache": run(False)}, settings.generate_rounds)
    b = settings.generate_batch_size
    return {
        "geometry": settings.generate_geometry,
        "batch_size": b,
        "new_tokens": n_tokens,
        "output_shape": list(outputs[True].shape),
        "same_sequences": bool(torch.equal(outputs[True], outputs[False])),
        "cache_molecules_per_s": b / median(times["cache"]),
        "no_cache_molecules_per_s": b / median(times["no_cache"]),
        "cache_tokens_per_s": b * n_tokens / median(times["cache"]),
        "generate_cache_speedup": paired_ratio(times["cache"], times["no_cache"]),
        "rounds": settings.generate_rounds,
        "round_times_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
    }


def _contrastive_seconds(batch: int, width: int, temperature: float) -> float:
    """Median seconds of forward + backward of the cMIM term alone on (batch, width) latents."""
    from cmim_hf.modeling.modeling_cmim import cmim_contrastive_log_prob

    z = torch.randn(batch, width, requires_grad=True)

    def once() -> None:
        cmim_contrastive_log_prob(z, temperature).mean().backward()
        z.grad = None

    once()
    inner = 1
    while True:  # enough inner repeats for ~20 ms per sample
        start = time.perf_counter()
        for _ in range(inner):
            once()
        took = time.perf_counter() - start
        if took > 0.02 or inner >= 4096:
            break
        inner *= 4
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(inner):
            once()
        samples.append((time.perf_counter() - start) / inner)
    return median(samples)


def _slope(xs, ys) -> float:
    """Least-squares slope of log y against log x (1: linear, 2: quadratic)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def bench_scaling(settings: BenchmarkSettings, tokenizer, smiles: list[str], output_dir: Path) -> dict:
    """Time and memory per training step as batch size and length double; share of the contrastive term."""
    geometry, _ = load_recipe_geometry(settings.scaling_geometry, settings.notes)
    geometry = dict(geometry)
    longest = max(settings.scaling_lengths + (settings.scaling_fixed_length,))
    geometry["max_position_embeddings"] = max(geometry.get("max_position_embeddings", 128), longest)
    trainer = Trainer(build_cmim(geometry, len(tokenizer)))
    config = trainer.model.config
    queries = decoder_cross_attention_queries(trainer.model)
    stream = [t for row in tokenizer(smiles[:2000], add_special_tokens=False)["input_ids"] for t in row]
    points = [("batch", b, settings.scaling_fixed_length) for b in settings.scaling_batch_sizes] + \
             [("length", settings.scaling_fixed_batch, t) for t in settings.scaling_lengths]
    points = list(dict.fromkeys(points))
    batches = {p: fixed_shape_batch(stream, p[1], p[2], tokenizer, offset=i * 997) for i, p in enumerate(points)}
    for p in points:  # warm-up: first step at each shape
        trainer.step(batches[p])
    times = interleaved({p: (lambda p=p: trainer.step(batches[p])) for p in points}, settings.scaling_rounds)
    memory = {p: _step_memory(trainer, batches[p]) for p in points}
    width = config.latent_tokens * config.latent_size
    term = {b: _contrastive_seconds(b, width, config.contrastive_temperature)
            for b in sorted(set(settings.contrastive_batch_sizes) | set(settings.scaling_batch_sizes))}

    def row(p) -> dict:
        kind, b, t = p
        step = median(times[p])
        return {"sweep": kind, "batch_size": b, "length": t, "step_s": step, "tokens_per_s": b * t / step,
                "train_flops": cmim_training_step_flops(config, b, t, t - 1, cross_attention_queries=queries),
                "step_tensor_peak_mb": memory[p]["step_tensor_peak_mb"],
                "round_times_s": [round(x, 4) for x in times[p]],
                "contrastive_s": term.get(b) if kind == "batch" else None,
                "contrastive_share": term[b] / step if kind == "batch" else None}

    rows = [row(p) for p in points]
    by_batch = [r for r in rows if r["sweep"] == "batch"]
    by_length = [r for r in rows if r["sweep"] == "length"]
    largest = by_batch[-1]
    per_sample = largest["step_s"] / largest["batch_size"]  # steps grow linearly in B (measured slope below)
    projected = {b: term[b] / (per_sample * b) for b in term if b > largest["batch_size"]}
    result = {
        "geometry": settings.scaling_geometry,
        "rounds": settings.scaling_rounds,
        "points": rows,
        "time_vs_batch_loglog_slope": _slope([r["batch_size"] for r in by_batch], [r["step_s"] for r in by_batch]),
        "time_vs_length_loglog_slope": _slope([r["length"] for r in by_length], [r["step_s"] for r in by_length]),
        "contrastive_term_s": {str(b): s for b, s in term.items()},
        "contrastive_term_loglog_slope": _slope(list(term), list(term.values())) if len(term) > 1 else None,
        "contrastive_share_max_measured": max(r["contrastive_share"] for r in by_batch),
        "contrastive_share_projected": {str(b): s for b, s in projected.items()},
        "plot": None,
    }
    plot = _plot_scaling(result, output_dir / "scaling.png")
    if plot is not None:
        result["plot"] = plot.name
    return result


def _plot_scaling(result: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    by_batch = [r for r in result["points"] if r["sweep"] == "batch"]
    by_length = [r for r in result["points"] if r["sweep"] == "length"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    b = [r["batch_size"] for r in by_batch]
    t = [r["length"] for r in by_length]
    ax = axes[0][0]
    ax.loglog(b, [r["step_s"] for r in by_batch], "o-", base=2, label="training step")
    terms = {int(k): v for k, v in result["contrastive_term_s"].items()}
    ax.loglog(list(terms), list(terms.values()), "s--", base=2, label="cMIM term alone (fwd+bwd)")
    ax.set(xlabel="batch size", ylabel="seconds", title=f"time vs batch (length {by_batch[0]['length']})")
    ax.legend()
    ax = axes[0][1]
    ax.semilogx(b, [r["step_tensor_peak_mb"] for r in by_batch], "o-", base=2)
    ax.set(xlabel="batch size", ylabel="MiB", title="peak tensor memory of a step vs batch")
    ax = axes[1][0]
    ax.loglog(t, [r["step_s"] for r in by_length], "o-", base=2)
    ax.set(xlabel="sequence length", ylabel="seconds", title=f"time vs length (batch {by_length[0]['batch_size']})")
    ax = axes[1][1]
    ax.semilogx(t, [r["step_tensor_peak_mb"] for r in by_length], "o-", base=2)
    ax.set(xlabel="sequence length", ylabel="MiB", title="peak tensor memory of a step vs length")
    for a in axes.flat:
        a.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"cMIM training step scaling, `{result['geometry']}` geometry")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def profile_training_step(geometry_name: str, tokenizer, smiles: list[str], batch_size: int | None = None,
                          row_limit: int = 25) -> str:
    """torch.profiler table (self CPU time) of two training steps of the cMIM model."""
    from torch.profiler import ProfilerActivity, profile

    geometry, recipe_batch = load_recipe_geometry(geometry_name)
    batch = length_grouped_batches(smiles, tokenizer, batch_size or recipe_batch, 1, tokenizer.bos_token_id)[0]
    trainer = Trainer(build_cmim(geometry, len(tokenizer)))
    trainer.step(batch)
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.step(batch)
        trainer.step(batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------


def run_benchmarks(quick: bool = False, output_dir: str | os.PathLike = "benchmarks",
                   settings: BenchmarkSettings | None = None, log: Callable[[str], None] | None = print) -> dict:
    """Run the suite and write `results.json`, `results.md` (and `scaling.png`) into `output_dir`.

    Returns the results dict; its top-level `RATIO_KEYS` are the headline ratios.
    """
    settings = settings or (BenchmarkSettings.quick_settings() if quick else BenchmarkSettings.full())
    with torch_threads(settings.threads):
        return _run(settings, Path(output_dir), log)


def _run(settings: BenchmarkSettings, output_dir: Path, log: Callable[[str], None] | None) -> dict:
    from cmim_hf import default_smiles_tokenizer

    output_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda message: None)
    started = time.perf_counter()
    results: dict = {
        "suite": "cmim-hf benchmarks",
        "quick": settings.quick,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {k: v for k, v in asdict(settings).items() if k != "notes"},
    }
    tokenizer = default_smiles_tokenizer(model_max_length=64)
    need = max(50 * (settings.train_batch_size or 128), settings.embed_molecules * settings.embed_rounds,
               settings.tokenize_molecules, 2000)
    smiles = read_moses_smiles(need)
    sections: dict = {}
    timings: dict = {}

    def section(name: str, fn: Callable[[], dict]) -> None:
        if name not in settings.sections:
            return
        say(f"[benchmark] {name} ...")
        start = time.perf_counter()
        sections[name] = fn()
        timings[name] = round(time.perf_counter() - start, 1)
        say(f"[benchmark] {name} done in {timings[name]} s")

    with tempfile.TemporaryDirectory(prefix="cmim-bench-") as workdir:
        section("training", lambda: bench_training(settings, tokenizer, smiles))
        section("bf16", lambda: bench_bf16(settings, tokenizer, smiles))
        section("single_key", lambda: bench_single_key(settings, tokenizer, smiles))
        section("compile", lambda: bench_compile(settings, tokenizer, smiles))
        section("embedding", lambda: bench_embedding(settings, tokenizer, smiles, Path(workdir)))
        section("tokenization", lambda: bench_tokenization(settings, tokenizer, smiles))
        section("generation", lambda: bench_generation(settings, tokenizer))
        section("scaling", lambda: bench_scaling(settings, tokenizer, smiles, output_dir))
        section("onnx", lambda: bench_onnx(settings, smiles, _rdkit_featurizer()))  # onnx_speed.py
        section("search", lambda: bench_search(settings.quick, Path(workdir)))
        section("library", lambda: bench_library(settings.quick, Path(workdir)))  # benchmarks/library.py
    if settings.profile and "training" in settings.sections:
        say("[benchmark] profiling the small training step ...")
        table = profile_training_step("small", tokenizer, smiles)
        (output_dir / "profile_small.txt").write_text(table)
        results["profile"] = "profile_small.txt"

    training = sections.get("training", {})
    headline = {
        "train_vs_bart": training.get("small", {}).get("ratio_vs_bart"),
        "mfu_small": training.get("small", {}).get("mfu_cmim"),
        "pipeline_vs_embed": sections.get("embedding", {}).get("pipeline_vs_embed"),
        "embed_vs_rdkit2d": sections.get("embedding", {}).get("embed_vs_rdkit2d"),
        "tokenizer_vs_python": sections.get("tokenization", {}).get("tokenizer_vs_python"),
        "generate_cache_speedup": sections.get("generation", {}).get("generate_cache_speedup"),
    }
    results.update({k: v for k, v in headline.items() if v is not None})
    for name, values in training.items():
        results[f"train_vs_bart_{name.replace('-', '_')}"] = values["ratio_vs_bart"]
    if "single_key" in sections:
        results["single_key_speedup"] = sections["single_key"]["single_key_speedup"]
    results["targets"] = {k: {"value": headline[k], "target": TARGETS[k][0], "what": TARGETS[k][1],
                              "met": headline[k] is not None and headline[k] >= TARGETS[k][0]}
                          for k in RATIO_KEYS if headline[k] is not None}
    results["sections"] = sections
    results["section_seconds"] = timings
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    if hasattr(os, "getloadavg"):
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["notes"] = list(settings.notes)
    if settings.quick:
        results["notes"].append("quick run: small batches, few rounds, MOSES preparation on a "
                                f"{settings.prepare_max_samples}-row subset; not comparable to the full run")
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    (output_dir / "results.md").write_text(write_markdown(results))
    say(f"[benchmark] wrote {output_dir / 'results.json'} and results.md in {results['total_seconds']} s")
    return results


def _json_default(value):
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------


def _f(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _fresh(memory: dict) -> str:
    fresh = memory.get("fresh_process")
    return "-" if fresh is None else _f(fresh["peak_rss_mb"], 0)


def write_markdown(results: dict) -> str:
    """The Markdown report: machine, headline ratios against their targets, then each section's numbers."""
    lines = _md_header(results)
    sections = results["sections"]
    for name, write in _MARKDOWN_SECTIONS.items():
        if name in sections:
            lines += write(sections[name])
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def _md_header(results: dict) -> list[str]:
    """Machine and headline ratios."""
    m = results["machine"]
    lines = [
        f"# cmim-hf benchmarks{' (quick run)' if results['quick'] else ''}",
        "",
        f"Run {results['created']}, {results['total_seconds']} s. Ratios compare contestants measured back to back "
        "in interleaved rounds in the same process (median over rounds of the per-round ratio); absolute numbers "
        "are medians and depend on the machine and its load.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu_model']} ({m.get('cpu_flags', '')}) |",
        f"| cores | {m['logical_cores']} logical, {m['usable_cores']} usable |",
        f"| torch | {m['torch_version']}, {m['torch_threads']} intra-op threads, BLAS {m['blas']} |",
        f"| transformers / python | {m['transformers_version']} / {m['python_version']} |",
        f"| platform | {m['platform']}, {m.get('memory_gb')} GiB |",
        f"| load average (1/5/15 min) | start {m.get('load_average_at_start')}, end {m.get('load_average_at_end')} |",
        "",
        "## Headline ratios",
        "",
        "| ratio | value | target | met | what |",
        "|---|---|---|---|---|",
    ]
    for key in RATIO_KEYS:
        target = results.get("targets", {}).get(key)
        if target is None:
            lines.append(f"| `{key}` | not measured | >= {TARGETS[key][0]} | - | {TARGETS[key][1]} |")
            continue
        value = f"{target['value']:.1%}" if key == "mfu_small" else f"{target['value']:.2f}x"
        goal = f"{target['target']:.0%}" if key == "mfu_small" else f"{target['target']}x"
        lines.append(f"| `{key}` | {value} | >= {goal} | {'yes' if target['met'] else '**no**'} | {target['what']} |")
    return lines


def _md_row(cells) -> str:
    """A Markdown table row; an empty cell stays `| |`."""
    return "|" + "".join(f" {cell} |" if cell != "" else " |" for cell in map(str, cells))


def _md_section(title: str, text: str, header: Sequence[str], rows, after: Sequence[str] = ()) -> list[str]:
    """A report section: its heading, a paragraph, a table (`rows` of cells under `header`), then `after`."""
    return ["", f"## {title}", "", text, "", _md_row(header), "|" + "---|" * len(header), *map(_md_row, rows),
            *after]


def _md_training(section: dict) -> list[str]:
    text = ("Real (non-padding) tokens per second on the same length-grouped batches of MOSES SMILES. "
            "MFU = analytic matmul FLOPs (benchmarks/flops.py, padded shapes) / time / fp32 matmul peak "
            "measured in the same rounds. Step memory = peak tensor memory of one step (activations, gradients; "
            "profiler allocation events); peak RSS = a fresh process that builds the model and trains it on "
            "these batches (imports included).")
    header = ("geometry", "params cMIM / BART", "batch shapes", "padding", "cMIM tok/s", "BART tok/s", "cMIM / BART",
              "FLOPs BART / cMIM", "MFU cMIM", "MFU BART", "matmul peak GFLOP/s", "step memory cMIM / BART MiB",
              "peak RSS cMIM / BART MiB")
    rows = [(name, f"{r['params_cmim'] / 1e6:.2f}M / {r['params_bart'] / 1e6:.2f}M", r["batch_shapes"],
             f"{r['padding_share']:.1%}", _f(r["cmim_tokens_per_s"]), _f(r["bart_tokens_per_s"]),
             f"{r['ratio_vs_bart']:.2f}x", f"{r['flop_ratio_bart_over_cmim']:.2f}", f"{r['mfu_cmim']:.1%}",
             f"{r['mfu_bart']:.1%}", _f(r["matmul_peak_gflops"], 1),
             f"{_f(r['memory_cmim']['step_tensor_peak_mb'], 0)} / {_f(r['memory_bart']['step_tensor_peak_mb'], 0)}",
             f"{_fresh(r['memory_cmim'])} / {_fresh(r['memory_bart'])}") for name, r in section.items()]
    return _md_section("Training step (forward + backward + clip + AdamW)", text, header, rows)


def _md_embedding(e: dict) -> list[str]:
    text = (f"`{e['geometry']}` geometry, batches of {e['batch_size']}, {e['molecules_per_round']} MOSES "
            f"molecules per round, {e['torch_threads']} torch threads; embed = tokenize the batch + "
            "`model.embed`; the pipeline gives the same vectors: "
            f"{e['pipeline_matches_embed']}. RDKit computes all {e.get('rdkit_descriptors', '-')} "
            "`Descriptors.CalcMolDescriptors` (parsing included), one process per torch thread assumed to "
            "scale perfectly.")
    rows = [("`model.embed`", _f(e["embed_molecules_per_s"]), 1),
            (f"pipeline(batch_size={e['batch_size']})", _f(e["pipeline_molecules_per_s"]),
             f"{e['pipeline_vs_embed']:.2f}x of embed"),
            ("`model.embed`, bfloat16 weights", _f(e["embed_bf16_molecules_per_s"]),
             f"{e['embed_bf16_vs_fp32']:.2f}x of embed (min cosine to float32 "
             f"{e['embed_bf16_min_cosine_to_fp32']:.5f})")]
    if "embed_vs_rdkit2d" in e:
        rows += [("RDKit 2D, same cores", _f(e["rdkit_molecules_per_s_same_cores"]),
                  f"embed is {e['embed_vs_rdkit2d']:.1f}x faster"),
                 ("RDKit 2D, one core", _f(e["rdkit_molecules_per_s_one_core"]),
                  f"embed is {e['embed_vs_rdkit2d_one_core']:.1f}x faster"),
                 ("", "", f"bfloat16 embed is {e['embed_bf16_vs_rdkit2d']:.1f}x faster than RDKit 2D, same cores"),
                 ("`model.embed`, tiny-cpu geometry (cmim-moses-tiny)", _f(e["embed_tiny_molecules_per_s"]),
                  f"{e['embed_tiny_vs_rdkit2d']:.1f}x RDKit 2D, same cores"),
                 ("the same, bfloat16", _f(e["embed_tiny_bf16_molecules_per_s"]),
                  f"{e['embed_tiny_bf16_vs_rdkit2d']:.1f}x RDKit 2D, same cores")]
    return _md_section("Embedding", text, ("path", "molecules/s", "ratio"), rows)


def _md_single_key(k: dict) -> list[str]:
    text = (f"`{k['geometry']}` geometry with one latent token, batches {k['batch_shapes']}: a training step with "
            "the exact shortcut (every query receives out_proj(v) of the one latent) against the general "
            "attention with the same weights (query projection and norm, scores, softmax over one key). "
            f"Same embeddings: {k['same_embeddings']}.")
    rows = [("single key", f"{k['params_single_key'] / 1e6:.2f}M", _f(k["single_key_tokens_per_s"])),
            ("full attention", f"{k['params_full_attention'] / 1e6:.2f}M", _f(k["full_attention_tokens_per_s"]))]
    after = ["", f"Speed-up {k['single_key_speedup']:.2f}x; FLOPs full / single key "
                 f"{k['flop_ratio_full_over_single_key']:.3f}."]
    return _md_section("Single-key cross-attention (K=1)", text, ("", "parameters", "tokens/s"), rows, after)


def _md_bf16(section: dict) -> list[str]:
    if not section:  # no geometries measured
        return []
    text = ("The cMIM training step above in fp32 against bf16 autocast with fp32 weights (what Accelerate's "
            "`mixed_precision=\"bf16\"` does on CPU), same weights and batches. The loss column compares one "
            "forward pass of each (eval mode) on the first batch, before training.")
    header = ("geometry", "fp32 tok/s", "bf16 tok/s", "bf16 / fp32", "first loss fp32 / bf16")
    rows = [(name, _f(r["fp32_tokens_per_s"]), _f(r["bf16_tokens_per_s"]), f"{r['bf16_vs_fp32']:.2f}x",
             f"{r['first_loss_fp32']:.4f} / {r['first_loss_bf16']:.4f}") for name, r in section.items()]
    return _md_section("bf16 mixed precision (`cmim-hf train --bf16 true`)", text, header, rows)


def _md_compile(section: dict) -> list[str]:
    if not section:  # not measured (no C++ compiler, or no geometries)
        return []
    text = ("The training step above, eager against `torch.compile` (inductor, default mode), from the same "
            "weights on the same length-grouped batches; compile time = the first compiled round less the "
            "first eager round, inductor caches off, recompiles for further lengths included.")
    header = ("geometry", "batch shapes", "eager tok/s", "compiled tok/s", "compiled / eager", "compile s",
              "steps to pay it back")
    rows = [(name, r["batch_shapes"], _f(r["eager_tokens_per_s"]), _f(r["compiled_tokens_per_s"]),
             f"{r['compiled_vs_eager']:.2f}x", f"{r['compile_s']:.0f}",
             "never" if r["break_even_steps"] is None else f"{r['break_even_steps']:,}")
            for name, r in section.items()]
    return _md_section("torch.compile (`cmim-hf train --torch_compile`)", text, header, rows)


def _md_tokenization(t: dict) -> list[str]:
    p = t["prepare_moses"]
    text = (f"{t['molecules']:,} MOSES SMILES; every path gives identical ids: {t['outputs_identical']}. "
            "`*_map` = batched `datasets.map` (batch 1000) over an in-memory Dataset.")
    after = ["",
             f"fast / python: {t['tokenizer_vs_python']:.2f}x through `datasets.map`, "
             f"{t['tokenizer_vs_python_no_map']:.2f}x called directly; "
             f"`backend_tokenizer.encode_batch_fast` / python: {t['backend_encode_batch_fast_vs_python']:.2f}x. "
             "On SMILES the Rust path (its regex `Split` pre-tokenizer) loses to CPython's `re`. Even with no "
             "pre-tokenizer and no post-processor at all (one id per molecule: `backend_floor_call`, not a "
             "tokenization), the library's per-molecule cost caps it at "
             f"{t['backend_floor_vs_python']:.2f}x the Python regex. Data "
             "preparation therefore encodes with `regex_smiles_encoder` (same ids): "
             f"{t['regex_encoder_vs_fast_tokenizer']:.2f}x the fast tokenizer through `datasets.map`.",
             "",
             f"MOSES train preparation ({'subset of ' if p['subset'] else 'full, '}{p['rows']:,} rows, "
             f"`load_named_dataset` + `tokenize_dataset`, max_length {p['max_length']}, num_proc None): "
             f"load {p['load_s']:.1f} s + tokenize {p['tokenize_s']:.1f} s = {p['total_s']:.1f} s "
             f"({_f(p['rows_per_s'])} rows/s), {p['kept']:,} rows kept."]
    rows = [(name, _f(value)) for name, value in t["molecules_per_s"].items()]
    return _md_section("Tokenization", text, ("path", "molecules/s"), rows, after)


def _md_generation(g: dict) -> list[str]:
    text = (f"`{g['geometry']}` geometry, greedy, {g['batch_size']} latents, exactly {g['new_tokens']} new tokens "
            f"(min_new_tokens = max_new_tokens); same sequences with and without cache: {g['same_sequences']}.")
    rows = [("KV cache", _f(g["cache_molecules_per_s"])), ("use_cache=False", _f(g["no_cache_molecules_per_s"])),
            ("speed-up", f"{g['generate_cache_speedup']:.2f}x")]
    return _md_section("Generation", text, ("", "molecules/s"), rows)


def _md_scaling(c: dict) -> list[str]:
    text = (f"`{c['geometry']}` geometry, unpadded batches of real MOSES tokens. log-log slope of time: "
            f"{c['time_vs_batch_loglog_slope']:.2f} against batch size, {c['time_vs_length_loglog_slope']:.2f} "
            "against length (1 = linear). The cMIM term alone (forward + backward of the B x B cosine "
            f"matrix) takes at most {c['contrastive_share_max_measured']:.3%} of a step over the batch sweep.")
    header = ("sweep", "batch", "length", "step s", "tokens/s", "step tensor memory MiB", "cMIM term share")
    rows = [(r["sweep"], r["batch_size"], r["length"], f"{r['step_s']:.3f}", _f(r["tokens_per_s"]),
             _f(r["step_tensor_peak_mb"], 0),
             "-" if r["contrastive_share"] is None else f"{r['contrastive_share']:.3%}") for r in c["points"]]
    after = []
    if c["contrastive_share_projected"]:
        projected = ", ".join(f"B={b}: {v:.2%}" for b, v in c["contrastive_share_projected"].items())
        after += ["", f"Projected share at larger batches (term measured, step extrapolated linearly): {projected}."]
    if c.get("plot"):
        after += ["", f"![scaling]({c['plot']})"]
    return _md_section("Scaling of a training step", text, header, rows, after)


_MARKDOWN_SECTIONS = {"training": _md_training, "embedding": _md_embedding, "single_key": _md_single_key,
                      "bf16": _md_bf16, "compile": _md_compile, "tokenization": _md_tokenization,
                      "generation": _md_generation, "scaling": _md_scaling, "onnx": md_onnx, "search": md_search,
                      "library": md_library}


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def settings_from_args(args: argparse.Namespace) -> BenchmarkSettings:
    settings = BenchmarkSettings.quick_settings() if args.quick else BenchmarkSettings.full()
    if args.sections is not None:
        wanted = tuple(x.strip() for x in args.sections.split(",") if x.strip())
        if not wanted:
            raise ValueError(f"--sections: name at least one of {list(settings.sections)}")
        unknown = sorted(set(wanted) - set(settings.sections))
        if unknown:
            raise ValueError(f"--sections: unknown section(s) {unknown}; choose from {list(settings.sections)}")
        settings.sections = wanted
    if args.threads is not None:
        settings.threads = args.threads
    if args.no_profile:
        settings.profile = False
    return settings


def print_headline(results: dict) -> int:
    """Print each headline ratio against its target; returns the exit status."""
    for key in RATIO_KEYS:
        if key in results:
            print(f"{key:24s} {results[key]:8.3f}   target >= {TARGETS[key][0]}  "
                  f"{'met' if results['targets'][key]['met'] else 'NOT met'}")
    return 0
