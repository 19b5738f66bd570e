"""FSDP2 on two CPU processes over gloo, through the real entry point (`accelerate launch --config_file
training/accelerate_configs/fsdp.yaml -m cmim_hf.training`): the same losses and weights as one process with
the same global batch, sharded checkpoints resumed after SIGKILL, full weights in final/, BART and T5 backbones, cMIM's
gathered negatives under sharding, and the one-line refusals of a run that is not what its launcher asked for.

Runs use a tiny model (width 32, 2+2 layers: two shard units per stack) on a few hundred MOSES molecules.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from cmim_hf.training import ACCELERATE_CONFIGS_DIR, TrainingError, find_checkpoints, verify_checkpoint

FSDP_CONFIG = str(ACCELERATE_CONFIGS_DIR / "fsdp.yaml")
TINY_MODEL = ["--encoder_hidden_size", "32", "--decoder_hidden_size", "32", "--encoder_layers", "2",
              "--decoder_layers", "2", "--encoder_attention_heads", "2", "--decoder_attention_heads", "2",
              "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64", "--latent_size", "8", "--dropout", "0"]
QUIET = ["--disable_tqdm", "--report_to", "csv"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
LAUNCH_TIMEOUT_S = 600  # two processes on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fsdp_command(*args: str, processes: int = 2) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "-q", "--config_file", FSDP_CONFIG,
            "--num_processes", str(processes), "--main_process_port", str(_free_port()), "-m", "cmim_hf.training",
            *args]


def _run(command: list[str]) -> str:
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return result.stdout + result.stderr


def _train_losses(output_dir: Path) -> dict[int, float]:
    """step -> train/loss from metrics.csv (step,name,value rows)."""
    losses = {}
    for row in (output_dir / "metrics.csv").read_text().splitlines()[1:]:
        step, name, value = row.split(",")[:3]
        if name == "train/loss":
            losses[int(step)] = float(value)
    return losses


# ---------------------------------------------------------------------------------------------------------
# Sharded training equals one process (objective `ae`: decoding z = mu, no latent noise, so the two runs draw
# nothing at random and must agree to float tolerance)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fsdp_and_single_runs(tmp_path_factory, moses_csv) -> tuple[Path, Path, str]:
    """An FSDP run on 2 processes of batch 8 each and a plain 1-process run of batch 16: the same global batches
    (without length grouping the sampler cuts one permutation into batches; Accelerate gives process p the batch
    p of each pair, which together are the 1-process batch)."""
    root = tmp_path_factory.mktemp("fsdp_equivalence")
    common = ["--dataset", str(moses_csv), "--objective", "ae", "--group_by_length", "false", "--max_steps", "4",
              "--logging_steps", "1", "--save_steps", "2", "--learning_rate", "3e-3", "--max_eval_samples", "16",
              "--num_reconstruction_samples", "2", *QUIET, *TINY_MODEL]
    log = _run(_fsdp_command(*common, "--per_device_train_batch_size", "8", "--output_dir", str(root / "fsdp")))
    _run([sys.executable, "-m", "cmim_hf.training", *common, "--per_device_train_batch_size", "16",
          "--output_dir", str(root / "single")])
    return root / "fsdp", root / "single", log


@pytest.mark.slow
def test_fsdp_run_matches_one_process_with_the_same_global_batch(fsdp_and_single_runs):
    fsdp, single, _ = fsdp_and_single_runs
    log = (fsdp / "train.log").read_text()
    assert "2 process(es) sharded (FSDP)" in log
    assert "2 CMIMEncoderLayer" in log and "2 CMIMDecoderLayer" in log  # the model's own blocks are shard units
    sharded_losses, single_losses = _train_losses(fsdp), _train_losses(single)
    assert sorted(sharded_losses) == sorted(single_losses) == [1, 2, 3, 4]
    for step, loss in single_losses.items():
        assert sharded_losses[step] == pytest.approx(loss, rel=1e-5), f"train/loss at step {step}"
    assert sharded_losses[4] < sharded_losses[1]  # it trained
    expected = load_file(single / "final" / "model.safetensors")
    actual = load_file(fsdp / "final" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_sharded_checkpoint_holds_shards_and_json_only(fsdp_and_single_runs):
    fsdp, _, _ = fsdp_and_single_runs
    checkpoint = fsdp / "checkpoint-4"
    files = verify_checkpoint(checkpoint)
    assert json.loads((checkpoint / "sharding.json").read_text())["num_processes"] == 2
    shards = sorted(name for name in files if name.startswith(("model/", "optimizer/")))
    assert len(shards) == 4 and all(name.endswith(".safetensors") for name in shards)  # one per process each
    # besides safetensors, JSON/YAML and the tokenizer, only the random states, read with weights_only=True
    others = {name for name in files if not name.endswith((".safetensors", ".json", ".yaml"))}
    assert others == {"random_states_0.pkl", "random_states_1.pkl"}
    assert not (fsdp / "final" / "sharding.json").exists()


@pytest.mark.slow
def test_final_folder_holds_full_weights_that_load_without_this_package(fsdp_and_single_runs, run_without_cmim_hf):
    fsdp, single, _ = fsdp_and_single_runs
    full = load_file(single / "final" / "model.safetensors")
    shapes = {name: list(tensor.shape) for name, tensor in full.items()}
    out = run_without_cmim_hf(f"""
        import json
        from safetensors.torch import load_file
        from transformers import AutoModelForSeq2SeqLM
        model = AutoModelForSeq2SeqLM.from_pretrained({str(fsdp / "final")!r}, trust_remote_code=True)
        weights = load_file({str(fsdp / "final" / "model.safetensors")!r})
        print(json.dumps({{"class": type(model).__name__, "layers": model.config.encoder_layers,
                           "shapes": {{k: list(v.shape) for k, v in weights.items()}}}}))
    """)
    loaded = json.loads(out.strip().splitlines()[-1])
    assert loaded["class"] == "CMIMForConditionalGeneration" and loaded["layers"] == 2
    assert loaded["shapes"] == shapes  # whole tensors, not one process's shard


@pytest.mark.slow
def test_sharded_checkpoint_resumed_without_fsdp_stops_with_one_line(fsdp_and_single_runs, tmp_path, moses_csv):
    run = tmp_path / "run"
    shutil.copytree(fsdp_and_single_runs[0], run)
    result = subprocess.run([sys.executable, "-m", "cmim_hf.training", "--dataset", str(moses_csv), "--objective",
                             "ae", "--max_steps", "6", "--output_dir", str(run), "--resume_from_checkpoint", "latest",
                             *QUIET, *TINY_MODEL], env=ENV, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("cmim-hf train: error:")]
    assert len(errors) == 1 and "is sharded by FSDP over 2 processes, this run is NO" in errors[0], result.stderr
    assert find_checkpoints(run)[-1].name == "checkpoint-4"  # not moved aside as unusable: the run was wrong


@pytest.mark.slow
def test_sharded_checkpoint_resumed_on_another_process_count_stops_with_one_line(fsdp_and_single_runs, tmp_path,
                                                                                  moses_csv):
    """The loop position counts batches per process: 2 processes' checkpoint on 1 would replay data silently."""
    run = tmp_path / "run"
    shutil.copytree(fsdp_and_single_runs[0], run)
    result = subprocess.run(_fsdp_command("--dataset", str(moses_csv), "--objective", "ae", "--max_steps", "6",
                                          "--output_dir", str(run), "--resume_from_checkpoint", "latest", *QUIET,
                                          *TINY_MODEL, processes=1),
                            env=ENV, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("cmim-hf train: error:")]
    assert len(errors) == 1 and "was saved by 2 FSDP processes, this run has 1" in errors[0], result.stderr
    assert find_checkpoints(run)[-1].name == "checkpoint-4"


