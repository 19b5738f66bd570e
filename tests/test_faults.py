"""Hostile inputs and faults (issue 17): checkpoints that carry a pickle payload, kills at the exact moment a
replacement is half done, broken model folders, out-of-range arguments, permissions, SIGPIPE and Ctrl-C.

Each test reproduces one class of the issue and checks the outcome a user sees: one `cmim-hf <command>: error:`
line (exit 2 for arguments, 1 otherwise) or the matching built-in exception, no traceback, nothing lost, and no
code run from a checkpoint.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import huggingface_hub
import pytest
import torch
from accelerate.utils import load as accelerate_load
from safetensors.torch import load_file, save_file

from cmim_hf import CMIMForConditionalGeneration, default_smiles_tokenizer, generate_smiles, load_pretrained
from cmim_hf.cli import main as cli_main
from cmim_hf.hub import resolve_model
from cmim_hf.publishing import push_folder
from cmim_hf.loading import check_model_files
from cmim_hf.pretrained import pretrained_path
from cmim_hf.saving import save_model_folder
from cmim_hf.training import CheckpointError, find_checkpoints, verify_checkpoint

from conftest import tiny_config

TINY_MODEL = ["--encoder_hidden_size", "32", "--decoder_hidden_size", "32", "--encoder_layers", "1",
              "--decoder_layers", "1", "--encoder_attention_heads", "2", "--decoder_attention_heads", "2",
              "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64", "--latent_size", "8"]
QUIET = ["--disable_tqdm", "--report_to", "csv"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
       "TRANSFORMERS_VERBOSITY": "error"}
SHIPPED = pretrained_path("cmim-moses-tiny")


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")  # in-process training runs


def _train_args(data: Path, out: Path, max_steps: int, *extra: str) -> list[str]:
    return ["train", "--dataset", str(data), "--output_dir", str(out), "--max_steps", str(max_steps),
            "--save_steps", "2", "--logging_steps", "1", "--max_eval_samples", "16", "--num_reconstruction_samples",
            "0", "--per_device_train_batch_size", "16", *QUIET, *TINY_MODEL, *extra]


def _python(source: str, *args: str, timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source), *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def _assert_one_error_line(stderr: str, command: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith(f"cmim-hf {command}: error: ")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------------------
# Checkpoints never run code
# ---------------------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates the file `marker`: what an attacker's payload would do, made visible."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _forge_manifest(folder: Path) -> None:
    """Rewrite the manifest to match the folder, as anyone handing over a tampered checkpoint can."""
    import hashlib

    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size,
                                                "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "checkpoint_manifest.json"}
    (folder / "checkpoint_manifest.json").write_text(json.dumps({"step": 2, "files": files}))


@pytest.fixture(scope="module")
def trained_run(moses_csv, tmp_path_factory) -> Path:
    """A finished 2-step run with its checkpoint-2 (made in-process: seconds)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert cli_main(_train_args(moses_csv, out, 2)) == 0
    return out


def test_checkpoints_hold_no_pickled_objects_and_their_state_is_json(trained_run):
    [checkpoint] = find_checkpoints(trained_run)
    names = {p.name for p in checkpoint.iterdir()}
    assert not [n for n in names if n.startswith("custom_checkpoint")], names
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 2
    assert json.loads((checkpoint / "scheduler.json").read_text())["last_epoch"] == 2
    assert set(verify_checkpoint(checkpoint)) >= {"model.safetensors", "optimizer.bin", "scheduler.json"}
    for path in checkpoint.rglob("*"):  # the files only torch.save writes read back without unpickling objects:
        if path.suffix in (".bin", ".pkl"):  # weights_only=True, numpy arrays (random states) allowed besides
            accelerate_load(path)


