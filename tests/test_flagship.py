"""The flagship recipe's contract (issue 22) and results/flagship/evaluate_stage.py: a training checkpoint is
rebuilt with the weights it holds, and the curve keeps one row per step, in order."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cmim_hf.cli import main as cli_main
from cmim_hf.modeling import CMIMConfig, CMIMForConditionalGeneration
from cmim_hf.training import load_recipe

ROOT = Path(__file__).resolve().parent.parent
MOSES_TRAIN_ROWS = 1_584_663
TINY_MODEL = ["--encoder_hidden_size", "32", "--decoder_hidden_size", "32", "--encoder_layers", "1",
              "--decoder_layers", "1", "--encoder_attention_heads", "2", "--decoder_attention_heads", "2",
              "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64", "--latent_size", "8"]


def evaluate_stage_module():
    """results/flagship/evaluate_stage.py, a script rather than a package module, loaded from its file."""
    spec = importlib.util.spec_from_file_location("evaluate_stage", ROOT / "results" / "flagship" / "evaluate_stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_moses_base_trains_on_all_of_moses_for_two_epochs_with_128_positions():
    recipe = load_recipe("moses-base")
    model, training = recipe["model"], recipe["training"]
    assert model["max_position_embeddings"] >= 128
    assert training["dataset"] == "moses" and training.get("max_train_samples") is None
    assert training["max_steps"] * training["per_device_train_batch_size"] >= 2 * MOSES_TRAIN_ROWS
    assert training["lr_scheduler_type"] == "cosine" and training["bf16"] is True
    assert model["min_log_scale"] == -1.0  # the noise floor the ablations chose
    assert training["save_total_limit"] <= 3 and training["save_steps"] * 100 <= training["max_steps"]
    with torch.device("meta"):
        size = sum(p.numel() for p in CMIMForConditionalGeneration(CMIMConfig(vocab_size=743, **model)).parameters())
    assert 8e6 < size < 12e6  # the small geometry


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_a_checkpoint_stage_is_rebuilt_with_its_weights_and_counts_molecules(tmp_path, moses_csv):
    run = tmp_path / "run"
    assert cli_main(["train", "--dataset", str(moses_csv), "--output_dir", str(run), *TINY_MODEL,
                     "--max_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "8",
                     "--max_eval_samples", "8", "--num_reconstruction_samples", "2", "--disable_tqdm",
                     "--report_to", "csv"]) == 0
    stage = evaluate_stage_module()
    assert stage.newest_stage(run) == run / "checkpoint-2"
    model, tokenizer, step, seen = stage.load_stage(run / "checkpoint-2")
    assert (step, seen) == (2, 2 * 8)
    assert tokenizer("CCO")["input_ids"] == stage.load_stage(run / "final")[1]("CCO")["input_ids"]
    saved = load_file(run / "final" / "model.safetensors")  # the same weights: the run ended at step 2
    state = model.state_dict()
    assert saved and saved.keys() <= state.keys()
    for name, tensor in saved.items():
        assert torch.equal(state[name].to(tensor.dtype), tensor), name
    assert torch.equal(model.lm_head.weight, model.model.decoder.embed_tokens.weight)  # tied again


def test_the_curve_keeps_one_row_per_step_in_step_order(tmp_path):
    stage = evaluate_stage_module()
    curve = tmp_path / "curve.csv"
    row = {field: 0.5 for field in stage.FIELDS}
    stage.append_row({**row, "step": 500, "molecules_seen": 32000}, curve)
    stage.append_row({**row, "step": 250, "molecules_seen": 16000}, curve)
    stage.append_row({**row, "step": 500, "molecules_seen": 32000, "prior_validity": 0.75}, curve)
    rows = list(csv.DictReader(curve.open()))
    assert [r["step"] for r in rows] == ["250", "500"]
    assert [r["prior_validity"] for r in rows] == ["0.5000", "0.7500"]