# ---------------------------------------------------------------------------------------------------------
# Resume after SIGKILL
# ---------------------------------------------------------------------------------------------------------


def _resume_args(data: Path, out: Path) -> list[str]:
    # cMIM (the default objective) with its latent noise: the random states are restored per process
    return ["--dataset", str(data), "--output_dir", str(out), "--max_train_samples", "200", "--max_steps", "6",
            "--per_device_train_batch_size", "16", "--save_steps", "2", "--save_total_limit", "2",
            "--logging_steps", "1", "--eval_steps", "0", "--max_eval_samples", "16",
            "--num_reconstruction_samples", "0", "--learning_rate", "3e-3", *QUIET, *TINY_MODEL]


@pytest.mark.slow
def test_sharded_checkpoint_resumes_after_sigkill_to_the_uninterrupted_weights(tmp_path, moses_csv):
    reference = tmp_path / "reference"
    _run(_fsdp_command(*_resume_args(moses_csv, reference)))

    interrupted = tmp_path / "interrupted"
    launcher = subprocess.Popen(_fsdp_command(*_resume_args(moses_csv, interrupted)), env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while launcher.poll() is None and not find_checkpoints(interrupted) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and both training processes
    launcher.wait()
    assert launcher.returncode == -signal.SIGKILL, "the run ended before the kill"
    assert not (interrupted / "final").exists()
    saved = find_checkpoints(interrupted)
    assert saved and saved[-1].name != "checkpoint-6"

    log = _run(_fsdp_command(*_resume_args(moses_csv, interrupted), "--resume_from_checkpoint", "latest"))
    assert "resumed from" in (interrupted / "train.log").read_text(), log
    expected = load_file(reference / "final" / "model.safetensors")
    actual = load_file(interrupted / "final" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{name} differs (resumed from {saved[-1].name})"


# ---------------------------------------------------------------------------------------------------------
# Backbones: BART (the case) and T5
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backbone, units", [("bart", ("2 BartEncoderLayer", "2 BartDecoderLayer")),
                                             ("t5", ("4 T5Block",))])