@pytest.mark.parametrize("where", ["custom_checkpoint_0.pkl", "optimizer.bin", "random_states_0.pkl"])
def test_a_pickle_payload_in_a_checkpoint_never_runs(trained_run, moses_csv, tmp_path, where, capsys):
    # the payload is live: a plain unpickling runs it
    probe = tmp_path / "probe-marker"
    torch.save(_Payload(probe), tmp_path / "probe.pkl")
    torch.load(tmp_path / "probe.pkl", weights_only=False)
    assert probe.exists()

    checkpoint = tmp_path / "checkpoint-2"
    shutil.copytree(find_checkpoints(trained_run)[0], checkpoint)
    marker = tmp_path / "marker"
    torch.save(_Payload(marker), checkpoint / where)
    _forge_manifest(checkpoint)  # integrity holds: only the content is hostile
    assert cli_main(_train_args(moses_csv, tmp_path / "resumed", 4, "--resume_from_checkpoint", str(checkpoint))) == 1
    stderr = capsys.readouterr().err
    _assert_one_error_line(stderr, "train", str(checkpoint))
    assert ("never loads it" if where.startswith("custom") else "could not be loaded") in stderr
    assert not marker.exists(), "code from the checkpoint ran"


def test_verify_checkpoint_refuses_what_its_manifest_does_not_vouch_for(trained_run, tmp_path):
    original = find_checkpoints(trained_run)[0]

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(original, target)
        return target

    extra = copy("extra")
    (extra / "notes.txt").write_text("added later")
    with pytest.raises(CheckpointError, match=r"files its manifest does not list \(notes.txt\)"):
        verify_checkpoint(extra)

    escaping = copy("escaping")
    manifest = json.loads((escaping / "checkpoint_manifest.json").read_text())
    manifest["files"]["../../etc/passwd"] = {"size": 1, "sha256": "0" * 64}
    (escaping / "checkpoint_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"invalid entry '\.\./\.\./etc/passwd'"):
        verify_checkpoint(escaping)

    linked = copy("linked")
    (linked / "optimizer.bin").unlink()
    (linked / "optimizer.bin").symlink_to(original / "optimizer.bin")
    with pytest.raises(CheckpointError, match="links or special files"):
        verify_checkpoint(linked)

    not_json = copy("not-json")
    (not_json / "checkpoint_manifest.json").write_bytes(b"\x80\x03pickle?")
    with pytest.raises(CheckpointError, match="unreadable"):
        verify_checkpoint(not_json)


# ---------------------------------------------------------------------------------------------------------
# Nothing is lost: a kill at the exact moment of a replacement
# ---------------------------------------------------------------------------------------------------------

# Runs `cmim-hf train ARGS` with os.replace wrapped: when the destination's name is DEST, the process SIGKILLs
# itself just before (WHEN=before) or just after (WHEN=after) the rename. A replaced folder takes the two-rename
# path of systems without renameat2 (on Linux it is one exchange, with no moment between two renames to kill:
# tests/test_replace_folder.py).
_KILL_AT_REPLACE = """
    import os, signal, sys
    import cmim_hf.saving
    cmim_hf.saving._exchange = lambda a, b: False
    dest, when, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        hit = os.path.basename(os.fspath(dst)) == dest
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if hit and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    from cmim_hf.cli import main
    sys.exit(main(argv))
"""


def test_a_kill_while_final_is_replaced_loses_nothing_and_the_next_run_restores_it(moses_csv, tmp_path):
    out = tmp_path / "run"
    assert cli_main(_train_args(moses_csv, out, 2)) == 0
    first = load_file(out / "final" / "model.safetensors")

    # resume to step 4: killed after the old final/ went aside, before the new one moved in
    killed = _python(_KILL_AT_REPLACE, "final", "before",
                     *_train_args(moses_csv, out, 4, "--resume_from_checkpoint", "latest"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "final").exists()
    [aside] = list(out.glob(".final.old-*"))
    aside_weights = load_file(aside / "model.safetensors")
    assert all(torch.equal(first[k], aside_weights[k]) for k in first)  # the old version, complete

    # the next run puts it back before anything else, then replaces it properly
    assert cli_main(_train_args(moses_csv, out, 4, "--resume_from_checkpoint", "latest")) == 0
    assert "restored" in (out / "train.log").read_text() and (out / "final" / "config.json").is_file()
    assert not list(out.glob(".final.*"))


def test_a_model_folder_moved_aside_by_a_crash_is_found_by_the_loader(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    killed = _python("""
        import os, signal, sys
        from cmim_hf import load_pretrained, saving
        from cmim_hf.saving import save_model_folder
        saving._exchange = lambda a, b: False  # the two renames of systems without renameat2
        model, tokenizer = load_pretrained(sys.argv[1], device="cpu")
        real_replace = os.replace
        def replace(src, dst, *args, **kwargs):
            if os.fspath(dst) == os.path.realpath(sys.argv[1]):  # the new folder moving in: the old one is aside
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst, *args, **kwargs)
        os.replace = replace
        save_model_folder(model, tokenizer, sys.argv[1])
    """, str(folder))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not folder.exists() and len(list(tmp_path.glob(".model.old-*"))) == 1
    with pytest.warns(UserWarning, match="restored .*model"):
        model, _ = load_pretrained(folder, device="cpu")
    assert resolve_model(folder) == folder.resolve() and not list(tmp_path.glob(".model.old-*"))
    shipped = load_file(SHIPPED / "model.safetensors")
    assert torch.equal(model.state_dict()["model.encoder.embed_tokens.weight"],
                       shipped["model.encoder.embed_tokens.weight"])


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_while_metrics_csv_is_rewritten_on_resume_keeps_every_row(moses_csv, tmp_path, when):
    out = tmp_path / "run"
    assert cli_main(_train_args(moses_csv, out, 4, "--save_total_limit", "3")) == 0
    before = (out / "metrics.csv").read_text()
    kept = [row for row in before.splitlines()[1:] if int(row.split(",")[0]) <= 2]
    shutil.rmtree(out / "checkpoint-4")  # resume from step 2: rows of steps 3-4 are to be dropped

    killed = _python(_KILL_AT_REPLACE, "metrics.csv", when,
                     *_train_args(moses_csv, out, 6, "--resume_from_checkpoint", "latest"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    rows = (out / "metrics.csv").read_text().splitlines()
    # before the rename: the old file, whole; after it: the history up to the resumed step, whole
    assert rows == (before.splitlines() if when == "before" else [before.splitlines()[0], *kept])

    assert cli_main(_train_args(moses_csv, out, 6, "--resume_from_checkpoint", "latest")) == 0
    rows = [tuple(r.split(",")[:2]) for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert len(rows) == len(set(rows))  # one history, no duplicated step
    assert {int(step) for step, _ in rows} == set(range(1, 7))


def test_a_truncated_last_row_of_metrics_csv_is_dropped_on_resume(moses_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(_train_args(moses_csv, out, 2)) == 0
    with (out / "metrics.csv").open("a") as handle:
        handle.write("2,train/lo")  # a row a kill cut short
    assert cli_main(_train_args(moses_csv, out, 3, "--resume_from_checkpoint", "latest")) == 0
    assert "dropped 1 incomplete row" in (out / "train.log").read_text()
    assert "2,train/lo" not in (out / "metrics.csv").read_text().splitlines()  # the cut row is gone


def test_training_refuses_to_overwrite_a_trained_model_without_being_asked(moses_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(_train_args(moses_csv, out, 2, "--save_steps", "0")) == 0
    assert cli_main(_train_args(moses_csv, out, 2, "--save_steps", "0")) == 1
    assert "already holds a trained model (final/)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Model folders are checked before anything is computed
# ---------------------------------------------------------------------------------------------------------


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _edit_weights(folder: Path, edit) -> None:
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _nan_in(weights):
    weights["model.encoder.layers.0.ffn.fc_in.weight"][3, 5] = float("nan")


def _add_tokens(folder: Path) -> None:
    tokenizer = default_smiles_tokenizer()
    tokenizer.add_tokens([f"[X{i}]" for i in range(100)])
    tokenizer.save_pretrained(folder)


BROKEN_FOLDERS = {
    "config not json": (lambda f: (f / "config.json").write_text("{not json"), ValueError,
                        r"config.json is not valid JSON"),
    "config a list": (lambda f: (f / "config.json").write_text("[]"), ValueError, r"config.json must hold a JSON object"),
    "model_type bert": (lambda f: _edit_config(f, model_type="bert"), ValueError,
                        r"model_type 'bert' is not an encoder-decoder: expected a cMIM model"),
    "config out of range": (lambda f: _edit_config(f, latent_size=-1), ValueError,
                            r"config.json does not describe a valid model: .*latent_size"),
    "weights missing": (lambda f: (f / "model.safetensors").unlink(), FileNotFoundError, r"model.safetensors is missing"),
    "weights empty": (lambda f: (f / "model.safetensors").write_bytes(b""), ValueError, r"model.safetensors is empty"),
    "weights truncated": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]),
                          ValueError, r"model.safetensors is not a readable safetensors file .* truncated"),
    "tensor missing": (lambda f: _edit_weights(f, lambda w: w.pop("model.encoder.layers.0.ffn.fc_in.weight")), ValueError,
                       r"lacks weights the model needs \(model.encoder.layers.0.ffn.fc_in.weight\)"),
    "tensor of the wrong shape": (lambda f: _edit_weights(f, lambda w: w.update(
        {"model.encoder.layers.0.ffn.fc_in.weight": torch.zeros(3, 3)})), ValueError,
        r"model.encoder.layers.0.ffn.fc_in.weight is \(3, 3\) in the file, \(512, 128\) in the model"),
    "non-finite weight": (lambda f: _edit_weights(f, _nan_in), ValueError,
                          r"tensor model.encoder.layers.0.ffn.fc_in.weight holds 1 NaN or infinite value"),
    "tokenizer missing": (lambda f: (f / "tokenizer.json").unlink(), FileNotFoundError, r"tokenizer.json is missing"),
    "tokenizer not json": (lambda f: (f / "tokenizer.json").write_text("garbage"), ValueError,
                           r"tokenizer.json is not valid JSON"),
    "tokenizer larger than the vocabulary": (_add_tokens, ValueError,
                                             r"has 843 tokens, but the model's vocabulary has 743 rows"),
}


@pytest.mark.parametrize("case", list(BROKEN_FOLDERS))
def test_broken_model_folders_are_refused_at_load_naming_the_file(tmp_path, case):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    breakage, error_type, message = BROKEN_FOLDERS[case]
    breakage(folder)
    with pytest.raises(error_type, match=message):
        load_pretrained(folder, device="cpu")


def test_a_model_with_nan_weights_is_one_error_line_not_nan_embeddings(tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    _edit_weights(folder, _nan_in)
    assert cli_main(["embed", "CCO", "--model", str(folder)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    _assert_one_error_line(captured.err, "embed", "model.encoder.layers.0.ffn.fc_in.weight", "NaN")


def test_any_transformers_encoder_decoder_folder_passes_the_file_checks(tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration

    tokenizer = default_smiles_tokenizer()
    config = BartConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)
    BartForConditionalGeneration(config).save_pretrained(tmp_path / "bart")
    tokenizer.save_pretrained(tmp_path / "bart")
    assert check_model_files(tmp_path / "bart")["model_type"] == "bart"


def test_save_model_folder_refuses_to_replace_a_file(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    with pytest.raises(NotADirectoryError, match="notes.txt is a file; expected a folder"):
        save_model_folder(CMIMForConditionalGeneration(tiny_config()), default_smiles_tokenizer(), precious)
    assert precious.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_save_model_folder_recovers_an_aside_copy_before_saving(tmp_path):
    model = CMIMForConditionalGeneration(tiny_config()).eval()
    tokenizer = default_smiles_tokenizer()
    target = save_model_folder(model, tokenizer, tmp_path / "m")
    os.replace(target, tmp_path / ".m.old-crash")  # what a kill between the two renames leaves
    (tmp_path / ".m.tmp-crash").mkdir()  # and an unfinished staging folder
    save_model_folder(model, tokenizer, tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# ---------------------------------------------------------------------------------------------------------
# Arguments are checked before any work, one line each
# ---------------------------------------------------------------------------------------------------------

ARGUMENT_ERRORS = [
    (["embed", "CCO", "--device", "bogus"], "device 'bogus' is not a device name"),
    (["embed", "CCO", "--output", "{tmp}"], "is a folder that holds files but no .manifest.json: not a library"),
    (["embed", "CCO", "--output", "{file}/x.npy"], "is a file, not a folder"),
    (["embed", "CCO", "--batch_size", "0"], "argument --batch_size: expected an integer >= 1, got '0'"),
    (["generate", "--radius", "inf", "--around", "CCO"], "argument --radius: expected a finite number >= 0, got 'inf'"),
    (["generate", "--scale", "inf"], "argument --scale: expected a finite number >= 0, got 'inf'"),
    (["generate", "--num_samples", str(10**12)], "argument --num_samples: expected an integer in [1, 1000000]"),
    (["generate", "--output", "{tmp}"], "is a folder"),
    (["generate", "--seed", str(2**70)], "argument --seed: expected an integer in [0, 18446744073709551615]"),
    (["generate", "--radius", "0.5"], "--radius needs --around SMILES"),
    (["evaluate", "cmim-moses-tiny", "--output_dir", "{file}"], "--output_dir {file} is a file; expected a folder"),
    (["evaluate", "cmim-moses-tiny", "--output_dir", "{tmp}/e", "--radii", "nan"], "expected a finite number >= 0"),
    (["train", "--max_grad_norm", "nan"], "`max_grad_norm` must be a finite number, got nan"),
    (["train", "--num_train_epochs", "inf"], "`num_train_epochs` must be a finite number, got inf"),
    (["train", "--seed", "-1"], "`seed` must be an integer in [0, 4294967295], got -1"),
    (["train", "--dataloader_num_workers", "-1"], "`dataloader_num_workers` must be an integer >= 0, got -1"),
    (["train", "--contrastive_temperature", "inf"], "`contrastive_temperature` must be a finite number, got inf"),
    (["train", "--latent_size", "0"], "`latent_size` must be an integer >= 1"),
    (["train", "--output_dir", "{file}"], "--output_dir {file} is a file; expected a folder"),
    (["train", "--recipe", "{recipe}"], "field `learning_rate` must be a number, got [0.1] (list)"),
    (["train", "--no_such_option", "1"], "unrecognized arguments: --no_such_option 1"),
    (["compare", "--batch_sizes", "0"], "argument --batch_sizes: expected an integer >= 1, got '0'"),
    (["compare", "--tasks", "bogus"], "argument --tasks: invalid choice: 'bogus'"),
    (["compare-backbones", "--recipe", "{recipe}"], "field `learning_rate` must be a number, got [0.1] (list)"),
    (["compare-backbones", "--seeds", "0"], "argument --seeds: expected an integer >= 1, got '0'"),
    (["compare-backbones", "--tasks", "bogus"], "argument --tasks: invalid choice: 'bogus'"),
    (["compare-backbones", "--output_dir", "{file}"], "--output_dir {file} is a file; expected a folder"),
    (["benchmark", "--threads", "0"], "argument --threads: expected an integer >= 1, got '0'"),
    (["benchmark", "--sections", "nope"], "unknown section(s) ['nope']"),
    (["benchmark", "--sections", ""], "--sections: name at least one of"),
    (["embed", "--input", "{file}", "--output", "{file}"], "is the file --input reads; write the output elsewhere"),
    (["optimize", "CCO", "--seed", "-1"], "argument --seed: expected an integer in [0, 18446744073709551615]"),
    (["generate", "--between", "CCO", "CCN", "--num_samples", "1"], "--between needs --num_samples >= 2"),
]


@pytest.mark.parametrize("argv, message", ARGUMENT_ERRORS, ids=[" ".join(a[:3]) for a, _ in ARGUMENT_ERRORS])
def test_bad_arguments_are_one_error_line_with_exit_2_before_any_work(argv, message, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: bad\ntraining:\n  learning_rate: [0.1]\n")
    fill = {"tmp": str(tmp_path), "file": str(a_file), "recipe": str(recipe)}
    argv = [arg.format(**fill) for arg in argv]
    with pytest.raises(SystemExit) as exit_info:
        status = cli_main(argv)
        raise SystemExit(status)
    assert exit_info.value.code == 2
    _assert_one_error_line(capsys.readouterr().err, argv[0], message.format(**fill))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "bad.yaml"]  # nothing written


def test_the_python_api_raises_the_matching_built_in_errors():
    model = CMIMForConditionalGeneration(tiny_config()).eval()
    tokenizer = default_smiles_tokenizer()
    with pytest.raises(ValueError, match="radius must be a finite number >= 0, got inf"):
        generate_smiles(model, tokenizer, 2, around="CCO", radius=float("inf"))
    with pytest.raises(ValueError, match="scale must be a finite number >= 0, got nan"):
        generate_smiles(model, tokenizer, 2, scale=float("nan"))
    with pytest.raises(ValueError, match=r"num_samples must be an integer in \[1, 1000000\], got 1000000000000"):
        generate_smiles(model, tokenizer, 10**12)
    with pytest.raises(ValueError, match="device 'bogus' is not a device name"):
        load_pretrained("cmim-moses-tiny", device="bogus")


def test_a_molecule_that_does_not_parse_is_sampled_around_with_a_warning(capsys):
    pytest.importorskip("rdkit")
    assert cli_main(["generate", "--model", "cmim-moses-tiny", "--around", "C1CC(", "--num_samples", "2",
                     "--seed", "0", "--max_new_tokens", "8"]) == 0
    captured = capsys.readouterr()
    assert "cmim-hf generate: warning: --around 'C1CC(' is not a molecule RDKit can parse" in captured.err
    assert len(captured.out.splitlines()) == 2


def test_push_without_network_is_one_error_line(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    card = {name: (folder / name).read_bytes() for name in ("README.md", "card_data.json")}
    with pytest.raises(ConnectionError, match="the Hub is unreachable"):
        push_folder(folder, "me/model")
    assert cli_main(["push", str(folder), "me/model"]) == 1
    _assert_one_error_line(capsys.readouterr().err, "push", "the Hub is unreachable", "nothing was sent")
    # the card named the repo only for the upload that failed: the folder is as it was
    assert {name: (folder / name).read_bytes() for name in card} == card


def test_pushing_a_shipped_checkpoint_leaves_the_package_unchanged(monkeypatch):
    from unittest import mock

    from huggingface_hub import HfApi

    before = {path.name: path.read_bytes() for path in SHIPPED.iterdir() if path.is_file()}
    uploaded = {}

    def upload_folder(self, *, folder_path, **kwargs):
        uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir() if p.is_file()})
        return mock.Mock(commit_url="https://huggingface.co/me/tiny/commit/0", pr_url=None)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with mock.patch.object(HfApi, "create_repo", autospec=True), \
         mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder):
        push_folder(SHIPPED, "me/tiny")
    assert 'repo = "me/tiny"' in uploaded["README.md"].decode()  # the uploaded card names the repo
    assert uploaded["model.safetensors"] == before["model.safetensors"]
    assert {path.name: path.read_bytes() for path in SHIPPED.iterdir() if path.is_file()} == before


# ---------------------------------------------------------------------------------------------------------
# Permissions, SIGPIPE, Ctrl-C
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def other_user_dir():
    """A folder another user can enter, and the command prefix that runs as a user whom permissions bind: root
    reads and writes anything, so as root the commands run as `nobody` (setpriv, from util-linux)."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    folder = Path(tempfile.mkdtemp(prefix="cmim-perm-"))
    folder.chmod(0o755)
    (folder / "home").mkdir()
    (folder / "home").chmod(0o777)
    env = {**ENV, "HOME": str(folder / "home"), "HF_HOME": str(folder / "home" / "hf")}
    yield folder, prefix, env
    shutil.rmtree(folder, ignore_errors=True)


def test_permission_errors_on_inputs_and_outputs_are_one_line(other_user_dir):
    folder, prefix, env = other_user_dir
    unreadable = folder / "secret.smi"
    unreadable.write_text("CCO\n")
    unreadable.chmod(0o000)
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    command = [*prefix, sys.executable, "-m", "cmim_hf.cli", "embed", "--model", str(SHIPPED)]

    output = subprocess.run([*command, "CCO", "--output", str(locked / "x.npy")], capture_output=True, text=True,
                            timeout=300, env=env)
    assert output.returncode == 2
    _assert_one_error_line(output.stderr, "embed", f"cannot write in {locked} (permission denied)")

    reading = subprocess.run([*command, "--input", str(unreadable)], capture_output=True, text=True, timeout=300,
                             env=env)
    assert reading.returncode == 1
    _assert_one_error_line(reading.stderr, "embed", "Permission denied", str(unreadable))


def test_a_closed_pipe_ends_embed_quietly(tmp_path):
    smiles = tmp_path / "many.smi"
    smiles.write_text("CCO\nc1ccccc1\n" * 100)  # 200 rows of ~6 kB: far more than a pipe holds
    reader = subprocess.Popen([sys.executable, "-m", "cmim_hf.cli", "embed", "--input", str(smiles), "--model",
                               str(SHIPPED)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = reader.stdout.readline()
    reader.stdout.close()  # what `| head -1` does
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=300) == 128 + signal.SIGPIPE
    assert first.startswith(b"smiles,cmim_informative_0")
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "error" not in stderr, stderr


def test_ctrl_c_ends_training_with_the_resume_command_which_resumes(moses_csv, tmp_path):
    out = tmp_path / "run"
    args = _train_args(moses_csv, out, 100000, "--max_train_samples", "64")
    run = subprocess.Popen([sys.executable, "-m", "cmim_hf.cli", *args], env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not find_checkpoints(out) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    [note] = [line for line in stderr.splitlines() if line.startswith("cmim-hf train: interrupted")]
    assert "resume (from " in note, stderr[-3000:]
    command = shlex.split(note.split(" with: ", 1)[1])
    assert command[:2] == ["cmim-hf", "train"] and command[-2:] == ["--resume_from_checkpoint", "latest"]
    step = int(find_checkpoints(out)[-1].name.split("-")[1])
    command[command.index("--max_steps") + 1] = str(step + 2)  # finish soon
    assert cli_main(command[1:]) == 0
    assert "resumed from" in (out / "train.log").read_text()


def test_an_unhandled_os_error_of_any_command_is_one_line(monkeypatch, capsys):
    import cmim_hf.commands.generate as generate

    def full_disk(argv):
        raise OSError(28, "No space left on device", "/data/out.txt")

    monkeypatch.setattr(generate, "main", full_disk)
    assert cli_main(["generate"]) == 1
    _assert_one_error_line(capsys.readouterr().err, "generate", "No space left on device", "/data/out.txt")



@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", "empty.csv is empty; expected .csv rows"),
    ("header.csv", "smiles\n", "cannot read {path} as .csv: "),
    ("broken.jsonl", '{"text": "CCO"}\n{"text": \n', "cannot read {path} as .jsonl: "),
])
def test_a_data_file_datasets_cannot_read_is_one_error_line_naming_it(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    assert cli_main(_train_args(path, tmp_path / "run", 2)) == 1
    _assert_one_error_line(capsys.readouterr().err, "train", str(path), message.format(path=path))
    assert cli_main(["embed", "--input", str(path), "--model", str(SHIPPED)]) == 1
    _assert_one_error_line(capsys.readouterr().err, "embed", str(path), message.format(path=path))


@pytest.mark.parametrize("argv, option", [
    (["embed", "CCO", "--output", ""], "--output"),
    (["generate", "--output", " "], "--output"),
    (["optimize", "CCO", "--output", ""], "--output"),
    (["evaluate", "cmim-moses-tiny", "--output_dir", ""], "--output_dir"),
    (["train", "--output_dir", ""], "--output_dir"),
])
def test_an_empty_output_path_is_refused_not_taken_for_stdout_or_the_default(argv, option, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # Path("") is the current folder: nothing may land there
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(cli_main(argv))
    assert exit_info.value.code == 2
    _assert_one_error_line(capsys.readouterr().err, argv[0], f"{option} is empty; expected a path")
    assert list(tmp_path.iterdir()) == []


def test_optimize_checks_its_output_before_the_search(tmp_path, capsys):
    (tmp_path / "results.csv").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(cli_main(["optimize", "CCO", "--output", str(tmp_path / "results.csv")]))
    assert exit_info.value.code == 2
    _assert_one_error_line(capsys.readouterr().err, "optimize", "results.csv is a folder; expected the path of a file")


def test_a_pytorch_model_bin_with_a_payload_is_one_error_line_and_never_runs(tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "marker"
    torch.save(_Payload(marker), folder / "pytorch_model.bin")
    assert cli_main(["embed", "CCO", "--model", str(folder)]) == 1
    _assert_one_error_line(capsys.readouterr().err, "embed", "pytorch_model.bin holds pickled objects", "not loaded")
    assert not marker.exists()


@pytest.mark.parametrize("command", [["generate"], ["embed", "CCO"]])
def test_an_output_that_is_a_device_or_pipe_is_refused_not_renamed_over(command, tmp_path, capsys):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # what /dev/full or /dev/stdout are to the atomic write: not a regular file
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(cli_main([*command, "--output", str(fifo)]))
    assert exit_info.value.code == 2
    _assert_one_error_line(capsys.readouterr().err, command[0], f"{fifo} is a device, pipe or socket")
    assert fifo.is_fifo()


def test_push_of_a_damaged_model_names_the_file_before_any_network(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:1000])  # truncated
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # never reached
    with pytest.raises(ValueError, match=r"model\.safetensors is not a readable safetensors file"):
        push_folder(folder, "me/model")


def test_generate_refuses_more_new_tokens_than_the_model_has_positions(capsys):
    model, tokenizer = load_pretrained("cmim-moses-tiny", device="cpu")
    longest = model.config.max_position_embeddings - 1
    assert len(generate_smiles(model, tokenizer, 2, max_new_tokens=longest, seed=0)) == 2
    with pytest.raises(ValueError, match=rf"max_new_tokens must be an integer in \[1, {longest}\], got 1000000000"):
        generate_smiles(model, tokenizer, 2, max_new_tokens=10**9)
    assert cli_main(["generate", "--model", "cmim-moses-tiny", "--max_new_tokens", str(10**9)]) == 1
    _assert_one_error_line(capsys.readouterr().err, "generate", "max_new_tokens must be an integer in [1, ")


def test_optimize_refuses_more_new_tokens_than_the_model_has_positions():
    from cmim_hf import optimize_molecules

    model, tokenizer = load_pretrained("cmim-moses-tiny", device="cpu")
    with pytest.raises(ValueError, match=r"max_new_tokens must be an integer in \[1, "):
        optimize_molecules(model, tokenizer, ["CCO"], budget=2, max_new_tokens=10**6)
