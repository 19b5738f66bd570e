"""From a training run to a Hub-ready folder with one command each: `cmim-hf train` writes `final/` with its card,
`cmim-hf evaluate --update_card` puts its results into that card, `cmim-hf push` finds the folder complete (and
offline fails only for being offline), and the card's own code runs as written. Files get the umask's modes."""

import functools
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from conftest import tiny_config
from huggingface_hub import ModelCard

from cmim_hf import CMIMForConditionalGeneration, default_smiles_tokenizer
from cmim_hf.cards import card_data_from_folder, render_model_card
from cmim_hf.cli import main as cli_main
from cmim_hf.publishing import check_model_folder
from cmim_hf.saving import atomic_write, save_model_folder

TINY_MODEL = ["--encoder_hidden_size", "32", "--decoder_hidden_size", "32", "--encoder_layers", "1",
              "--decoder_layers", "1", "--encoder_attention_heads", "2", "--decoder_attention_heads", "2",
              "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64", "--latent_size", "8"]


def python_blocks(card: str) -> list[str]:
    """The card's Python code blocks, as a reader would copy them."""
    return re.findall(r"```python\n(.*?)```", card, re.S)


def _modes(folder: Path) -> dict[str, set[str]]:
    """The distinct permission bits of the files and of the folders under `folder` (itself included)."""
    modes = {"files": set(), "folders": {oct(stat.S_IMODE(folder.stat().st_mode))}}
    for path in folder.rglob("*"):
        modes["folders" if path.is_dir() else "files"].add(oct(stat.S_IMODE(path.stat().st_mode)))
    return modes


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`cmim-hf train` (tiny-cpu, a tiny geometry, 4 steps), run under umask 022 from a working folder with a
    relative --output_dir, as a user types it. Returns (working folder, run folder, exit status)."""
    work = tmp_path_factory.mktemp("work")
    before_umask, before_cwd = os.umask(0o022), os.getcwd()
    os.chdir(work)
    try:
        status = cli_main(["train", "--recipe", "tiny-cpu", "--output_dir", "runs/tiny", "--max_train_samples", "200",
                           "--max_eval_samples", "32", "--num_reconstruction_samples", "8", "--max_steps", "4",
                           "--per_device_train_batch_size", "16", "--logging_steps", "2", "--eval_steps", "0",
                           "--save_steps", "2", "--disable_tqdm", *TINY_MODEL])
    finally:
        os.chdir(before_cwd)
        os.umask(before_umask)
    return work, work / "runs" / "tiny", status


def test_train_ends_with_a_hub_ready_folder_and_its_card(trained):
    work, run, status = trained
    assert status == 0
    final = run / "final"
    assert check_model_folder(final) == final.resolve()  # the check `cmim-hf push` makes first
    card = ModelCard.load(final / "README.md")
    assert card.data.datasets == ["katielink/moses"] and card.data.model_name == "tiny"
    validation = json.loads((final / "eval_results.json").read_text())
    got = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert got == {"token_accuracy (validation, training run)": validation["token_accuracy"],
                   "exact_reconstruction (validation, training run)": validation["exact_reconstruction"]}
    assert {(r.dataset_type, r.dataset_split) for r in card.data.eval_results} == {("katielink/moses", "test")}
    examples = validation["reconstruction_examples"]
    assert len(examples) == 8 and all(isinstance(a, str) and isinstance(b, str) for a, b in examples)
    assert f"| `{examples[0][0]}` |" in card.text  # the examples table shows what the model did
    assert "Measured by the training run at its end on MOSES test" in card.text
    assert "| token accuracy | " in card.text and "| 32 |" in card.text and "| 8 |" in card.text
    settings = json.loads((final / "card_data.json").read_text())
    assert 0 < settings["num_molecules"] <= 200  # the rows it trained on (bad rows are skipped)
    assert f"Trained on **MOSES** (on the Hub: [`katielink/moses`]" in card.text
    assert f", {settings['num_molecules']:,} molecules." in card.text
    assert yaml_block(card.text)["training"]["max_steps"] == 4
    assert 'repo = "runs/tiny/final"' in card.text  # where the run wrote it, from where it was run
    assert "pip install cmim-hf" not in card.text and "## Intended use" in card.text and "## Out of scope" in card.text
    assert "SentenceTransformer(" in card.text and "Seq2SeqTrainer(" in card.text
    # the card is what the card code makes of the folder's files: `cmim-hf refresh` regenerates the same text
    model = CMIMForConditionalGeneration.from_pretrained(final)
    assert render_model_card(model, card_data_from_folder(final)) == (final / "README.md").read_text()


def yaml_block(text: str) -> dict:
    import yaml

    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))


def test_everything_a_run_writes_gets_the_umask_modes(trained):
    """umask 022: files 0644, folders 0755, everywhere in the run folder: final model (safetensors included),
    checkpoints, card, eval_results.json, manifests, logs."""
    _, run, status = trained
    assert status == 0
    assert (run / "checkpoint-4" / "checkpoint_manifest.json").is_file()
    assert _modes(run) == {"files": {"0o644"}, "folders": {"0o755"}}


def test_atomic_writes_and_saved_folders_follow_the_umask(tmp_path):
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config())
    tokenizer = default_smiles_tokenizer(model_max_length=64)
    for umask, file_mode, folder_mode in ((0o022, "0o644", "0o755"), (0o077, "0o600", "0o700")):
        before = os.umask(umask)
        try:
            folder = save_model_folder(model, tokenizer, tmp_path / f"model-{umask:o}", extra_files={"a/b.txt": "x"})
            written = atomic_write(tmp_path / f"out-{umask:o}" / "results.json", "{}")
        finally:
            os.umask(before)
        assert _modes(folder) == {"files": {file_mode}, "folders": {folder_mode}}, umask
        assert oct(stat.S_IMODE(written.stat().st_mode)) == file_mode


def test_evaluate_update_card_then_push_offline(trained, monkeypatch, capsys):
    """`cmim-hf evaluate --update_card` writes the results into the folder's card; the folder still passes the
    push check, and an offline push fails only for being offline."""
    pytest.importorskip("rdkit")
    pytest.importorskip("sklearn")
    from cmim_hf.evaluation import model_eval

    work, run, status = trained
    assert status == 0
    final = run / "final"
    # cheap probes: the command's flow is under test, not the probes (tests/test_model_eval.py has those)
    monkeypatch.setattr(model_eval, "evaluate_model", functools.partial(
        model_eval.evaluate_model, probes={"regression": ("ridge",)}, baselines=("ecfp4",), samples_per_seed=2,
        progress=False))
    assert cli_main(["evaluate", str(final), "--output_dir", str(work / "eval"), "--update_card", "--tasks",
                     "freesolv", "--reconstruction_samples", "16", "--generation_samples", "8", "--radii", "0.5",
                     "--device", "cpu"]) == 0
    assert f"card: {final.resolve() / 'README.md'}" in capsys.readouterr().out
    results = json.loads((final / "evaluation.json").read_text())
    assert results == json.loads((work / "eval" / "results.json").read_text())
    assert (final / "downstream.png").read_bytes() == (work / "eval" / "downstream.png").read_bytes()
    card = ModelCard.load(final / "README.md")
    got = {(r.dataset_name, r.metric_name): r.metric_value for r in card.data.eval_results}
    for kind in ("informative", "latent", "decoder", "encoder"):  # every embedding kind, under its own name
        assert got[("freesolv", f"rmse ({kind} embedding, best probe)")] == results["tasks"]["freesolv"][kind]["best"]["rmse"]
    assert not any("ecfp4" in name for _, name in got)  # baselines are not this model's results
    assert not any(re.search(r"\bn\b|samples_per_seed|num_samples", name) for _, name in got)  # counts are text
    groups = {r.task_name for r in card.data.eval_results if r.dataset_name == "freesolv"}
    assert groups == {"freesolv: probes on the embeddings"}
    moses = results["reconstruction"]["moses_test"]
    assert got[("MOSES", "exact (moses_test)")] == moses["exact"]
    assert f"| MOSES test | 16 | {moses['token_accuracy']:.3f} |" in card.text
    assert "## Evaluation" in card.text and "![downstream.png](downstream.png)" in card.text
    assert check_model_folder(final) == final.resolve()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert cli_main(["push", str(final), "org/cmim-tiny"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"cmim-hf push: error: cannot push {final.resolve()} to 'org/cmim-tiny': the Hub is switched off "
        "(HF_HUB_OFFLINE=1); nothing was sent. Unset HF_HUB_OFFLINE to push."]
    assert 'repo = "runs/tiny/final"' in (final / "README.md").read_text()  # nothing rewritten before failing


def test_card_code_runs_as_written(trained, run_without_cmim_hf, tmp_path):
    """Every Python block of the card, copied as a reader copies it, runs from the folder the run was started
    in: the transformers, sentence-transformers and fine-tuning ones where cmim_hf cannot be imported, the
    cmim-hf one with the package."""
    work, run, status = trained
    assert status == 0
    card = (run / "final" / "README.md").read_text()
    blocks = python_blocks(card)
    assert len(blocks) == 4
    (tmp_path / "runs").symlink_to(work / "runs")  # run_without_cmim_hf runs in tmp_path
    usage, sentence_transformers, with_package, fine_tuning = blocks
    output = run_without_cmim_hf(usage + "\nimport json\nprint(json.dumps({'smiles': smiles, 'reconstructed': "
                                 "reconstructed, 'shape': list(embeddings.shape)}))\n")
    result = json.loads(output.strip().splitlines()[-1])
    assert result["shape"] == [2, 64]
    usage_exact = sum(a == b for a, b in zip(result["smiles"], result["reconstructed"]))
    said = re.search(r"This model reconstructs (both|one|neither) ", card).group(1)
    assert {"both": 2, "one": 1, "neither": 0}[said] == usage_exact  # the card says what the code will show
    output = run_without_cmim_hf(sentence_transformers + fine_tuning + "\nprint(vectors.shape, trainer.state.global_step)\n")
    assert output.strip().splitlines()[-1] == "(2, 64) 30"
    done = subprocess.run([sys.executable, "-c", with_package + "\nprint(X.shape)"], cwd=work, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "(2, 64)"
