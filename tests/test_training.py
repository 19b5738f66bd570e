"""Training: recipes and overrides, batching, the real entry point end to end, exact resume after SIGKILL,
damaged checkpoints, non-finite losses, streaming, InfoNCE views, and two processes over gloo.

Runs use a tiny model (width 32, 1+1 layers) on a few hundred MOSES molecules so each takes seconds.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cmim_hf import CMIMConfig, CMIMForConditionalGeneration
from cmim_hf.cli import main as cli_main
from cmim_hf.modeling import IGNORE_INDEX
from cmim_hf.training import (
    CheckpointError,
    CMIMDataCollator,
    LengthGroupedBatchSampler,
    find_checkpoints,
    list_recipes,
    load_recipe,
    parse_args,
    verify_checkpoint,
)

TINY_MODEL = ["--encoder_hidden_size", "32", "--decoder_hidden_size", "32", "--encoder_layers", "1",
              "--decoder_layers", "1", "--encoder_attention_heads", "2", "--decoder_attention_heads", "2",
              "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64", "--latent_size", "8"]
QUIET = ["--disable_tqdm", "--report_to", "csv"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine spinning OpenMP threads slow
    everything down; subprocesses get OMP_NUM_THREADS=1 the same way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")  # each in-process run builds its own Accelerator


def run_cli(*args: str) -> int:
    return cli_main(["train", *args])


# ---------------------------------------------------------------------------------------------------------
# Recipes and arguments
# ---------------------------------------------------------------------------------------------------------


def test_recipes_registry_and_geometry():
    assert {"tiny-cpu", "small", "molmim-base"} <= set(list_recipes())
    sizes = {}
    for name in list_recipes():
        recipe = load_recipe(name)
        with torch.device("meta"):  # shapes only, no memory
            model = CMIMForConditionalGeneration(CMIMConfig(vocab_size=743, **recipe["model"]))
        sizes[name] = sum(p.numel() for p in model.parameters())
    assert sizes["tiny-cpu"] < 3e6
    assert 8e6 < sizes["small"] < 12e6
    base = load_recipe("molmim-base")["model"]
    geometry = (base["latent_tokens"], base["latent_size"], base["encoder_layers"], base["decoder_layers"])
    assert geometry == (1, 512, 6, 6)
    assert (base["encoder_hidden_size"], base["encoder_attention_heads"], base["encoder_ffn_dim"]) == (512, 8, 2048)
    assert load_recipe("molmim-base")["training"]["bf16"] is True


def test_overrides_take_precedence_and_resolved_recipe_round_trips(tmp_path):
    args, model_args, recipe = parse_args(["--objective", "mim", "--latent_size", "32", "--max_steps", "7",
                                           "--bf16", "--report_to", "csv", "wandb"])
    assert recipe["name"] == "tiny-cpu"  # the default
    assert (model_args.objective, model_args.latent_size, args.max_steps, args.bf16) == ("mim", 32, 7, True)
    assert args.report_to == ["csv", "wandb"]
    assert model_args.encoder_hidden_size == load_recipe("tiny-cpu")["model"]["encoder_hidden_size"]

    from cmim_hf.training import resolved_recipe

    saved = tmp_path / "recipe.yaml"
    saved.write_text(yaml.safe_dump(resolved_recipe("tiny-cpu", "", args, model_args)))
    args2, model_args2, _ = parse_args(["--recipe", str(saved)])
    assert args2 == args and model_args2 == model_args


def test_bad_recipes_and_fields_are_named(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'tiny-cpu'"):
        load_recipe("tiny-cp")
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  latent_sise: 4\n")
    with pytest.raises(ValueError, match="latent_sise.*did you mean 'latent_size'"):
        load_recipe(typo)
    with pytest.raises(SystemExit):
        parse_args(["--no_such_field", "1"])


# ---------------------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------------------


def test_collator_pads_to_multiple_of_8_and_builds_labels():
    collator = CMIMDataCollator(pad_token_id=0, decoder_start_token_id=1, pad_to_multiple_of=8, max_length=64)
    rows = [{"input_ids": [1, 5, 6, 2], "input_ids_view2": [1, 6, 5, 7, 8, 9, 10, 11, 12, 2]},
            {"input_ids": [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 2], "input_ids_view2": [1, 5, 2]}]
    batch = collator(rows)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(1).tolist() == [4, 11]
    assert batch["input_ids"][0, 4:].eq(0).all()
    assert batch["labels"].shape == (2, 15)  # the leading <bos> is fed to the decoder, not predicted
    assert batch["labels"][0].tolist()[:4] == [5, 6, 2, IGNORE_INDEX] and batch["labels"][0, 3:].eq(IGNORE_INDEX).all()
    assert batch["input_ids_view2"].shape == (2, 16) and batch["attention_mask_view2"].sum(1).tolist() == [10, 3]
    capped = CMIMDataCollator(0, 1, 8, max_length=12)(rows[1:])
    assert capped["input_ids"].shape == (1, 12)


def test_length_grouped_batches_cover_everything_once_and_are_reproducible():
    generator = random.Random(0)
    lengths = [generator.randint(10, 60) for _ in range(1000)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=3, megabatch_size=8)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000)) and len(batches) == len(sampler) == 63
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # longest first: fail fast on memory
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    shuffled = [list(range(1000))[k:k + 16] for k in range(0, 1000, 16)]
    random_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in shuffled) / len(shuffled)
    assert spread < random_spread / 5  # similar lengths together: little padding
    assert list(LengthGroupedBatchSampler(lengths, 16, seed=3, megabatch_size=8)) == batches  # pure function
    sampler.set_epoch(1)
    assert list(sampler) != batches
    ordered = list(LengthGroupedBatchSampler(lengths, 16, shuffle=False))
    flat = [lengths[i] for b in ordered for i in b]
    assert flat == sorted(lengths, reverse=True)


def test_decoder_input_dropout_masks_only_real_tokens_after_the_start():
    from cmim_hf.modeling.modeling_cmim import drop_decoder_inputs, shift_tokens_right

    collator = CMIMDataCollator(pad_token_id=0, decoder_start_token_id=1, pad_to_multiple_of=8)
    batch = collator([{"input_ids": [1] + [5] * 30 + [2]}, {"input_ids": [1, 6, 2]}] * 16)
    teacher_forcing = shift_tokens_right(batch["labels"], pad_token_id=0, decoder_start_token_id=1)
    torch.manual_seed(0)
    inputs = drop_decoder_inputs(teacher_forcing.clone(), 0.3, replacement_id=4, pad_token_id=0)
    assert inputs.shape == batch["labels"].shape and inputs[:, 0].eq(1).all()
    assert inputs[1::2, 3:].eq(0).all()  # padding stays padding
    rate = inputs[0::2, 1:32].eq(4).float().mean().item()
    assert 0.2 < rate < 0.4
    assert torch.equal(inputs.ne(4), inputs.eq(teacher_forcing))  # only replacements differ


def test_word_dropout_is_applied_by_the_model_in_training_mode_only():
    from cmim_hf.modeling import CMIMConfig, CMIMForConditionalGeneration

    config = CMIMConfig(vocab_size=12, max_position_embeddings=16, encoder_hidden_size=16, encoder_layers=1,
                        encoder_attention_heads=2, encoder_ffn_dim=32, decoder_hidden_size=16, decoder_layers=1,
                        decoder_attention_heads=2, decoder_ffn_dim=32, latent_tokens=2, latent_size=8,
                        dropout=0.0, objective="ae", decoder_input_dropout=0.9, mask_token_id=4)
    model = CMIMForConditionalGeneration(config)
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 2]] * 4)
    labels = ids[:, 1:]
    model.eval()
    evaluation = model(input_ids=ids, labels=labels).loss
    model.config.decoder_input_dropout = 0.0
    assert torch.equal(model(input_ids=ids, labels=labels).loss, evaluation)  # eval mode: no word dropout
    model.train()
    plain = model(input_ids=ids, labels=labels).loss
    model.config.decoder_input_dropout = 0.9
    assert not torch.allclose(model(input_ids=ids, labels=labels).loss, plain)


def test_token_accuracy_is_one_number_in_the_training_log_the_loop_evaluation_and_evaluate(moses_smiles,
                                                                                           smiles_tokenizer):
    """On the same batch, the model output's token accuracy (what train/token_accuracy records; objective "ae"
    never samples z), the loop's `eval/token_accuracy` and `cmim-hf evaluate`'s `token_accuracy` are the same
    number: teacher-forced from z = mu, pooled over the real tokens, so splitting the rows into batches changes
    nothing. For a sampling objective (cmim) both evaluations still decode from z = mu."""
    pytest.importorskip("rdkit")  # cmim_hf.evaluation.model_eval
    import datasets
    from accelerate import Accelerator
    from conftest import tiny_config

    from cmim_hf.data import tokenize_dataset
    from cmim_hf.evaluation.model_eval import reconstruction_metrics
    from cmim_hf.training import evaluate

    smiles = moses_smiles[:24]
    rows, _ = tokenize_dataset(datasets.Dataset.from_dict({"text": smiles}), smiles_tokenizer, max_length=64)
    for objective in ("ae", "cmim"):
        torch.manual_seed(0)
        model = CMIMForConditionalGeneration(tiny_config(objective=objective))
        collator = CMIMDataCollator(smiles_tokenizer.pad_token_id, model.config.decoder_start_token_id, 8, 64)
        batch = collator(list(rows))
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(40):  # partly trained, so that the counts are not trivial
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            expected = model(**batch, sample_latent=False).token_accuracy.item()
            if objective == "ae":
                assert model(**batch).token_accuracy.item() == expected  # the training forward's own figure
        assert 0.2 < expected < 0.99, (objective, expected)
        for batch_size in (24, 5):
            evaluated = evaluate(model, rows.select_columns(["input_ids", "length"]), collator,
                                 Accelerator(cpu=True), tokenizer=smiles_tokenizer, batch_size=batch_size,
                                 num_reconstruction_samples=0)["eval/token_accuracy"]
            reported = reconstruction_metrics(model, smiles_tokenizer, smiles, batch_size=batch_size)
            # the same hits over the same real tokens; the model's ratio is float32 (one token moves it ~1e-3)
            assert evaluated == pytest.approx(expected, abs=1e-6), (objective, batch_size)
            assert reported["token_accuracy"] == pytest.approx(expected, abs=1e-6), (objective, batch_size)


# ---------------------------------------------------------------------------------------------------------
# End to end, in process, through the real entry point (`cmim-hf train`)
# ---------------------------------------------------------------------------------------------------------


def test_end_to_end_on_moses_saves_a_folder_that_loads(tmp_path, capsys):
    out = tmp_path / "run"
    status = run_cli("--dataset", "moses", "--max_train_samples", "300", "--max_eval_samples", "64",
                     "--num_reconstruction_samples", "8", "--output_dir", str(out), "--max_steps", "6",
                     "--per_device_train_batch_size", "32", "--logging_steps", "2", "--eval_steps", "4",
                     "--save_steps", "3", "--save_total_limit", "1", "--disable_tqdm", *TINY_MODEL)
    assert status == 0
    printed = capsys.readouterr().out
    final = out / "final"
    assert f"Model saved to {final}" in printed and "exact reconstruction" in printed and "pipeline(" in printed
    # rotation kept one checkpoint; every checkpoint verifies and carries the resolved recipe
    assert [p.name for p in find_checkpoints(out)] == ["checkpoint-6"]
    verify_checkpoint(out / "checkpoint-6")
    for folder in (out, out / "checkpoint-6", final):
        recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
        assert recipe["model"]["encoder_hidden_size"] == 32 and recipe["training"]["max_steps"] == 6
    results = json.loads((final / "eval_results.json").read_text())
    expected = {"loss", "reconstruction_loss", "token_accuracy", "contrastive_log_prob", "exact_reconstruction"}
    assert expected <= set(results)
    metrics = (out / "metrics.csv").read_text()
    assert "train/loss" in metrics and "eval/exact_reconstruction" in metrics
    assert (out / "tensorboard").is_dir() and (final / "training_logs" / "metrics.csv").is_file()

    from transformers import AutoModel, pipeline

    model = AutoModel.from_pretrained(final)
    assert model.config.encoder_hidden_size == 32
    extractor = pipeline("feature-extraction", model=str(final), trust_remote_code=True)
    vector = extractor("CC(=O)Oc1ccccc1C(=O)O")
    assert len(vector) == model.config.embedding_size


def test_bad_rows_are_counted_and_skipped(tmp_path, moses_csv, capsys):
    data = tmp_path / "messy.csv"
    good = moses_csv.read_text().splitlines()[1:120]
    data.write_text("smiles\n" + "\n".join(good + ["", "C" * 80, "   "]) + "\n")
    out = tmp_path / "run"
    status = run_cli("--dataset", str(data), "--text_column", "smiles", "--output_dir", str(out), "--max_steps", "2",
                     "--decoder_input_dropout", "0.2",
                     "--max_eval_samples", "16", "--num_reconstruction_samples", "0", "--save_steps", "0",
                     "--per_device_train_batch_size", "16", *QUIET, *TINY_MODEL)
    assert status == 0
    log = (out / "train.log").read_text()
    assert "too_long: 1" in log and "skipped" in log
    assert (out / "final" / "model.safetensors").is_file()


def test_existing_checkpoints_need_resume_or_overwrite(tmp_path, moses_csv, capsys):
    out = tmp_path / "run"
    common = ["--dataset", str(moses_csv), "--output_dir", str(out), "--max_steps", "2", "--save_steps", "2",
              "--max_eval_samples", "16", "--num_reconstruction_samples", "0", "--per_device_train_batch_size", "16",
              *QUIET, *TINY_MODEL]
    assert run_cli(*common) == 0
    assert run_cli(*common) == 1
    assert "--resume_from_checkpoint latest" in capsys.readouterr().err
    assert run_cli(*common, "--overwrite_output_dir") == 0


def test_streaming_mode(tmp_path, moses_csv):
    out = tmp_path / "run"
    status = run_cli("--dataset", str(moses_csv), "--streaming", "--output_dir", str(out), "--max_steps", "3",
                     "--max_eval_samples", "16", "--num_reconstruction_samples", "4", "--save_steps", "0",
                     "--per_device_train_batch_size", "16", *QUIET, *TINY_MODEL)
    assert status == 0
    assert "streamed" in (out / "train.log").read_text()


def test_infonce_batches_carry_a_second_randomised_view(tmp_path, moses_csv):
    out = tmp_path / "run"
    status = run_cli("--dataset", str(moses_csv), "--objective", "infonce", "--output_dir", str(out),
                     "--max_steps", "2", "--max_eval_samples", "16", "--num_reconstruction_samples", "0",
                     "--save_steps", "0", "--per_device_train_batch_size", "16", *QUIET, *TINY_MODEL)
    assert status == 0
    log = (out / "train.log").read_text()
    assert "InfoNCE views:" in log
    assert json.loads((out / "eval_results.json").read_text())["contrastive_log_prob"] < 0


# ---------------------------------------------------------------------------------------------------------
# Reliability
# ---------------------------------------------------------------------------------------------------------


def _resume_args(data: Path, out: Path) -> list[str]:
    # 200 rows / batch 16 = 13 batches per epoch with 2-batch accumulation: resumes land mid-epoch, and the
    # epoch ends on a half-filled accumulation. Dropout and evaluation exercise the RNG bookkeeping.
    return ["train", "--dataset", str(data), "--output_dir", str(out), "--max_train_samples", "200",
            "--max_steps", "30", "--per_device_train_batch_size", "16", "--gradient_accumulation_steps", "2",
            "--save_steps", "3", "--save_total_limit", "2", "--logging_steps", "1", "--eval_steps", "7",
            "--max_eval_samples", "32", "--num_reconstruction_samples", "4", "--dropout", "0.1",
            "--learning_rate", "3e-3", *QUIET, *TINY_MODEL]


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cmim_hf.cli", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def _logged_step(metrics: Path) -> int:
    try:
        rows = metrics.read_text().splitlines()[1:]
    except FileNotFoundError:
        return 0
    steps = [int(row.split(",")[0]) for row in rows if ",train/loss," in row]
    return max(steps, default=0)


def test_sigkill_then_resume_latest_gives_the_uninterrupted_weights(tmp_path, moses_csv):
    kill_at = random.randrange(4, 26)
    reference = _cli(*_resume_args(moses_csv, tmp_path / "reference"))
    interrupted = _cli(*_resume_args(moses_csv, tmp_path / "interrupted"))
    metrics = tmp_path / "interrupted" / "metrics.csv"
    deadline = time.monotonic() + 120
    while interrupted.poll() is None and _logged_step(metrics) < kill_at and time.monotonic() < deadline:
        time.sleep(0.01)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert interrupted.returncode == -signal.SIGKILL, f"the run ended before the kill at step {kill_at}"
    assert not (tmp_path / "interrupted" / "final").exists()
    killed_at = _logged_step(metrics)

    resumed = _cli(*_resume_args(moses_csv, tmp_path / "interrupted"), "--resume_from_checkpoint", "latest")
    resumed_log = resumed.communicate(timeout=120)[0]
    reference_log = reference.communicate(timeout=120)[0]
    assert resumed.returncode == 0, resumed_log
    assert reference.returncode == 0, reference_log
    assert "resumed from" in resumed_log, resumed_log
    expected = load_file(tmp_path / "reference" / "final" / "model.safetensors")
    actual = load_file(tmp_path / "interrupted" / "final" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{name} differs (killed after step {killed_at})"
    # the metrics log tells one history: no duplicated steps from the interrupted attempt
    rows = [r.split(",")[:2] for r in metrics.read_text().splitlines()[1:]]
    assert len(rows) == len({tuple(r) for r in rows})


def test_damaged_checkpoints_are_reported_and_latest_falls_back(tmp_path, moses_csv, capsys):
    out = tmp_path / "run"
    common = ["--dataset", str(moses_csv), "--output_dir", str(out), "--save_steps", "2", "--save_total_limit", "3",
              "--max_eval_samples", "16", "--num_reconstruction_samples", "0", "--per_device_train_batch_size", "16",
              *QUIET, *TINY_MODEL]
    assert run_cli(*common, "--max_steps", "6") == 0
    two, four, six = find_checkpoints(out)

    weights = six / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    with pytest.raises(CheckpointError, match="truncated"):
        verify_checkpoint(six)
    optimizer = four / "optimizer.bin"
    raw = bytearray(optimizer.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte, same size
    optimizer.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        verify_checkpoint(four)

    # an explicitly named damaged checkpoint is an error that says what to do
    assert run_cli(*common, "--max_steps", "8", "--resume_from_checkpoint", str(six)) == 1
    assert "truncated" in capsys.readouterr().err

    # `latest` reports both and resumes from checkpoint-2
    assert run_cli(*common, "--max_steps", "8", "--resume_from_checkpoint", "latest") == 0
    log = (out / "train.log").read_text()
    assert "truncated" in log and "corrupt" in log and "falling back" in log
    assert f"resumed from {two}" in log
    assert (out / "checkpoint-6.unusable").is_dir() and (out / "final").is_dir()
    assert [p.name for p in find_checkpoints(out)] == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]

    # a save interrupted before its manifest is "incomplete"
    (out / "checkpoint-8" / "checkpoint_manifest.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        verify_checkpoint(out / "checkpoint-8")


def test_non_finite_loss_stops_the_run_before_anything_is_saved(tmp_path, moses_csv, monkeypatch, capsys):
    original = CMIMForConditionalGeneration.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        outputs = original(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:  # the third training batch = optimizer step 3
                outputs.loss = outputs.loss * float("nan")
        return outputs

    monkeypatch.setattr(CMIMForConditionalGeneration, "forward", forward)
    out = tmp_path / "run"
    status = run_cli("--dataset", str(moses_csv), "--output_dir", str(out), "--max_steps", "10", "--save_steps", "2",
                     "--logging_steps", "5", "--max_eval_samples", "16", "--num_reconstruction_samples", "0",
                     "--per_device_train_batch_size", "16", *QUIET, *TINY_MODEL)
    assert status == 1
    error = capsys.readouterr().err
    assert "non-finite training loss at step 3" in error and "checkpoint-2" in error
    assert [p.name for p in find_checkpoints(out)] == ["checkpoint-2"]  # step 4's save never happened
    assert not (out / "final").exists()


# ---------------------------------------------------------------------------------------------------------
# The CLI and two processes
# ---------------------------------------------------------------------------------------------------------


def test_cli_dispatch_and_lazy_training_import(capsys):
    assert cli_main([]) == 2
    assert cli_main(["--help"]) == 0 and "train" in capsys.readouterr().out
    assert cli_main(["trian"]) == 2 and "did you mean 'train'" in capsys.readouterr().err
    code = "import sys, cmim_hf.cli; assert 'cmim_hf.training' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_over_gloo_with_gathered_latents(tmp_path, moses_csv):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "cmim_hf.training",
               "--dataset", str(moses_csv), "--output_dir", str(out), "--max_steps", "4", "--save_steps", "2",
               "--logging_steps", "2", "--max_eval_samples", "16", "--num_reconstruction_samples", "6",
               "--per_device_train_batch_size", "16", "--gather_latents_across_processes", *QUIET, *TINY_MODEL]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    log = (out / "train.log").read_text()
    assert "2 process(es)" in log
    verify_checkpoint(out / "checkpoint-4")
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in (out / "checkpoint-4").iterdir()}
    from transformers import AutoModel

    assert AutoModel.from_pretrained(out / "final").config.latent_size == 8


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile (inductor) on CPU needs a C++ compiler")
def test_torch_compile_trains_the_same_weights_and_saves_a_plain_model(tmp_path, moses_csv, monkeypatch):
    # Random ops (latent noise) drawn from the eager generator, so both runs see the same noise.
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    common = ["--dataset", str(moses_csv), "--max_steps", "3", "--save_steps", "3", "--max_eval_samples", "16",
              "--num_reconstruction_samples", "4", "--per_device_train_batch_size", "16", "--dropout", "0",
              *QUIET, *TINY_MODEL]
    from torch._dynamo.utils import counters

    assert run_cli(*common, "--output_dir", str(tmp_path / "eager")) == 0
    counters.clear()
    assert run_cli(*common, "--output_dir", str(tmp_path / "compiled"), "--torch_compile") == 0
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo did compile the training forward
    eager = load_file(tmp_path / "eager" / "final" / "model.safetensors")
    compiled = load_file(tmp_path / "compiled" / "final" / "model.safetensors")
    assert set(compiled) == set(eager)  # saved unwrapped: no `_orig_mod.` prefixes
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert "torch.compile" in (tmp_path / "compiled" / "train.log").read_text()
    verify_checkpoint(tmp_path / "compiled" / "checkpoint-3")


def test_init_from_starts_a_run_from_saved_weights_and_refuses_what_does_not_fit(tmp_path, moses_csv, capsys):
    common = ["--dataset", str(moses_csv), "--max_train_samples", "64", "--max_eval_samples", "16",
              "--num_reconstruction_samples", "0", "--per_device_train_batch_size", "16", *QUIET]
    source = tmp_path / "source"
    assert run_cli(*common, "--output_dir", str(source), "--max_steps", "3", "--save_steps", "3",
                   "--learning_rate", "3e-3", *TINY_MODEL) == 0
    trained = load_file(source / "final" / "model.safetensors")

    # A copy of the checkpoint without the 84 MB-class resume files (optimizer, scheduler, loop and random
    # states) still gives its model; a damaged file that is there is still refused.
    bare = tmp_path / "bare"
    shutil.copytree(source / "checkpoint-3", bare)
    for name in ("optimizer.bin", "scheduler.json", "trainer_state.json", "random_states_0.pkl"):
        (bare / name).unlink()
    with pytest.raises(CheckpointError, match="optimizer.bin is missing"):
        verify_checkpoint(bare)
    from cmim_hf.training.checkpoints import load_checkpoint_model

    model = load_checkpoint_model(bare)[0]
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in trained.items())

    # A run started from the final folder (and from the bare checkpoint) begins at those weights: with a
    # vanishing learning rate, one step leaves them where they were; without --init_from it would not.
    for start in (source / "final", bare):
        out = tmp_path / f"from-{start.name}"
        assert run_cli(*common, "--output_dir", str(out), "--max_steps", "1", "--save_steps", "0",
                       "--learning_rate", "1e-12", "--init_from", str(start), *TINY_MODEL) == 0
        tuned = load_file(out / "final" / "model.safetensors")
        assert all(torch.allclose(tuned[name], tensor, atol=1e-6) for name, tensor in trained.items())
        assert f"weights from {start}" in (out / "train.log").read_text()
        recipe = yaml.safe_load((out / "final" / "recipe.yaml").read_text())
        assert recipe["training"]["init_from"] == str(start)

    # Another geometry, or a folder that holds no weights, is one error naming the folder.
    wider = [*TINY_MODEL[:1], "48", *TINY_MODEL[2:]]
    capsys.readouterr()
    assert run_cli(*common, "--output_dir", str(tmp_path / "wider"), "--max_steps", "1",
                   "--init_from", str(source / "final"), *wider) == 1
    error = capsys.readouterr().err
    assert f"--init_from {source / 'final'}" in error and "do not fit" in error
    assert run_cli(*common, "--output_dir", str(tmp_path / "empty"), "--max_steps", "1",
                   "--init_from", str(tmp_path), *TINY_MODEL) == 1
    assert "model.safetensors is missing" in capsys.readouterr().err
