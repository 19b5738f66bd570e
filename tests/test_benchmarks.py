"""The benchmark suite: the quick run writes every headline ratio (positive, finite) to results.json and
results.md, the FLOP counter matches a hand count and torch's own counter, and the GPU script runs on a CPU.
No wall-clock time is asserted anywhere: the machines are shared."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cmim_hf.benchmarks import RATIO_KEYS, cmim_forward_flops, cmim_training_step_flops, run_benchmarks
from cmim_hf.benchmarks.flops import decoder_cross_attention_queries
from cmim_hf.benchmarks.measure import interleaved, paired_ratio
from cmim_hf.modeling import CMIMConfig, CMIMForConditionalGeneration, labels_from_input_ids


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("rdkit")  # the RDKit 2D baseline
    output_dir = tmp_path_factory.mktemp("bench")
    results = run_benchmarks(quick=True, output_dir=output_dir, log=None)
    return output_dir, results


def test_quick_suite_writes_every_ratio(quick_run):
    output_dir, returned = quick_run
    results = json.loads((output_dir / "results.json").read_text())
    assert results["quick"] is True
    for key in RATIO_KEYS:
        value = results[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
        assert returned[key] == pytest.approx(value)
        assert results["targets"][key]["value"] == pytest.approx(value)
    for name in ("tiny-cpu", "small"):
        training = results["sections"]["training"][name]
        assert training["cmim_tokens_per_s"] > 0 and training["bart_tokens_per_s"] > 0
        assert training["memory_cmim"]["step_tensor_peak_mb"] > 0
        bf16 = results["sections"]["bf16"][name]
        assert bf16["bf16_vs_fp32"] > 0 and bf16["first_loss_relative_difference"] < 0.05  # same model, bf16
    machine = results["machine"]
    for field in ("cpu_model", "logical_cores", "torch_version", "torch_threads"):
        assert machine[field], field
    single_key = results["sections"]["single_key"]
    assert single_key["same_embeddings"] is True and single_key["single_key_speedup"] > 0
    assert single_key["params_full_attention"] > single_key["params_single_key"]
    embedding = results["sections"]["embedding"]
    assert embedding["pipeline_matches_embed"] is True
    assert embedding["embed_bf16_min_cosine_to_fp32"] > 0.99 and embedding["embed_bf16_vs_fp32"] > 0
    assert results["sections"]["tokenization"]["outputs_identical"] is True  # including the regex encoder
    assert results["sections"]["tokenization"]["regex_encoder_vs_fast_tokenizer"] > 0
    assert results["sections"]["tokenization"]["backend_floor_vs_python"] > 0
    compiled = results["sections"]["compile"]
    if compiled:  # empty (with a note) where no C++ compiler is installed
        tiny = compiled["tiny-cpu"]
        assert tiny["compiled_vs_eager"] > 0 and math.isfinite(tiny["compile_s"])
        assert "## torch.compile" in (output_dir / "results.md").read_text()
    else:
        assert any("no C++ compiler" in note for note in results["notes"])
    generation = results["sections"]["generation"]
    assert generation["output_shape"][1] == generation["new_tokens"] + 1  # start token + exactly 40 new ones
    assert results["sections"]["tokenization"]["prepare_moses"]["subset"] is True  # --quick says so
    assert any("quick run" in note for note in results["notes"])
    library = results["sections"]["library"]  # benchmarks/library.py: fresh `cmim-hf embed` processes
    assert library["rss_ratio"] > 0 and library["resume_overhead"] > 0 and library["two_vs_one_processes"] > 0
    assert 0 < library["bytes_per_molecule"]["float16"] < library["bytes_per_molecule"]["float32"]


def test_onnx_section_measures_both_backends_against_torch_and_rdkit(quick_run):
    pytest.importorskip("onnxruntime")
    _, results = quick_run
    onnx = results["sections"]["onnx"]
    for key in ("onnx_vs_torch_tiny", "onnx_int8_vs_torch_tiny", "embed_vs_rdkit2d_torch_tiny",
                "embed_vs_rdkit2d_onnx_tiny", "embed_vs_rdkit2d_onnx_int8_tiny"):
        assert math.isfinite(onnx[key]) and onnx[key] > 0, (key, onnx[key])
    assert onnx["onnx_min_cosine_to_torch_tiny"] >= 0.9999 and onnx["onnx_int8_min_cosine_to_torch_tiny"] >= 0.99


def test_markdown_lists_every_ratio_and_the_machine(quick_run):
    output_dir, results = quick_run
    markdown = (output_dir / "results.md").read_text()
    for key in RATIO_KEYS:
        assert f"| `{key}` |" in markdown
    assert results["machine"]["cpu_model"] in markdown
    assert results["machine"]["torch_version"] in markdown
    assert (output_dir / "scaling.png").stat().st_size > 0
    assert "![scaling](scaling.png)" in markdown


def test_quick_suite_measures_the_search_index(quick_run):
    output_dir, results = quick_run
    search = results["sections"]["search"]
    if "skipped" in search:  # no faiss
        pytest.skip(search["skipped"])
    assert [row["size"] for row in search["rows"]] == [500, 1000, 2000]
    assert all(0.5 < row["recall_at_10"] <= 1 and row["single_query_speedup"] > 0 for row in search["rows"])
    assert "## Search index" in (output_dir / "results.md").read_text()


def test_scaling_reports_curves_and_contrastive_share(quick_run):
    _, results = quick_run
    scaling = results["sections"]["scaling"]
    sweeps = {p["sweep"] for p in scaling["points"]}
    assert sweeps == {"batch", "length"}
    batches = [p["batch_size"] for p in scaling["points"] if p["sweep"] == "batch"]
    assert all(b2 == 2 * b1 for b1, b2 in zip(batches, batches[1:]))  # batch size doubles
    for point in scaling["points"]:
        assert point["step_s"] > 0 and point["step_tensor_peak_mb"] > 0
        if point["sweep"] == "batch":
            assert 0 < point["contrastive_share"] < 1


# Hand count for the tiny config below: V=10, He=Hd=8, Fe=Fd=16, 1+1 layers, K=1, D=4, perceiver pooling,
# batch B=2, encoder length T=5, decoder length T'=4. Matmul FLOPs = 2 * m * n * k.
HAND_FORWARD = {
    # qkv 2*2*5*8*24=3840, out 2*2*5*8*8=1280, QK^T 2*2*5*5*8=800, AV 800, FFN 2*(2*2*5*8*16)=5120
    "encoder": 3840 + 1280 + 800 + 800 + 5120,
    # q 2*2*1*8*8=256, kv 2*2*5*8*16=2560, QK^T 2*2*1*5*8=160, AV 160, out 256, FFN 2*(2*2*1*8*16)=1024,
    # (mu, log sigma) head 2*2*1*8*8=256
    "latent_head": 256 + 2560 + 160 + 160 + 256 + 1024 + 256,
    # latent projection 2*2*1*4*8=128; self qkv 2*2*4*8*24=3072, QK^T 2*2*4*4*8=512, AV 512, out 1024;
    # cross q 1024, kv of the latent 2*2*1*8*16=512, QK^T 2*2*4*1*8=128, AV 128, out 1024; FFN 2*(2*2*4*8*16)=4096
    "decoder": 128 + 3072 + 512 + 512 + 1024 + 1024 + 512 + 128 + 128 + 1024 + 4096,
    "lm_head": 2 * 2 * 4 * 8 * 10,  # 1280
    "contrastive": 2 * 2 * 2 * 4,  # the B x B cosine matrix over K*D = 4 dims: 32
}


def _hand_config(**overrides) -> CMIMConfig:
    kwargs = dict(vocab_size=10, max_position_embeddings=16, encoder_hidden_size=8, decoder_hidden_size=8,
                  encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                  encoder_ffn_dim=16, decoder_ffn_dim=16, latent_tokens=1, latent_size=4,
                  latent_pooling="perceiver", dropout=0.0, objective="cmim")
    kwargs.update(overrides)
    return CMIMConfig(**kwargs)


def test_flop_counter_matches_hand_count():
    flops = cmim_forward_flops(_hand_config(), batch_size=2, encoder_length=5, decoder_length=4)
    assert flops.encoder == HAND_FORWARD["encoder"] == 11840
    assert flops.latent_head == HAND_FORWARD["latent_head"] == 4672
    assert flops.decoder == HAND_FORWARD["decoder"] == 12160
    assert flops.lm_head == HAND_FORWARD["lm_head"]
    assert flops.contrastive == HAND_FORWARD["contrastive"]
    assert cmim_training_step_flops(_hand_config(), 2, 5, 4) == 3 * 29984
    assert cmim_training_step_flops(_hand_config(objective="mim"), 2, 5, 4) == 3 * (29984 - 32)
    # A decoder whose one-latent cross-attention skips queries: v and out projections of the latent only,
    # 2*2*1*8*8 each = 512, in place of q + kv + QK^T + AV + out = 1024 + 512 + 128 + 128 + 1024.
    shortcut = cmim_forward_flops(_hand_config(), 2, 5, 4, cross_attention_queries=False)
    assert shortcut.decoder == HAND_FORWARD["decoder"] - 2816 + 512


@pytest.mark.parametrize("pooling, latent_tokens", [("perceiver", 2), ("mean", 2), ("perceiver", 1)])
def test_flop_counter_matches_torch_flop_counter(pooling, latent_tokens):
    """torch.utils.flop_counter counts every matmul the model really runs (eager attention, so the attention
    products are visible to it), forward and backward; K=1 takes the single-key cross-attention."""
    from torch.utils.flop_counter import FlopCounterMode

    config = _hand_config(latent_pooling=pooling, latent_tokens=latent_tokens, encoder_layers=2, decoder_layers=3,
                          decoder_hidden_size=12, decoder_ffn_dim=20, vocab_size=30)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(config)
    input_ids = torch.randint(5, 30, (3, 7))
    input_ids[:, 0] = config.decoder_start_token_id
    attention_mask = torch.ones_like(input_ids)
    labels = labels_from_input_ids(input_ids, attention_mask, config.decoder_start_token_id)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    queries = decoder_cross_attention_queries(model)
    assert queries == (latent_tokens > 1)
    assert counter.get_total_flops() == cmim_training_step_flops(config, 3, 7, labels.shape[1],
                                                                 cross_attention_queries=queries)


def test_interleaved_changes_order_and_pairs_rounds():
    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b") or 2.0}, rounds=4)
    assert calls == ["a", "b", "b", "a", "b", "a", "a", "b"]  # each goes first in half the rounds
    assert times["b"] == [2.0] * 4 and len(times["a"]) == 4
    assert paired_ratio([1.0, 2.0, 1.0], [3.0, 4.0, 3.0]) == 3.0


def test_gpu_script_runs_on_cpu(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_h200.sh"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    result = subprocess.run(["bash", str(script), "--device", "cpu", "--quick", "--output_dir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "gpu_results.json").read_text())
    assert out["recipe"] == "molmim-base" and out["geometry"]["encoder_layers"] == 6
    assert out["steps_timed"] >= 1 and out["tokens_per_s"] > 0
    assert 0 < out["mfu_vs_measured_matmul"] and math.isfinite(out["mfu_vs_measured_matmul"])
    assert "MFU" in result.stdout
    compiled = subprocess.run(["bash", str(script), "--device", "cpu", "--quick", "--compile", "--output_dir",
                               str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    assert json.loads((tmp_path / "gpu_results_compiled.json").read_text())["compile"] is True
    assert json.loads((tmp_path / "gpu_results.json").read_text()) == out  # the eager result is kept
