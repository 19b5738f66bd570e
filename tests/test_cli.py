"""The `cmim-hf` command line: `--help` and argument errors without torch, one-line errors for what users get wrong,
the one reader behind `embed --input` and `train --dataset`, and the model names the parsers read from source."""

import dataclasses
import gzip
import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch
from conftest import tiny_config

from cmim_hf import CMIMForConditionalGeneration, default_smiles_tokenizer
from cmim_hf.modeling import names as model_names
from cmim_hf.training.arguments import config_fields
from cmim_hf.cli import COMMANDS
from cmim_hf.commands.embed import main as embed_main
from cmim_hf.saving import save_model_folder

HEAVY = ("torch", "transformers", "sklearn", "datasets", "scipy", "rdkit", "matplotlib", "pandas")
SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)


# ---------------------------------------------------------------------------------------------------------
# --help and argument errors before the heavy imports
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_imports_no_heavy_library(command):
    """`cmim-hf --help` and `cmim-hf <command> --help` print their help without importing torch, transformers,
    scikit-learn or datasets (numpy is allowed: `compare` computes with it at module level)."""
    argv = [command, "--help"] if command else ["--help"]
    result = _run_python(f"""
import json, sys
from cmim_hf.cli import main
try:
    status = main({argv!r})
except SystemExit as exit:
    status = exit.code
print(json.dumps({{"status": status, "loaded": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
""")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert report == {"status": 0, "loaded": []}, report
    assert "usage" in result.stdout.lower()


def test_import_cmim_hf_is_light_and_still_registers_the_auto_classes():
    result = _run_python("""
import sys
import cmim_hf
assert "torch" not in sys.modules and "transformers" not in sys.modules, "import cmim_hf loaded torch"
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM
config = AutoConfig.for_model("cmim", vocab_size=40, encoder_hidden_size=16, decoder_hidden_size=16,
                              encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                              decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, latent_size=4)
print(type(config).__name__, type(AutoModel.from_config(config)).__name__,
      type(AutoModelForSeq2SeqLM.from_config(config)).__name__, cmim_hf.CMIMConfig is type(config))
""")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["CMIMConfig", "CMIMModel", "CMIMForConditionalGeneration", "True"]


@pytest.mark.parametrize("first", ["from transformers import AutoModel", "import transformers.pipelines",
                                   "from cmim_hf.modeling import EMBEDDING_KINDS", "import cmim_hf.embeddings"])
def test_registration_whatever_is_imported_first(first):
    """The registration waits for transformers' Auto classes however they are reached, and never runs while a
    module it needs is half-imported."""
    result = _run_python(f"""
import cmim_hf
{first}
from transformers import CONFIG_MAPPING, MODEL_MAPPING, MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING
from cmim_hf.modeling import CMIMConfig, CMIMForConditionalGeneration, CMIMModel
assert CONFIG_MAPPING["cmim"] is CMIMConfig
assert MODEL_MAPPING[CMIMConfig] is CMIMModel
assert MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING[CMIMConfig] is CMIMForConditionalGeneration
print("registered")
""")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "registered"