def test_backbone_shards_its_own_blocks_and_trains(tmp_path, moses_csv, backbone, units):
    out = tmp_path / backbone
    _run(_fsdp_command("--backbone", backbone, "--dataset", str(moses_csv), "--output_dir", str(out),
                       "--max_steps", "3", "--save_steps", "3", "--logging_steps", "1", "--max_eval_samples", "16",
                       "--num_reconstruction_samples", "2", "--per_device_train_batch_size", "8", *QUIET,
                       *TINY_MODEL))
    log = (out / "train.log").read_text()
    assert "sharded (FSDP)" in log and all(unit in log for unit in units), log
    assert "CMIMEncoderLayer" not in log
    verify_checkpoint(out / "checkpoint-3")
    losses = _train_losses(out)
    assert sorted(losses) == [1, 2, 3] and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(out / "final")
    assert model.config.backbone_config.model_type == backbone


# ---------------------------------------------------------------------------------------------------------
# cMIM's gathered negatives under FSDP (the model sharded over two processes by its own blocks)
# ---------------------------------------------------------------------------------------------------------

WORLD, PER_RANK = 2, 3


def _sharded_rank(rank: int, port: int, config, batch: dict, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        from torch.distributed.fsdp import fully_shard

        from cmim_hf.modeling import CMIMForConditionalGeneration

        torch.manual_seed(0)
        model = CMIMForConditionalGeneration(config)
        for module in model.modules():  # the model's own blocks, as TRANSFORMER_BASED_WRAP picks them
            if type(module).__name__ in model._no_split_modules:
                fully_shard(module)
        fully_shard(model)
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        output = model(**{k: v[rows] for k, v in batch.items()}, sample_latent=False)
        output.loss.backward()
        grads = {name: param.grad.full_tensor() for name, param in model.named_parameters()
                 if param.grad is not None}
        results[rank] = (output.contrastive_log_prob.detach(), output.loss.detach(), grads)
    finally:
        dist.destroy_process_group()


def test_gathered_contrastive_terms_under_fsdp_equal_the_whole_batch_terms(smiles_tokenizer, moses_smiles):
    from conftest import tiny_config

    from cmim_hf.modeling import CMIMForConditionalGeneration, labels_from_input_ids

    config = tiny_config(gather_latents_across_processes=True, objective="cmim")
    encoded = smiles_tokenizer(moses_smiles[: WORLD * PER_RANK], padding=True, return_tensors="pt")
    batch = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
             "labels": labels_from_input_ids(encoded["input_ids"], encoded["attention_mask"],
                                             smiles_tokenizer.bos_token_id)}
    results = mp.Manager().dict()
    mp.spawn(_sharded_rank, args=(_free_port(), config, batch, results), nprocs=WORLD, join=True)

    torch.manual_seed(0)
    whole = CMIMForConditionalGeneration(config)
    output = whole(**batch, sample_latent=False)
    output.loss.backward()
    per_rank = [results[r] for r in range(WORLD)]
    # equal local batches: the mean of the processes' means is the whole batch's mean
    contrastive = torch.stack([r[0] for r in per_rank]).mean()
    assert contrastive < 0 and contrastive == pytest.approx(output.contrastive_log_prob.item(), abs=1e-6)
    assert torch.stack([r[1] for r in per_rank]).mean() == pytest.approx(output.loss.item(), rel=1e-5)
    # FSDP averages gradients over processes; through the gather each process's loss reaches the other's latents
    grads = per_rank[0][2]
    assert grads.keys() == per_rank[1][2].keys()
    expected = {name: param.grad for name, param in whole.named_parameters() if param.grad is not None}
    assert grads.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