def test_model_names_equal_the_imported_values():
    """The parsers read the model's names from its source; they must be what importing it gives."""
    from cmim_hf.modeling import EMBEDDING_KINDS, OBJECTIVES, CMIMConfig
    from cmim_hf.modeling.configuration_cmim import LATENT_POOLINGS, REDUCTIONS

    assert model_names.EMBEDDING_KINDS == EMBEDDING_KINDS and model_names.OBJECTIVES == OBJECTIVES
    assert model_names.LATENT_POOLINGS == LATENT_POOLINGS and model_names.REDUCTIONS == REDUCTIONS
    own = CMIMConfig.__annotations__
    imported = {f.name: (own[f.name], f.default) for f in dataclasses.fields(CMIMConfig)
                if f.name in own and f.name != "backbone_config"}  # a nested config is no command-line value
    assert {name: (type_, default) for name, type_, default in config_fields()} == imported


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--objective", "foo"], "cmim-hf train: error: argument --objective: invalid choice: 'foo'"),
    (["train", "--dataset", "missing.csv"], "cmim-hf train: error: no such file or folder: missing.csv"),
    (["train", "--learning_rate", "0"], "cmim-hf train: error: training arguments: `learning_rate` must be > 0"),
    (["embed", "--kind", "bogus", "CCO"], "cmim-hf embed: error: argument --kind: invalid choice: 'bogus'"),
    (["evaluate", "x", "--output_dir", "o", "--tasks", "bogus"], "cmim-hf evaluate: error: argument --tasks"),
])
def test_argument_errors_are_one_line_and_come_before_torch(argv, message, tmp_path):
    result = _run_python(f"""
import json, sys
from cmim_hf.cli import main
try:
    status = main({argv!r})
except SystemExit as exit:
    status = exit.code
print(json.dumps({{"status": status, "torch": "torch" in sys.modules}}))
""")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"status": 2, "torch": False}, (report, result.stderr)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_embed_on_a_missing_cuda_device_is_one_argument_error_line(capsys):
    with pytest.raises(SystemExit) as exit:  # an argument error (exit 2), found before the model is loaded
        embed_main(["--device", "cuda", "CCO"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"cmim-hf embed: error: --device cuda: this machine has no CUDA device that torch {torch.__version__} can "
        "use; use --device cpu, or leave --device out (see cmim-hf embed --help)"]
    with pytest.raises(SystemExit):
        embed_main(["--device", "bogus", "CCO"])
    assert "cmim-hf embed: error: --device 'bogus' is not a device name" in capsys.readouterr().err


def test_train_refuses_an_unreadable_folder_in_one_line(tmp_path, capsys):
    from cmim_hf.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["train", "--dataset", str(tmp_path / "empty"), "--output_dir", str(tmp_path / "run"),
                 "--max_steps", "1", "--disable_tqdm", "--report_to", "csv"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"cmim-hf train: error: {tmp_path / 'empty'} is a folder but holds no data files datasets can read" in err


# ---------------------------------------------------------------------------------------------------------
# embed --input: every format, stdin, a missing column
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config()).eval()
    tokenizer = default_smiles_tokenizer(model_max_length=64)
    folder = save_model_folder(model, tokenizer, tmp_path_factory.mktemp("cli") / "tiny")
    expected = model.embed(**tokenizer(SMILES, padding=True, return_tensors="pt")).detach().numpy()
    return folder, expected


def _write_input(path, kind):
    """SMILES (with a name and a label) in one format; the SMILES column is called "mol"."""
    table = {"name": ["ethanol", "phenol", "paracetamol"], "mol": SMILES, "y": [0.1, 0.2, 0.3]}
    if kind in ("smi", "smi.gz", "txt"):
        text = "".join(f"{s} {n}\n" if kind != "txt" else f"{s}\n" for s, n in zip(SMILES, table["name"]))
        text = text.replace("\n", "\n\n", 1)  # a blank line: skipped
        if kind.endswith(".gz"):
            with gzip.open(path, "wt") as handle:
                handle.write(text)
        else:
            path.write_text(text)
    elif kind in ("csv", "tsv"):
        datasets.Dataset.from_dict(table).to_csv(str(path), sep="\t" if kind == "tsv" else ",", index=False)
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(dict(zip(table, row))) + "\n" for row in zip(*table.values())))
    elif kind == "parquet":
        datasets.Dataset.from_dict(table).to_parquet(str(path))
    elif kind == "disk":
        datasets.Dataset.from_dict(table).save_to_disk(str(path))
    elif kind == "hub_folder":
        (path / "data").mkdir(parents=True)
        datasets.Dataset.from_dict(table).to_parquet(str(path / "data" / "train-00000-of-00001.parquet"))
        (path / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                        "    path: data/train-*\n---\n")
    return path


@pytest.mark.parametrize("kind", ["smi", "smi.gz", "txt", "csv", "tsv", "jsonl", "parquet", "disk", "hub_folder"])
def test_embed_reads_every_format(kind, tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder, expected = tiny_folder
    source = _write_input(tmp_path / f"mols.{kind}", kind)
    column = [] if kind in ("smi", "smi.gz", "txt") else ["--text_column", "mol"]
    out = tmp_path / "out.npy"
    assert embed_main(["--model", str(folder), "--input", str(source), *column, "--output", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)  # no header row, no JSON line, no blank line


def test_embed_reads_stdin(tiny_folder, tmp_path, monkeypatch, capsys):
    import io

    folder, expected = tiny_folder
    monkeypatch.setattr(sys, "stdin", io.StringIO("CCO ethanol\n\nc1ccccc1O\nCC(=O)Nc1ccc(O)cc1\n"))
    assert embed_main(["--model", str(folder), "--input", "-"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    assert [row[0] for row in rows] == SMILES
    np.testing.assert_allclose(np.array([row[1:] for row in rows], dtype=float), expected, atol=1e-5)


def test_embed_names_the_columns_when_the_one_asked_for_is_missing(tiny_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder, _ = tiny_folder
    source = _write_input(tmp_path / "mols.tsv", "tsv")
    assert embed_main(["--model", str(folder), "--input", str(source), "--text_column", "smiles"]) == 1
    assert capsys.readouterr().err.strip() == (f"cmim-hf embed: error: {source} has no column 'smiles'; its columns "
                                               "are ['name', 'mol', 'y']")
    assert embed_main(["--model", str(folder), "--input", str(source)]) == 1  # three columns, none called smiles
    assert "cannot tell which column" in capsys.readouterr().err
    assert embed_main(["--model", str(folder), "--input", str(tmp_path / "absent.csv")]) == 1
    assert capsys.readouterr().err.strip() == f"cmim-hf embed: error: no such file or folder: {tmp_path / 'absent.csv'}"


def test_train_reads_a_hub_style_folder_and_validates_on_its_test_split(tmp_path, monkeypatch, capsys):
    """`datasets.load_dataset(folder)` reads a folder laid out as on the Hub; train takes its train split and
    validates on its test split (the traceback of issue 13)."""
    from cmim_hf.cli import main

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "mols"
    (folder / "data").mkdir(parents=True)
    train = ["CCO", "CCN", "c1ccccc1O", "CC(=O)O", "CCCl", "CC(C)O", "OCCO", "CCOC"] * 4
    datasets.Dataset.from_dict({"smiles": train}).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    datasets.Dataset.from_dict({"smiles": SMILES}).to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: "
                                      "data/train-*\n  - split: test\n    path: data/test-*\n---\n")
    status = main(["train", "--dataset", str(folder), "--output_dir", str(tmp_path / "run"), "--max_steps", "2",
                   "--per_device_train_batch_size", "8", "--num_reconstruction_samples", "2", "--save_steps", "0",
                   "--disable_tqdm", "--report_to", "csv", "--encoder_hidden_size", "32", "--decoder_hidden_size", "32",
                   "--encoder_layers", "1", "--decoder_layers", "1", "--encoder_attention_heads", "2",
                   "--decoder_attention_heads", "2", "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64",
                   "--latent_size", "8"])
    assert status == 0
    assert f"Validation (3 rows of {folder} [test])" in capsys.readouterr().out
    settings = json.loads((tmp_path / "run" / "final" / "card_data.json").read_text())
    assert settings["num_molecules"] == 32 and settings["validation_source"] == f"{folder} [test]"


def test_commands_turn_off_transformers_progress_bars_unless_asked(monkeypatch, capsys):
    from cmim_hf.cli import main as cli

    def bad_arguments():  # an argument error: the command ends before any model loads, after the setting is made
        with pytest.raises(SystemExit) as ended:
            cli(["generate", "--num_samples", "0"])
        assert ended.value.code == 2

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    bad_arguments()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    bad_arguments()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
    capsys.readouterr()