# ---------------------------------------------------------------------------------------------------------
# No silent downgrade
# ---------------------------------------------------------------------------------------------------------


def test_accelerate_cpu_launcher_with_two_processes_stops_with_one_line(tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts one process: before, it trained alone and exited 0."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "-q", "--config_file", FSDP_CONFIG, "--cpu",
               "--num_processes", "2", "--main_process_port", str(_free_port()), "-m", "cmim_hf.training",
               "--max_steps", "2", "--output_dir", str(out), *QUIET, *TINY_MODEL]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("cmim-hf train: error: `accelerate launch --cpu` was asked for several processes")
    assert re.search(r"drop --cpu and run accelerate launch --config_file \S*fsdp.yaml --num_processes 2", lines[0])
    assert not out.exists()  # stopped before anything was written


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_fsdp_asked_for_but_not_sharded_is_refused(monkeypatch):
    from cmim_hf.training.distributed import make_accelerator

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # the FSDP config's, without a launcher's processes
    for name in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "ACCELERATE_USE_CPU", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TrainingError, match=r"asked for FSDP but the run is NO \(not sharded\): run accelerate "
                                            r"launch --config_file \S+fsdp.yaml --num_processes 2"):
        make_accelerator()


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_fewer_processes_than_the_world_size_is_refused(monkeypatch):
    from cmim_hf.training.distributed import make_accelerator

    monkeypatch.setenv("WORLD_SIZE", "4")  # no LOCAL_RANK: nothing joins a process group
    for name in ("LOCAL_RANK", "RANK", "ACCELERATE_USE_FSDP", "ACCELERATE_USE_CPU", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TrainingError, match="asked for 4 processes .WORLD_SIZE. but this run has 1"):
        make_accelerator()


# ---------------------------------------------------------------------------------------------------------
# The GPU benchmark script, as far as a CPU takes it
# ---------------------------------------------------------------------------------------------------------

GPU_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_h200.sh"


def _gpu_smoke(*args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = dict(ENV, PYTHON=sys.executable)
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    result = subprocess.run(["bash", str(GPU_SCRIPT), "--cpu-smoke", *args], capture_output=True, text=True,
                            env=env, timeout=1300)
    assert result.returncode == 0, result.stderr[-3000:]
    where = re.search(r"--cpu-smoke: results in (\S+)", result.stdout)
    assert where, result.stdout  # a temporary folder: a smoke run never replaces the measured results
    name = "gpu_results_compiled.json" if "--compile" in args else "gpu_results.json"
    folder = Path(where.group(1))
    try:
        return result, json.loads((folder / name).read_text())
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def test_gpu_script_cpu_smoke_runs_the_tiny_recipe():
    result, out = _gpu_smoke()
    assert out["device"] == "cpu" and out["recipe"] == "tiny-cpu" and out["compile"] is False
    assert out["geometry"]["encoder_hidden_size"] == 128 and out["steps_timed"] >= 1 and out["tokens_per_s"] > 0
    assert "MFU" in result.stdout


@pytest.mark.slow
def test_gpu_script_cpu_smoke_compiled():
    _, out = _gpu_smoke("--compile")
    assert out["recipe"] == "tiny-cpu" and out["compile"] is True and out["steps_timed"] >= 1


def test_a_torch_without_sharded_checkpoint_storage_is_refused_at_the_start(monkeypatch):
    import torch.distributed.checkpoint as dcp

    from cmim_hf.training.distributed import _require_sharded_checkpoints
    from cmim_hf.training.errors import TrainingError

    _require_sharded_checkpoints()  # this torch has it
    monkeypatch.delattr(dcp, "HuggingFaceStorageWriter")
    with pytest.raises(TrainingError, match="HuggingFaceStorageWriter, which torch .* lacks"):
        _require_sharded_checkpoints()
