"""Hostile-user corpus for issue 17, run against an installed cmim-hf (a venv).

    OMP_NUM_THREADS=1 VENV/bin/python run_corpus.py --venv VENV [--only SUBSTRING] [--results results.md]

Each case runs one command (the CLI, or a Python API snippet) in a subprocess with a timeout, and is classified:
  a  a clear one-line error naming the input (`cmim-hf <command>: error: ...`, or the expected built-in exception)
  b  documented handling (a warning line, a documented behaviour)
  c  a traceback, or an unhelpful/library message (or an error line that does not name the input)
  d  accepted silently with wrong or empty output
  e  lost data (a file that existed before is gone or damaged)
  f  code ran from a checkpoint or a model folder (a marker file appeared)
The workspace is recreated on every run (--work). The classification is automatic; the `note` column says why.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
TINY = ["--encoder_hidden_size", "32", "--decoder_hidden_size", "32", "--encoder_layers", "1", "--decoder_layers", "1",
        "--encoder_attention_heads", "2", "--decoder_attention_heads", "2", "--encoder_ffn_dim", "64",
        "--decoder_ffn_dim", "64", "--latent_size", "8"]
QUIET = ["--disable_tqdm", "--report_to", "csv"]


class Payload:
    """Unpickling this writes the marker file: a checkpoint/model payload made visible."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@dataclasses.dataclass
class Case:
    name: str
    kind: str                          # model | checkpoint | kill | number | output | data | smiles | api | signal | push
    argv: list | None = None           # cmim-hf arguments ({w} = case folder, {tiny}, {csv}, {run}, ...)
    expect: str = "error"              # error | warn | ok | either (an error line or success are both fine)
    frags: tuple = ()                  # substrings the error / warning line must hold (case-insensitive)
    setup: Callable | None = None      # setup(w): prepare the case folder
    check: Callable | None = None      # check(w, result) -> (class, note) or None: overrides the automatic verdict
    api: str | None = None             # a Python snippet instead of argv (prints RAISED <Type>: msg on an exception)
    api_types: tuple = ("ValueError", "TypeError")
    shell: str | None = None           # a shell pipeline instead of argv
    runner: Callable | None = None     # runner(case, w) -> Result, for signal cases
    timeout: int = 240
    env: dict | None = None
    precious: tuple = ()               # files (relative to w) whose content must survive: else class e


@dataclasses.dataclass
class Result:
    rc: int | None
    out: str
    err: str
    seconds: float
    timed_out: bool = False


# ---------------------------------------------------------------------------------------------------------------
# the environment under test
# ---------------------------------------------------------------------------------------------------------------

ARGS = None
CTX: dict = {}


def env_for(case: Case) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", PATH=f"{ARGS.venv}/bin:" + env.get("PATH", ""))
    if case.env:
        for key, value in case.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
    return env


def fill(text: str, w: Path) -> str:
    return text.format(w=w, **CTX)


def command_of(case: Case, w: Path) -> list[str]:
    if case.shell is not None:
        return ["bash", "-c", fill(case.shell, w)]
    if case.api is not None:
        wrapper = textwrap.dedent("""
            import sys, traceback
            try:
                exec(compile(sys.argv[1], "<case>", "exec"))
            except BaseException as error:
                print(f"RAISED {type(error).__name__}: {error}".splitlines()[0])
                sys.exit(3)
        """)
        return [f"{ARGS.venv}/bin/python", "-c", wrapper, fill(textwrap.dedent(case.api), w)]
    return [f"{ARGS.venv}/bin/cmim-hf", *[fill(a, w) for a in case.argv]]


def run(cmd: list[str], case: Case, w: Path) -> Result:
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=case.timeout, env=env_for(case), cwd=w,
                              errors="replace")
        return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - start)
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        err = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else (expired.stderr or "")
        return Result(None, out, err, time.monotonic() - start, timed_out=True)


def command_name(case: Case) -> str:
    return case.argv[0] if case.argv else ""


def digest(path: Path) -> str:
    if path.is_dir():
        return "dir:" + ",".join(sorted(f"{p.relative_to(path)}:{hashlib.sha256(p.read_bytes()).hexdigest()[:12]}"
                                        for p in path.rglob("*") if p.is_file()))
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


def classify(case: Case, w: Path, r: Result, before: dict) -> tuple[str, str]:
    if list(w.rglob("marker*")) or (CTX.get("marker_root") and list(Path(CTX["marker_root"]).glob(f"{case.name}*"))):
        return "f", "the payload's marker file appeared"
    for rel, old in before.items():
        if digest(w / rel) != old:
            return "e", f"{rel} changed or vanished"
    if case.check is not None:
        verdict = case.check(w, r)
        if verdict is not None:
            return verdict
    if r.timed_out:
        return "d", f"still running after {case.timeout} s (accepted, not refused)"
    if "Traceback (most recent call last)" in r.err or "Traceback (most recent call last)" in r.out:
        return "c", "traceback"
    frags = [fill(f, w).lower() for f in case.frags]
    if case.api is not None:
        raised = [line for line in r.out.splitlines() if line.startswith("RAISED ")]
        if case.expect == "error":
            if not raised:
                return "d", "no exception raised"
            kind = raised[0][7:].split(":", 1)[0]
            if kind in case.api_types and all(f in raised[0].lower() for f in frags):
                return "a", ""
            return "c", f"unexpected {kind} or message"
        if raised:
            return "c", "raised"
        return "b", ""
    name = command_name(case)
    prefix = f"cmim-hf {name}: error: " if name else "cmim-hf "
    errors = [line for line in r.err.splitlines() if line.startswith(prefix) and ": error: " in line]
    warnings = [line for line in r.err.splitlines() if "warning" in line.lower()]
    if case.expect in ("error", "either"):
        if r.rc not in (0, None) and len(errors) == 1:
            if all(f in errors[0].lower() for f in frags):
                return "a", ""
            return "c", "error line does not name the input: " + ", ".join(f for f in frags if f not in errors[0].lower())
        if r.rc == 0:
            if case.expect == "either":
                return "b", "accepted (valid)"
            return "d", "exit 0: accepted"
        return "c", f"exit {r.rc} without one error line"
    if case.expect == "warn":
        if r.rc == 0 and any(all(f in line.lower() for f in frags) for line in warnings):
            return "b", ""
        if r.rc not in (0, None) and len(errors) == 1 and all(f in errors[0].lower() for f in frags):
            return "a", "refused (stricter than a warning)"
        return ("d", "exit 0 without the expected warning") if r.rc == 0 else ("c", f"exit {r.rc}")
    if case.expect == "ok":
        return ("b", "") if r.rc == 0 else ("c", f"exit {r.rc}")
    raise ValueError(case.expect)


# ---------------------------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------------------------

def model_copy(w: Path) -> Path:
    folder = w / "model"
    shutil.copytree(CTX["tiny"], folder)
    return folder


def edit_config(**changes):
    def setup(w):
        folder = model_copy(w)
        config = json.loads((folder / "config.json").read_text())
        for key, value in changes.items():
            if value is KeyError:
                config.pop(key, None)
            else:
                config[key] = value
        (folder / "config.json").write_text(json.dumps(config))
    return setup


def write_file(rel: str, data: bytes | str):
    def setup(w):
        folder = model_copy(w)
        target = folder / rel
        if target.is_dir():
            shutil.rmtree(target)
        if isinstance(data, str):
            target.write_text(data)
        else:
            target.write_bytes(data)
    return setup


def transform_file(rel: str, edit: Callable[[bytes], bytes]):
    def setup(w):
        folder = model_copy(w)
        (folder / rel).write_bytes(edit((folder / rel).read_bytes()))
    return setup


def edit_weights(edit):
    def setup(w):
        folder = model_copy(w)
        weights = load_file(folder / "model.safetensors")
        edit(weights)
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return setup


def first_key(weights, needle: str) -> str:
    return next(k for k in sorted(weights) if needle in k)


def set_value(needle: str, value: float):
    def edit(weights):
        key = first_key(weights, needle)
        weights[key] = weights[key].clone()
        weights[key].view(-1)[0] = value
    return edit


def tokenizer_with_extra(n: int):
    def setup(w):
        from transformers import AutoTokenizer
        folder = model_copy(w)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.add_tokens([f"[Q{i}]" for i in range(n)])
        tokenizer.save_pretrained(folder)
    return setup


def forge_manifest(folder: Path, step: int = 2) -> None:
    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size,
                                                "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "checkpoint_manifest.json"}
    old = json.loads((folder / "checkpoint_manifest.json").read_text()) if (folder / "checkpoint_manifest.json").exists() else {}
    (folder / "checkpoint_manifest.json").write_text(json.dumps({**old, "step": old.get("step", step), "files": files}))


def checkpoint_copy(w: Path) -> Path:
    target = w / "checkpoint-2"
    shutil.copytree(CTX["checkpoint"], target)
    return target


def checkpoint_with(edit, forge: bool = True):
    def setup(w):
        folder = checkpoint_copy(w)
        edit(w, folder)
        if forge:
            forge_manifest(folder)
    return setup


def payload_at(name: str):
    def edit(w, folder):
        torch.save(Payload(w / "marker"), folder / name)
    return edit


def train_argv(*extra, out="{w}/run", steps="2"):
    return ["train", "--dataset", "{csv}", "--output_dir", out, "--max_steps", steps, "--save_steps", "2",
            "--max_eval_samples", "8", "--num_reconstruction_samples", "0", "--per_device_train_batch_size", "8",
            *QUIET, *TINY, *extra]


def data_file(name: str, data: bytes | str):
    def setup(w):
        target = w / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            target.write_text(data)
        else:
            target.write_bytes(data)
    return setup


def gz_corrupt(name: str):
    def setup(w):
        import gzip
        blob = gzip.compress(("smiles\n" + "CCO\n" * 200).encode())
        (w / name).write_bytes(blob[: len(blob) // 2])
    return setup


def a_file(w: Path) -> None:
    (w / "a_file").write_text("mine\n")


def locked_dir(w: Path) -> None:
    (w / "locked").mkdir()
    (w / "locked").chmod(0o555)


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def nobody_env(w: Path) -> dict:
    return {"HOME": str(w / "home"), "HF_HOME": str(w / "home" / "hf")}


# ---------------------------------------------------------------------------------------------------------------
# custom runners: kills at replacement moments, signals, pipes
# ---------------------------------------------------------------------------------------------------------------

KILL_AT_REPLACE = """
import os, signal, sys
dest, when, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
real_replace = os.replace
def replace(src, dst, *args, **kwargs):
    hit = os.path.basename(os.fspath(dst)).startswith(dest)
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, *args, **kwargs)
    if hit and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from cmim_hf.cli import main
sys.exit(main(argv))
"""


def kill_then(dest: str, when: str, first: list, then: list | None, verify: Callable):
    """Run `first` (plain), then `first'`-like `kill` argv under KILL_AT_REPLACE, then `then` (plain); verify(w)
    says whether anything was lost: returns (class, note)."""
    def runner(case: Case, w: Path) -> Result:
        start = time.monotonic()
        log = []
        for step, argv in (("setup", first), ("killed", None), ("after", then)):
            if step == "killed":
                cmd = [f"{ARGS.venv}/bin/python", "-c", KILL_AT_REPLACE, dest, when, *[fill(a, w) for a in case.argv]]
            elif argv is None:
                continue
            else:
                cmd = [f"{ARGS.venv}/bin/cmim-hf", *[fill(a, w) for a in argv]]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=case.timeout, env=env_for(case), cwd=w)
            log.append((step, done.returncode, done.stderr))
            if step == "setup":
                case_snapshot(w)
        err = "\n".join(f"[{s} exit {rc}] " + e[-1500:] for s, rc, e in log)
        rc = log[-1][1]
        return Result(rc, "", err, time.monotonic() - start)
    return runner


def case_snapshot(w: Path) -> None:
    for name in ("run/final", "run/metrics.csv", "out.npy", "out.txt", "model"):
        path = w / name
        if path.exists():
            (w / ".snapshots").mkdir(exist_ok=True)
            (w / ".snapshots" / name.replace("/", "_")).write_text(digest(path))


def snapshot(w: Path, name: str) -> str:
    path = w / ".snapshots" / name.replace("/", "_")
    return path.read_text() if path.exists() else "none"


def signal_runner(sig: int, wait_for: Callable[[Path], bool], max_wait: float = 180, stdin_big: bool = False):
    def runner(case: Case, w: Path) -> Result:
        start = time.monotonic()
        proc = subprocess.Popen(command_of(case, w), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env_for(case), cwd=w,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline and proc.poll() is None and not wait_for(w):
            time.sleep(0.2)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=case.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return Result(None, out, err, time.monotonic() - start, timed_out=True)
        return Result(proc.returncode, out, err, time.monotonic() - start)
    return runner


def after_seconds(seconds: float):
    begin = {}

    def ready(w):
        begin.setdefault("t", time.monotonic())
        return time.monotonic() - begin["t"] > seconds
    return ready


def interrupted_check(expect_files_absent: tuple = ()):
    def check(w, r):
        if r.rc == 0:
            return "b", "finished before the signal"
        if "Traceback" in r.err:
            return "c", "traceback"
        if r.rc != 130 or "interrupted" not in r.err:
            return "c", f"exit {r.rc} without the interrupted line"
        for name in expect_files_absent:
            if (w / name).exists():
                return "d", f"half-written {name} left"
        left = [p.name for p in w.rglob("*") if ".tmp" in p.name]
        if left:
            return "d", f"temporary files left: {left}"
        return "b", "interrupted line, exit 130"
    return check


# ---------------------------------------------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------------------------------------------

def cases() -> list[Case]:
    C = []
    embed_model = lambda *extra: ["embed", "CCO", "c1ccccc1O", "--model", "{w}/model", *extra]

    # ---- bad model folders (embed, and a few through other commands) ----
    half = lambda b: b[: len(b) // 2]
    C += [
        Case("model/safetensors cut in half", "model", embed_model(), frags=("model.safetensors",),
             setup=transform_file("model.safetensors", half)),
        Case("model/safetensors only the 8-byte header length", "model", embed_model(), frags=("model.safetensors",),
             setup=transform_file("model.safetensors", lambda b: b[:8])),
        Case("model/safetensors header length huge", "model", embed_model(), frags=("model.safetensors",),
             setup=transform_file("model.safetensors", lambda b: (2**62).to_bytes(8, "little") + b[8:])),
        Case("model/safetensors header not JSON", "model", embed_model(), frags=("model.safetensors",),
             setup=transform_file("model.safetensors", lambda b: b[:8] + b"\xff" * 20 + b[28:])),
        Case("model/safetensors last byte dropped", "model", embed_model(), frags=("model.safetensors",),
             setup=transform_file("model.safetensors", lambda b: b[:-1])),
        Case("model/safetensors is a folder", "model", embed_model(), frags=("model.safetensors",),
             setup=lambda w: (lambda f: ((f / "model.safetensors").unlink(), (f / "model.safetensors").mkdir()))(model_copy(w))),
        Case("model/safetensors holds a pickle payload", "model", embed_model(), frags=("model.safetensors",),
             setup=lambda w: torch.save(Payload(w / "marker"), model_copy(w) / "model.safetensors")),
        Case("model/pytorch_model.bin pickle payload instead of safetensors", "model", embed_model(),
             frags=("model.safetensors",),
             setup=lambda w: (lambda f: ((f / "model.safetensors").unlink(),
                                         torch.save(Payload(w / "marker"), f / "pytorch_model.bin")))(model_copy(w))),
        Case("model/pytorch_model.bin payload beside good safetensors", "model", embed_model(), expect="either",
             setup=lambda w: torch.save(Payload(w / "marker"), model_copy(w) / "pytorch_model.bin")),
        Case("model/modeling_cmim.py in folder writes marker on import", "model", embed_model(), expect="either",
             setup=lambda w: (model_copy(w) / "modeling_cmim.py").write_text(
                 f"open({str(w / 'marker')!r}, 'w').close()\n" + (Path(CTX['tiny']) / "modeling_cmim.py").read_text()
                 if (Path(CTX['tiny']) / "modeling_cmim.py").exists() else f"open({str(w / 'marker')!r}, 'w').close()\n")),
        Case("model/auto_map to hostile module", "model", embed_model(), expect="either",
             setup=lambda w: (lambda f: ((f / "evil.py").write_text(f"open({str(w / 'marker')!r}, 'w').close()\n"),
                                         edit_config_in(f, auto_map={"AutoModel": "evil.Evil",
                                                                     "AutoModelForSeq2SeqLM": "evil.Evil"})))(model_copy(w))),
        Case("model/embedding rows fewer than vocab", "model", embed_model(), frags=("embed_tokens",),
             setup=edit_weights(lambda wt: wt.update({first_key(wt, "embed_tokens"): wt[first_key(wt, "embed_tokens")][:10]}))),
        Case("model/tensor transposed", "model", embed_model(), frags=("fc_in.weight",),
             setup=edit_weights(lambda wt: wt.update({first_key(wt, "fc_in.weight"): wt[first_key(wt, "fc_in.weight")].t().contiguous()}))),
        Case("model/tensor int64 dtype", "model", embed_model(), expect="either", frags=("fc_in.weight",),
             setup=edit_weights(lambda wt: wt.update({first_key(wt, "fc_in.weight"): wt[first_key(wt, "fc_in.weight")].long()}))),
        Case("model/extra unexpected tensor", "model", embed_model(), expect="either",
             setup=edit_weights(lambda wt: wt.update({"model.bogus.weight": torch.zeros(3)}))),
        Case("model/inf in layer norm", "model", embed_model(), frags=("norm",),
             setup=edit_weights(set_value("norm.weight", float("inf")))),
        Case("model/-inf in embedding", "model", embed_model(), frags=("embed_tokens",),
             setup=edit_weights(set_value("embed_tokens", float("-inf")))),
        Case("model/nan in a bias", "model", embed_model(), frags=("bias",),
             setup=edit_weights(set_value("fc_out.bias", float("nan")))),
        Case("model/nan weights through generate", "model",
             ["generate", "--model", "{w}/model", "--num_samples", "2", "--max_new_tokens", "8"], frags=("nan",),
             setup=edit_weights(set_value("embed_tokens", float("nan")))),
        Case("model/huge finite weights (1e38) overflow", "model", embed_model(), expect="either",
             check=lambda w, r: ("d", "nan/inf in the printed embedding") if r.rc == 0 and ("nan" in r.out or "inf" in r.out) else None,
             setup=edit_weights(lambda wt: wt.update({first_key(wt, "embed_tokens"): torch.full_like(wt[first_key(wt, "embed_tokens")], 3e38)}))),
        Case("model/config.json empty", "model", embed_model(), frags=("config.json",), setup=write_file("config.json", "")),
        Case("model/config.json truncated", "model", embed_model(), frags=("config.json",),
             setup=transform_file("config.json", half)),
        Case("model/config.json binary", "model", embed_model(), frags=("config.json",),
             setup=write_file("config.json", os.urandom(200))),
        Case("model/config.json missing", "model", embed_model(), frags=("config.json",),
             setup=lambda w: (model_copy(w) / "config.json").unlink()),
        Case("model/config.json is a folder", "model", embed_model(), frags=("config.json",),
             setup=lambda w: (lambda f: ((f / "config.json").unlink(), (f / "config.json").mkdir()))(model_copy(w))),
        Case("model/model_type gpt2", "model", embed_model(), frags=("gpt2",), setup=edit_config(model_type="gpt2")),
        Case("model/model_type missing", "model", embed_model(), frags=("model_type",), setup=edit_config(model_type=KeyError)),
        Case("model/model_type unknown string", "model", embed_model(), frags=("nonsense",), setup=edit_config(model_type="nonsense")),
        Case("model/model_type an int", "model", embed_model(), frags=("model_type",), setup=edit_config(model_type=7)),
        Case("model/vocab_size a string", "model", embed_model(), frags=("vocab_size",), setup=edit_config(vocab_size="many")),
        Case("model/vocab_size negative", "model", embed_model(), frags=("vocab_size",), setup=edit_config(vocab_size=-3)),
        Case("model/hidden size disagrees with weights", "model", embed_model(), frags=("model.safetensors",),
             setup=edit_config(encoder_hidden_size=64)),
        Case("model/dropout 7 in config", "model", embed_model(), frags=("dropout",), expect="either", setup=edit_config(dropout=7)),
        Case("model/tokenizer.json truncated", "model", embed_model(), frags=("tokenizer.json",),
             setup=transform_file("tokenizer.json", half)),
        Case("model/tokenizer.json empty object", "model", embed_model(), frags=("tokenizer.json",),
             setup=write_file("tokenizer.json", "{}")),
        Case("model/tokenizer.json binary", "model", embed_model(), frags=("tokenizer.json",),
             setup=write_file("tokenizer.json", os.urandom(300))),
        Case("model/tokenizer_config.json broken", "model", embed_model(), frags=("tokenizer_config.json",),
             setup=write_file("tokenizer_config.json", "{'single': quotes}")),
        Case("model/tokenizer_config.json missing", "model", embed_model(), expect="either", frags=("tokenizer",),
             setup=lambda w: (model_copy(w) / "tokenizer_config.json").unlink()),
        Case("model/all tokenizer files missing", "model", embed_model(), frags=("tokenizer",),
             setup=lambda w: [p.unlink() for p in model_copy(w).glob("*") if "token" in p.name]),
        Case("model/tokenizer one token larger than model", "model", embed_model(), frags=("tokenizer",),
             setup=tokenizer_with_extra(1)),
        Case("model/tokenizer 3 tokens larger, via generate", "model",
             ["generate", "--model", "{w}/model", "--num_samples", "2", "--max_new_tokens", "8"], frags=("tokenizer",),
             setup=tokenizer_with_extra(3)),
        Case("model/folder does not exist", "model", ["embed", "CCO", "--model", "{w}/nope"], frags=("nope",)),
        Case("model/folder is a file", "model", ["embed", "CCO", "--model", "{w}/a_file"], frags=("a_file",), setup=a_file),
        Case("model/folder empty", "model", ["embed", "CCO", "--model", "{w}/empty"], frags=("empty",),
             setup=lambda w: (w / "empty").mkdir()),
        Case("model/hub id offline not cached", "model", ["embed", "CCO", "--model", "someone/not-a-model"],
             frags=("someone/not-a-model",)),
        Case("model/bad model through evaluate", "model",
             ["evaluate", "{w}/model", "--output_dir", "{w}/ev", "--tasks", "freesolv"], frags=("config.json",),
             setup=write_file("config.json", "{")),
        Case("model/bad model through optimize", "model",
             ["optimize", "CCO", "--model", "{w}/model", "--budget", "4"], frags=("model.safetensors",),
             setup=transform_file("model.safetensors", half)),
        Case("model/bad model through refresh keeps the folder", "model", ["refresh", "{w}/model"],
             frags=("model.safetensors",), setup=transform_file("model.safetensors", half)),
    ]

    # ---- checkpoints ----
    resume = lambda *extra: train_argv("--resume_from_checkpoint", "{w}/checkpoint-2", *extra, steps="4")
    C += [
        Case("ckpt/custom_checkpoint_1.pkl payload forged manifest", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(payload_at("custom_checkpoint_1.pkl"))),
        Case("ckpt/random_states_1.pkl payload forged manifest", "checkpoint", resume(), expect="either", frags=("checkpoint-2",),
             setup=checkpoint_with(payload_at("random_states_1.pkl"))),
        Case("ckpt/scheduler.bin payload forged manifest", "checkpoint", resume(), expect="either", frags=("checkpoint-2",),
             setup=checkpoint_with(payload_at("scheduler.bin"))),
        Case("ckpt/model.safetensors replaced by pickle forged", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(payload_at("model.safetensors"))),
        Case("ckpt/optimizer.bin payload manifest NOT forged", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(payload_at("optimizer.bin"), forge=False)),
        Case("ckpt/payload in a subfolder forged", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: ((f / "sub").mkdir(), torch.save(Payload(w / "marker"), f / "sub" / "x.pt")))),
        Case("ckpt/trainer_state.json pickle bytes forged", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(payload_at("trainer_state.json"))),
        Case("ckpt/payload, resume latest", "checkpoint",
             train_argv("--resume_from_checkpoint", "latest", out="{w}/run", steps="4"), expect="either",
             setup=lambda w: (shutil.copytree(CTX["run"], w / "run"),
                              [p.unlink() for p in (w / "run").glob("checkpoint-*/optimizer.bin")],
                              [torch.save(Payload(w / "marker"), c / "optimizer.bin") for c in (w / "run").glob("checkpoint-*")],
                              [forge_manifest(c) for c in (w / "run").glob("checkpoint-*")])),
        Case("ckpt/manifest deleted", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: (f / "checkpoint_manifest.json").unlink(), forge=False)),
        Case("ckpt/manifest empty file", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: (f / "checkpoint_manifest.json").write_text(""), forge=False)),
        Case("ckpt/manifest a JSON list", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: (f / "checkpoint_manifest.json").write_text("[1,2]"), forge=False)),
        Case("ckpt/manifest absolute path entry", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: edit_manifest(f, lambda m: m["files"].update(
                 {"/etc/hostname": {"size": 1, "sha256": "0" * 64}})), forge=False)),
        Case("ckpt/manifest size as string", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: edit_manifest(f, lambda m: [v.update(size="big") for v in m["files"].values()]),
                                   forge=False)),
        Case("ckpt/one bit flipped in weights", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: flip_byte(f / "model.safetensors"), forge=False)),
        Case("ckpt/file missing that the manifest lists", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: (f / "scheduler.json").unlink(), forge=False)),
        Case("ckpt/trainer_state global_step -5 forged", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: edit_json(f / "trainer_state.json", global_step=-5))),
        Case("ckpt/trainer_state not JSON forged", "checkpoint", resume(), frags=("checkpoint-2",),
             setup=checkpoint_with(lambda w, f: (f / "trainer_state.json").write_text("step=2"))),
        Case("ckpt/path does not exist", "checkpoint", train_argv("--resume_from_checkpoint", "{w}/checkpoint-99", steps="4"),
             frags=("checkpoint-99",)),
        Case("ckpt/path is a file", "checkpoint", train_argv("--resume_from_checkpoint", "{w}/a_file", steps="4"),
             frags=("a_file",), setup=a_file),
        Case("ckpt/from a different geometry", "checkpoint",
             train_argv("--resume_from_checkpoint", "{w}/checkpoint-2", "--latent_size", "16", steps="4"),
             frags=("checkpoint-2",), setup=checkpoint_with(lambda w, f: None, forge=False)),
        Case("ckpt/all checkpoints of run damaged, resume latest", "checkpoint",
             train_argv("--resume_from_checkpoint", "latest", steps="4"), expect="warn", frags=("checkpoint",),
             setup=lambda w: (shutil.copytree(CTX["run"], w / "run"),
                              [flip_byte(c / "model.safetensors") for c in (w / "run").glob("checkpoint-*")])),
        Case("ckpt/metrics.csv binary garbage, resume latest", "checkpoint",
             train_argv("--resume_from_checkpoint", "latest", steps="4"), expect="either", frags=("metrics.csv",),
             setup=lambda w: (shutil.copytree(CTX["run"], w / "run"), (w / "run" / "metrics.csv").write_bytes(os.urandom(500)))),
    ]

    # ---- kill -9 at the replacement moments (new variants) ----
    C += [
        Case("kill/final replaced: killed just AFTER new final moved in", "kill", train_argv("--resume_from_checkpoint", "latest", steps="4"),
             runner=kill_then("final", "after", train_argv(), train_argv("--resume_from_checkpoint", "latest", steps="4"),
                              None),
             check=lambda w, r: final_ok(w, r)),
        Case("kill/old checkpoint rotation: killed when the old one is moved aside", "kill",
             train_argv("--resume_from_checkpoint", "latest", "--save_total_limit", "1", steps="4"),
             runner=kill_then(".checkpoint-2", "after", train_argv(), train_argv("--resume_from_checkpoint", "latest", "--save_total_limit", "1", steps="4"), None),
             check=lambda w, r: ckpt_ok(w, r)),
        Case("kill/embed --output existing .npy: killed before replace", "kill",
             ["embed", "CCO", "CCN", "--model", "{tiny}", "--output", "{w}/out.npy"],
             runner=kill_then("out.npy", "before", ["embed", "CCO", "--model", "{tiny}", "--output", "{w}/out.npy"], None, None),
             check=lambda w, r: same_as_snapshot(w, "out.npy", r)),
        Case("kill/generate --output existing file: killed before replace", "kill",
             ["generate", "--model", "{tiny}", "--num_samples", "3", "--max_new_tokens", "8", "--output", "{w}/out.txt"],
             runner=kill_then("out.txt", "before", ["generate", "--model", "{tiny}", "--num_samples", "2", "--max_new_tokens", "8",
                                                    "--output", "{w}/out.txt"], None, None),
             check=lambda w, r: same_as_snapshot(w, "out.txt", r)),
        Case("kill/refresh of a model folder: killed as the new folder moves in; embed restores", "kill",
             ["refresh", "{w}/model"],
             runner=kill_then("model", "before", None, ["embed", "CCO", "--model", "{w}/model"], None),
             setup=lambda w: model_copy(w), check=lambda w, r: refresh_ok(w, r)),
    ]

    # ---- bad numbers ----
    T = lambda flag, value, frag=None, expect="error": Case(f"num/train {flag} {value}", "number",
                                                             train_argv(flag, value), expect=expect,
                                                             frags=(frag or flag.strip("-"),), timeout=150)
    C += [T("--learning_rate", "nan"), T("--learning_rate", "-1e-3"), T("--learning_rate", "inf"),
          T("--max_steps", str(10**30)), T("--per_device_train_batch_size", "0"), T("--per_device_train_batch_size", "-4"),
          T("--per_device_eval_batch_size", "0"), T("--gradient_accumulation_steps", "0"), T("--warmup_steps", "-1"),
          T("--warmup_steps", "nan"), T("--weight_decay", "nan"), T("--adam_beta1", "1.5"), T("--adam_beta2", "-0.1"),
          T("--adam_epsilon", "-1"), T("--max_length", "0"), T("--max_length", str(10**12)), T("--logging_steps", "0"),
          T("--eval_steps", "nan"), T("--save_total_limit", "-1"), T("--dropout", "1.5"), T("--dropout", "nan"),
          T("--vae_beta", "inf"), T("--min_log_scale", "nan"), T("--init_std", "-1"), T("--latent_tokens", "0"),
          T("--encoder_attention_heads", "3"), T("--max_train_samples", "-5"), T("--max_eval_samples", "-1"),
          T("--num_reconstruction_samples", "-1"), T("--pad_to_multiple_of", "0"), T("--max_position_embeddings", "0"),
          T("--latent_loss_warmup_steps", "-1"), T("--reconstruction_weight", "nan"), T("--contrastive_weight", "-inf"),
          T("--decoder_input_dropout", "2"), T("--num_train_epochs", "-1"), T("--shuffle_buffer_size", "0"),
          T("--preprocessing_num_workers", "-2"), T("--max_grad_norm", "inf")]
    G = lambda *argv, frag, expect="error": Case("num/generate " + " ".join(argv), "number",
                                                 ["generate", "--model", "{tiny}", "--max_new_tokens", "8", *argv],
                                                 expect=expect, frags=(frag,), timeout=120)
    C += [G("--num_samples", "0", frag="--num_samples"), G("--num_samples", "-3", frag="--num_samples"),
          G("--num_samples", "nan", frag="--num_samples"), G("--around", "CCO", "--radius", "-1", frag="--radius"),
          G("--around", "CCO", "--radius", "nan", frag="--radius"), G("--scale", "-1", frag="--scale"),
          G("--seed", "-1", frag="--seed"), G("--max_new_tokens", "0", frag="--max_new_tokens"),
          G("--max_new_tokens", str(10**9), frag="--max_new_tokens"), G("--valid_only", "--max_draws", "0", frag="--max_draws"),
          G("--between", "CCO", "c1ccccc1", "--num_samples", "1", frag="--num_samples"),
          G("--num_samples", "1e3", frag="--num_samples")]
    E = lambda *argv, frag: Case("num/embed " + " ".join(argv), "number", ["embed", "CCO", "--model", "{tiny}", *argv],
                                 frags=(frag,), timeout=120)
    C += [E("--batch_size", "-1", frag="--batch_size"), E("--batch_size", "nan", frag="--batch_size"),
          E("--batch_size", str(10**20), frag="--batch_size")]
    V = lambda *argv, frag: Case("num/evaluate " + " ".join(argv), "number",
                                 ["evaluate", "{tiny}", "--output_dir", "{w}/ev", "--tasks", "freesolv", *argv],
                                 frags=(frag,), timeout=120)
    C += [V("--reconstruction_samples", "-1", frag="--reconstruction_samples"),
          V("--generation_samples", "-1", frag="--generation_samples"), V("--radii", "-1", frag="--radii"),
          V("--batch_size", "0", frag="--batch_size"), V("--seed", "-1", frag="--seed"),
          V("--radii", "1", "inf", frag="--radii")]
    K = lambda *argv, frag: Case("num/compare " + " ".join(argv), "number",
                                 ["compare", "--output_dir", "{w}/cmp", "--max_steps", "2", *argv], frags=(frag,), timeout=120)
    C += [K("--seeds", "0", frag="--seeds"), K("--seeds", "-1", frag="--seeds"), K("--seed_list", "-1", frag="seed"),
          K("--batch_sizes", "nan", frag="--batch_sizes"), K("--reconstruction_samples", "-1", frag="--reconstruction_samples"),
          K("--objectives", "bogus", frag="--objectives"), K("--max_steps", "nan", frag="--max_steps"),
          K("--learning_rate", "nan", frag="learning_rate")]
    O = lambda *argv, frag: Case("num/optimize " + " ".join(argv), "number",
                                 ["optimize", "CCO", "--model", "{tiny}", "--max_new_tokens", "8", *argv], frags=(frag,),
                                 timeout=120)
    C += [O("--budget", "0", frag="--budget"), O("--budget", "-1", frag="--budget"), O("--population_size", "1", frag="--population_size"),
          O("--sigma", "nan", frag="--sigma"), O("--sigma", "-1", frag="--sigma"), O("--sigma", "inf", frag="--sigma"),
          O("--min_similarity", "1.5", frag="--min_similarity"), O("--min_similarity", "nan", frag="--min_similarity"),
          O("--seed", "-1", frag="--seed"), O("--num_molecules", "0", "--benchmark", "qed", "--output_dir", "{w}/ob", frag="--num_molecules"),
          O("--objective", "bogus", frag="bogus"), O("--objective", "math:nosuch", frag="math:nosuch")]
    B = lambda *argv, frag: Case("num/benchmark " + " ".join(argv), "number", ["benchmark", "--quick", "--output_dir", "{w}/b", *argv],
                                 frags=(frag,), timeout=120)
    C += [B("--threads", "-1", frag="--threads"), B("--threads", "nan", frag="--threads"),
          B("--sections", "", frag="section")]

    # ---- output paths ----
    C += [
        Case("out/embed --output nonexistent parent folders", "output",
             ["embed", "CCO", "--model", "{tiny}", "--output", "{w}/new/deeper/x.npy"], expect="either", frags=("new",),
             check=lambda w, r: ("d", "exit 0 but no file") if r.rc == 0 and not (w / "new/deeper/x.npy").exists() else None),
        Case("out/embed --output unknown extension .xyz", "output", ["embed", "CCO", "--model", "{tiny}", "--output", "{w}/x.xyz"],
             expect="either", frags=("x.xyz",),
             check=lambda w, r: ("d", "exit 0 but no file") if r.rc == 0 and not (w / "x.xyz").exists() else None),
        Case("out/embed --output a FIFO named .npy", "output", ["embed", "CCO", "--model", "{tiny}", "--output", "{w}/fifo.npy"],
             frags=("fifo.npy",), setup=lambda w: os.mkfifo(w / "fifo.npy"),
             check=lambda w, r: ("e", "the FIFO was renamed over (a device such as /dev/full would be replaced as root)")
             if not (w / "fifo.npy").is_fifo() else None),
        Case("out/embed --output empty string", "output", ["embed", "CCO", "--model", "{tiny}", "--output", ""], frags=("output",)),
        Case("out/generate --output under a file", "output",
             ["generate", "--model", "{tiny}", "--num_samples", "2", "--output", "{w}/a_file/x.txt"], frags=("a_file",), setup=a_file),
        # not /dev/full itself: as root, the unfixed atomic write replaces the device node with a file
        Case("out/generate --output a FIFO (stands for /dev/full)", "output",
             ["generate", "--model", "{tiny}", "--num_samples", "2", "--max_new_tokens", "8", "--output", "{w}/fifo.txt"],
             frags=("fifo.txt",), setup=lambda w: os.mkfifo(w / "fifo.txt"),
             check=lambda w, r: ("e", "the FIFO was renamed over (as root, /dev/full was replaced by a file)")
             if not (w / "fifo.txt").is_fifo() else None),
        Case("out/optimize --output a folder", "output", ["optimize", "CCO", "--model", "{tiny}", "--budget", "4", "--output", "{w}"],
             frags=("{w}",)),
        Case("out/optimize --output unknown extension", "output",
             ["optimize", "CCO", "--model", "{tiny}", "--budget", "4", "--output", "{w}/r.xlsx"], frags=("r.xlsx",)),
        Case("out/evaluate --output_dir under a file", "output", ["evaluate", "{tiny}", "--output_dir", "{w}/a_file/ev"],
             frags=("a_file",), setup=a_file),
        Case("out/train --output_dir under a file", "output", train_argv(out="{w}/a_file/run"), frags=("a_file",), setup=a_file),
        Case("out/benchmark --output_dir a file", "output", ["benchmark", "--quick", "--output_dir", "{w}/a_file"],
             frags=("a_file",), setup=a_file),
        Case("out/compare --output_dir a file", "output", ["compare", "--output_dir", "{w}/a_file", "--max_steps", "2"],
             frags=("a_file",), setup=a_file),
        Case("out/embed --output = the --input file", "output",
             ["embed", "--input", "{w}/in.csv", "--model", "{tiny}", "--output", "{w}/in.csv"], expect="either", frags=("in.csv",),
             setup=data_file("in.csv", "smiles\nCCO\nCCN\n"),
             check=lambda w, r: ("e", "input overwritten by output") if r.rc == 0 and "cmim_informative_0" in (w / "in.csv").read_text() else None),
        Case("out/train --output_dir nobody: locked folder (setpriv)", "output", [],
             shell="mkdir -p {w}/home && chmod 777 {w} {w}/home && mkdir {w}/locked && chmod 555 {w}/locked && cp {csv} {w}/d.csv && chmod 644 {w}/d.csv && "
                   "HOME={w}/home HF_HOME={w}/home/hf " + " ".join(AS_NOBODY) + " {venv}/bin/cmim-hf train --dataset {w}/d.csv --output_dir {w}/locked/run --max_steps 2 " + " ".join(QUIET + TINY),
             frags=("locked",)),
        Case("out/generate --output nobody: locked folder (setpriv)", "output", [],
             shell="mkdir -p {w}/home && chmod 777 {w} {w}/home && mkdir {w}/locked && chmod 555 {w}/locked && "
                   "HOME={w}/home HF_HOME={w}/home/hf " + " ".join(AS_NOBODY) + " {venv}/bin/cmim-hf generate --model {tiny} --num_samples 2 --output {w}/locked/x.txt",
             frags=("locked",)),
        Case("out/embed model file unreadable nobody (setpriv)", "output", [],
             shell="mkdir -p {w}/home && chmod 777 {w} {w}/home && cp -r {tiny} {w}/model && chmod 000 {w}/model/model.safetensors && "
                   "HOME={w}/home HF_HOME={w}/home/hf " + " ".join(AS_NOBODY) + " {venv}/bin/cmim-hf embed CCO --model {w}/model",
             frags=("model.safetensors",)),
    ]
    for case in C[-3:]:
        case.argv = [case.shell.split("cmim-hf ")[1].split()[0]]

    # ---- bad data files ----
    D = lambda name, setup, frag, expect="error", column=None: Case(
        f"data/train {name}", "data",
        ["train", "--dataset", "{w}/" + name.split()[0], "--output_dir", "{w}/run", "--max_steps", "2", *QUIET, *TINY,
         "--max_eval_samples", "4", "--num_reconstruction_samples", "0", *(["--text_column", column] if column else [])],
        expect=expect, frags=(frag,), setup=setup, timeout=150)
    C += [D("missing.csv", None, "missing.csv"), D("empty.csv", data_file("empty.csv", ""), "empty.csv"),
          D("header.csv header only", data_file("header.csv", "smiles\n"), "header.csv"),
          D("binary.csv", data_file("binary.csv", os.urandom(2000)), "binary.csv"),
          D("data.xyz unknown format", data_file("data.xyz", "CCO\n"), "data.xyz"),
          D("broken.csv.gz corrupt", gz_corrupt("broken.csv.gz"), "broken.csv.gz"),
          D("cols.csv missing column", data_file("cols.csv", "smiles\nCCO\nCCN\n" * 20), "nocol", column="nocol"),
          D("fake.parquet text", data_file("fake.parquet", "not parquet"), "fake.parquet"),
          D("bad.jsonl broken line", data_file("bad.jsonl", '{"text": "CCO"}\n{"text": \n' * 5), "bad.jsonl"),
          D("emptydir folder not a dataset", lambda w: (w / "emptydir").mkdir(), "emptydir"),
          D("numbers.csv column of numbers", data_file("numbers.csv", "smiles\n" + "1\n2\n3\n" * 20), "numbers.csv", expect="either"),
          D("blank.txt only blank lines", data_file("blank.txt", "\n\n\n   \n"), "blank.txt"),
          D("ragged.csv rows with extra fields", data_file("ragged.csv", "smiles\nCCO,1,2\nCCN\n" * 10), "ragged.csv", expect="either"),
          Case("data/train --eval_dataset missing", "data", train_argv("--eval_dataset", "{w}/nope.csv"), frags=("nope.csv",), timeout=150),
          Case("data/train YAML recipe not a mapping", "data", ["train", "--recipe", "{w}/r.yaml"], frags=("r.yaml",),
               setup=data_file("r.yaml", "- just\n- a list\n")),
          Case("data/train YAML recipe broken syntax", "data", ["train", "--recipe", "{w}/r.yaml"], frags=("r.yaml",),
               setup=data_file("r.yaml", "training: {max_steps: [\n")),
          Case("data/train YAML recipe unknown field", "data", ["train", "--recipe", "{w}/r.yaml"], frags=("bogus_field",),
               setup=data_file("r.yaml", "name: x\ntraining:\n  bogus_field: 3\n")),
          Case("data/train YAML recipe missing", "data", ["train", "--recipe", "{w}/none.yaml"], frags=("none.yaml",)),
          Case("data/train YAML max_steps a string", "data", ["train", "--recipe", "{w}/r.yaml"], frags=("max_steps",),
               setup=data_file("r.yaml", "name: x\ntraining:\n  max_steps: lots\n")),
          ]
    I = lambda name, setup, frag, expect="error", extra=(): Case(
        f"data/embed --input {name}", "data", ["embed", "--input", "{w}/" + name.split()[0], "--model", "{tiny}", *extra],
        expect=expect, frags=(frag,), setup=setup, timeout=120)
    C += [I("missing.smi", None, "missing.smi"),
          I("empty.smi", data_file("empty.smi", ""), "empty.smi", expect="either",
            ),
          I("header.csv header only", data_file("header.csv", "smiles\n"), "header.csv", expect="either"),
          I("binary.smi", data_file("binary.smi", os.urandom(3000)), "binary.smi"),
          I("data.xyz unknown format", data_file("data.xyz", "CCO\n"), "data.xyz", expect="either"),
          I("broken.smi.gz corrupt", gz_corrupt("broken.smi.gz"), "broken.smi.gz"),
          I("cols.csv missing column", data_file("cols.csv", "smiles\nCCO\n"), "nocol", extra=("--column", "nocol")),
          I("bad.jsonl", data_file("bad.jsonl", '{"smiles": "CCO"}\n{broken\n'), "bad.jsonl"),
          I("fake.parquet", data_file("fake.parquet", "nope"), "fake.parquet"),
          I("latin1.smi non-UTF-8", data_file("latin1.smi", "CCO caf\xe9\n".encode("latin-1")), "latin1.smi", expect="either"),
          I("dir folder", lambda w: (w / "dir").mkdir(), "dir"),
          I("nums.csv numeric column", data_file("nums.csv", "smiles\n1\n2\n"), "nums.csv", expect="either"),
          Case("data/optimize --input missing", "data", ["optimize", "--input", "{w}/nope.smi", "--model", "{tiny}"], frags=("nope.smi",)),
          Case("data/embed stdin empty", "data", [], shell="{venv}/bin/cmim-hf embed --input - --model {tiny} < /dev/null",
               expect="either", frags=("input",)),
          ]
    C[-1].argv = ["embed"]

    # ---- SMILES ----
    S = lambda name, argv, frag, expect="error": Case(f"smiles/{name}", "smiles", argv, expect=expect, frags=(frag,), timeout=120)
    C += [S("embed empty string", ["embed", "", "--model", "{tiny}"], "smiles"),
          S("embed whitespace", ["embed", "  ", "--model", "{tiny}"], "smiles"),
          S("embed 5000-char SMILES (default)", ["embed", "C" * 5000, "--model", "{tiny}"], "long", expect="warn"),
          S("embed 5000-char --on_too_long raise", ["embed", "C" * 5000, "--model", "{tiny}", "--on_too_long", "raise"], "long"),
          S("embed unknown token (default)", ["embed", "C[Xx]C", "--model", "{tiny}"], "unk", expect="warn"),
          S("embed unknown token raise", ["embed", "C[Xx]C", "--model", "{tiny}", "--on_unknown", "raise"], "[xx]"),
          S("embed snowman unicode", ["embed", "\u2603", "--model", "{tiny}"], "\u2603", expect="warn"),
          S("embed invalid SMILES raise", ["embed", "C1CC(", "--model", "{tiny}", "--on_invalid", "raise"], "c1cc("),
          S("embed invalid SMILES (default warns)", ["embed", "C1CC(", "--model", "{tiny}"], "c1cc(", expect="warn"),
          S("embed control char", ["embed", "CC\x01O", "--model", "{tiny}"], "smiles", expect="warn"),
          S("generate --around empty", ["generate", "--model", "{tiny}", "--around", "", "--num_samples", "2"], "around"),
          S("generate --around oversize", ["generate", "--model", "{tiny}", "--around", "C" * 3000, "--num_samples", "2",
                                           "--max_new_tokens", "8"], "around"),
          S("generate --around unknown token", ["generate", "--model", "{tiny}", "--around", "[Zz]", "--num_samples", "2",
                                                "--max_new_tokens", "8"], "[zz]", expect="warn"),
          S("generate --between empty end", ["generate", "--model", "{tiny}", "--between", "CCO", "", "--num_samples", "3"], "between"),
          S("optimize invalid start", ["optimize", "C1CC(", "--model", "{tiny}", "--budget", "4", "--max_new_tokens", "8"], "c1cc("),
          S("optimize empty start", ["optimize", "", "--model", "{tiny}", "--budget", "4"], "smiles"),
          S("optimize no molecules at all", ["optimize", "--model", "{tiny}", "--budget", "4"], "smiles"),
          S("embed no molecules at all", ["embed", "--model", "{tiny}"], "smiles"),
          ]

    # ---- Python API with wrong types ----
    LOAD = "from cmim_hf import load_pretrained, embed_smiles, generate_smiles, CMIMEmbedder\n" \
           "model, tok = load_pretrained({tiny!r}, device='cpu')\n"
    PIPE = "from transformers import pipeline\nimport cmim_hf\nextract = pipeline('feature-extraction', model={tiny!r}, trust_remote_code=True, device='cpu')\n"
    A = lambda name, code, frag="", expect="error", types=("ValueError", "TypeError"): Case(
        f"api/{name}", "api", api=code, expect=expect, frags=(frag,) if frag else (), api_types=types, timeout=120)
    C += [A("embed_smiles []", LOAD + "out = embed_smiles(model, tok, [])\nassert out.shape[0] == 0, out.shape\nprint(out.shape)", expect="ok"),
          A("embed_smiles None", LOAD + "embed_smiles(model, tok, None)", "smiles"),
          A("embed_smiles [1, 2]", LOAD + "embed_smiles(model, tok, [1, 2])", "smiles[0]"),
          A("embed_smiles ['CCO', None]", LOAD + "embed_smiles(model, tok, ['CCO', None])", "smiles[1]"),
          A("embed_smiles a generator", LOAD + "print(embed_smiles(model, tok, (s for s in ['CCO','CCN'])).shape)", expect="ok"),
          A("embed_smiles bytes", LOAD + "embed_smiles(model, tok, [b'CCO'])", "smiles[0]"),
          A("embed_smiles kind bogus", LOAD + "embed_smiles(model, tok, ['CCO'], kind='bogus')", "bogus"),
          A("embed_smiles batch_size 0.5", LOAD + "embed_smiles(model, tok, ['CCO'], batch_size=0.5)", "batch_size"),
          A("embed_smiles on_unknown bogus", LOAD + "embed_smiles(model, tok, ['CCO'], on_unknown='maybe')", "on_unknown"),
          A("generate_smiles num_samples '3'", LOAD + "generate_smiles(model, tok, '3')", "num_samples"),
          A("generate_smiles num_samples 2.5", LOAD + "generate_smiles(model, tok, 2.5)", "num_samples"),
          A("generate_smiles num_samples 0", LOAD + "generate_smiles(model, tok, 0)", "num_samples"),
          A("generate_smiles around=5", LOAD + "generate_smiles(model, tok, 2, around=5)", "around"),
          A("generate_smiles radius=-1", LOAD + "generate_smiles(model, tok, 2, around='CCO', radius=-1)", "radius"),
          A("generate_smiles seed='x'", LOAD + "generate_smiles(model, tok, 2, seed='x')", "seed"),
          A("generate_smiles temperature nan kw", LOAD + "generate_smiles(model, tok, 2, temperature=float('nan'))", "temperature"),
          A("CMIMEmbedder transform None", "from cmim_hf import CMIMEmbedder\ne = CMIMEmbedder({tiny!r}, device='cpu').fit()\ne.transform(None)", "x"),
          A("CMIMEmbedder transform 'CCO' str", "from cmim_hf import CMIMEmbedder\ne = CMIMEmbedder({tiny!r}, device='cpu').fit()\ne.transform('CCO')", "single str"),
          A("CMIMEmbedder transform [3, 4]", "from cmim_hf import CMIMEmbedder\ne = CMIMEmbedder({tiny!r}, device='cpu').fit()\ne.transform([3, 4])", "smiles[0]"),
          A("CMIMEmbedder model missing", "from cmim_hf import CMIMEmbedder\nCMIMEmbedder('/nonexistent/m').fit()", "/nonexistent/m",
            types=("FileNotFoundError", "ValueError", "OSError")),
          A("CMIMEmbedder transform before fit", "from cmim_hf import CMIMEmbedder\nCMIMEmbedder({tiny!r}).transform(['CCO'])",
            "fit", types=("NotFittedError",)),
          A("CMIMEmbedder kind latent on 2-D array 2 cols", "import numpy as np\nfrom cmim_hf import CMIMEmbedder\ne = CMIMEmbedder({tiny!r}, device='cpu').fit()\ne.transform(np.array([['CCO','CCN']]))", "shape"),
          A("pipeline []", PIPE + "out = extract([])\nassert out == [] or len(out) == 0, out\nprint(out)", expect="ok"),
          A("pipeline None", PIPE + "extract(None)", "none"),
          A("pipeline 5", PIPE + "extract(5)", "5"),
          A("pipeline [None]", PIPE + "extract([None])", "none"),
          A("pipeline ''", PIPE + "extract('')", ""),
          A("pipeline [1, 'CCO']", PIPE + "extract([1, 'CCO'])", "1"),
          A("load_pretrained None", "from cmim_hf import load_pretrained\nload_pretrained(None)", "none"),
          A("load_pretrained 123", "from cmim_hf import load_pretrained\nload_pretrained(123)", "123"),
          A("load_pretrained dtype bogus", "from cmim_hf import load_pretrained\nload_pretrained({tiny!r}, dtype='float8')", "float8"),
          A("interpolate_smiles num_steps 1", LOAD + "from cmim_hf import interpolate_smiles\ninterpolate_smiles(model, tok, 'CCO', 'CCN', num_steps=1)", "num_steps"),
          ]

    # ---- signals and pipes ----
    has_ckpt = lambda w: any((w / "run").glob("checkpoint-*"))
    C += [
        Case("sig/SIGINT during train after a checkpoint", "signal",
             train_argv("--max_train_samples", "64", steps="100000"),
             runner=signal_runner(signal.SIGINT, has_ckpt), check=lambda w, r: interrupted_check()(w, r), timeout=300),
        Case("sig/SIGINT during train while preparing data (2 s in)", "signal",
             train_argv(steps="100000"), runner=signal_runner(signal.SIGINT, after_seconds(2)),
             check=lambda w, r: interrupted_check()(w, r), timeout=300),
        Case("sig/SIGINT during embed to --output (8 s in)", "signal",
             ["embed", "--input", "{w}/big.smi", "--model", "{tiny}", "--output", "{w}/out.npy"],
             setup=data_file("big.smi", "CCO\nc1ccccc1O\nCC(=O)Nc1ccc(O)cc1\n" * 4000),
             runner=signal_runner(signal.SIGINT, after_seconds(8)),
             check=lambda w, r: interrupted_check(("out.npy",))(w, r), timeout=300),
        Case("sig/SIGINT during generate --valid_only (6 s in)", "signal",
             ["generate", "--model", "{tiny}", "--valid_only", "--num_samples", "100000", "--max_draws", "10000000"],
             runner=signal_runner(signal.SIGINT, after_seconds(6)), check=lambda w, r: interrupted_check()(w, r), timeout=300),
        Case("sig/SIGTERM during embed to --output", "signal",
             ["embed", "--input", "{w}/big.smi", "--model", "{tiny}", "--output", "{w}/out.npy"],
             setup=data_file("big.smi", "CCO\nc1ccccc1O\n" * 4000), runner=signal_runner(signal.SIGTERM, after_seconds(8)),
             check=lambda w, r: ("d", "half-written out.npy") if (w / "out.npy").exists() and r.rc != 0 else
             (("b", "terminated; nothing half-written") if "Traceback" not in r.err else ("c", "traceback")), timeout=300),
        Case("sig/SIGPIPE embed | head -1", "signal", ["embed"],
             shell="set -o pipefail; {venv}/bin/cmim-hf embed --input {w}/big.smi --model {tiny} 2> {w}/err.txt | head -1; cat {w}/err.txt >&2",
             setup=data_file("big.smi", "CCO\nc1ccccc1O\n" * 300), check=lambda w, r: pipe_check(w, r)),
        Case("sig/SIGPIPE generate | head -1", "signal", ["generate"],
             shell="set -o pipefail; {venv}/bin/cmim-hf generate --model {tiny} --num_samples 3000 --max_new_tokens 8 2> {w}/err.txt | head -1; cat {w}/err.txt >&2",
             check=lambda w, r: pipe_check(w, r)),
        Case("sig/SIGPIPE --help | head -1", "signal", ["train"],
             shell="set -o pipefail; {venv}/bin/cmim-hf train --help 2> {w}/err.txt | head -1; cat {w}/err.txt >&2",
             check=lambda w, r: pipe_check(w, r)),
        Case("sig/SIGPIPE optimize | head -1", "signal", ["optimize"],
             shell="set -o pipefail; {venv}/bin/cmim-hf optimize CCO CCN c1ccccc1 --model {tiny} --budget 4 --max_new_tokens 8 2> {w}/err.txt | head -c 1; cat {w}/err.txt >&2",
             check=lambda w, r: pipe_check(w, r)),
    ]

    # ---- push ----
    NET = {"HF_HUB_OFFLINE": None}
    C += [
        Case("push/no network, offline unset", "push", ["push", "{tiny}", "me/model"], frags=("hub",), env=NET, timeout=180),
        Case("push/no network, bad repo id", "push", ["push", "{tiny}", "not a repo id!"], frags=("not a repo id!",), env=NET, timeout=180),
        Case("push/folder missing", "push", ["push", "{w}/nope", "me/model"], frags=("nope",), env=NET, timeout=180),
        Case("push/folder without README", "push", ["push", "{w}/model", "me/model"], frags=("readme",), env=NET,
             setup=lambda w: (model_copy(w) / "README.md").unlink(), timeout=180),
        Case("push/HF_HUB_OFFLINE=1", "push", ["push", "{tiny}", "me/model"], frags=("offline",), timeout=180),
        Case("push/broken model folder", "push", ["push", "{w}/model", "me/model"], frags=("model.safetensors",), env=NET,
             setup=transform_file("model.safetensors", half), timeout=180),
    ]
    return C


# helpers used by cases (after the builders so the lambdas above read in order)

def edit_config_in(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / "checkpoint_manifest.json").read_text())
    edit(manifest)
    (folder / "checkpoint_manifest.json").write_text(json.dumps(manifest))


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def final_ok(w: Path, r: Result):
    final = w / "run" / "final"
    if not (final / "model.safetensors").is_file() or not (final / "config.json").is_file():
        return "e", "no complete final/ after the kill and a rerun"
    if list((w / "run").glob(".final*")):
        return "d", f"left-overs: {[p.name for p in (w / 'run').glob('.final*')]}"
    if "Traceback" in r.err:
        return "c", "traceback"
    return "b", "final/ complete, nothing left aside"


def ckpt_ok(w: Path, r: Result):
    if "Traceback" in r.err:
        return "c", "traceback"
    checkpoints = sorted((w / "run").glob("checkpoint-*"))
    if not checkpoints:
        return "e", "no checkpoint left"
    if r.rc != 0:
        return "c", f"rerun exit {r.rc}"
    return "b", f"rerun fine; left: {sorted(p.name for p in (w / 'run').iterdir() if p.name.startswith('.'))}"


def same_as_snapshot(w: Path, name: str, r: Result):
    old = snapshot(w, name)
    now = digest(w / name)
    if now != old:
        return "e", f"{name} changed by a killed run"
    left = [p.name for p in w.iterdir() if p.name.startswith(".") and p.name != ".snapshots"]
    if left:
        return "b", f"old {name} intact; temporary left-over {left}"
    return "b", f"old {name} intact"


def refresh_ok(w: Path, r: Result):
    if not (w / "model" / "model.safetensors").is_file():
        return "e", "model folder gone after kill + embed"
    if r.rc != 0:
        return "c", f"embed after the kill: exit {r.rc}"
    if "restored" not in r.err:
        return "b", "folder intact (no restore needed)"
    return "b", "embed restored the folder with a warning"


def pipe_check(w: Path, r: Result):
    if "Traceback" in r.err or "BrokenPipe" in r.err or "Exception ignored" in r.err:
        return "c", "traceback / broken pipe message"
    if r.err.strip():
        lines = [line for line in r.err.splitlines() if line.strip()]
        return "b", f"quiet enough: stderr {lines[-1][:80]!r}"
    return "b", "quiet"


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------

def prepare(work: Path) -> None:
    py = f"{ARGS.venv}/bin/python"
    env = env_for(Case("prep", "prep"))
    CTX["venv"] = str(ARGS.venv)
    CTX["tiny"] = subprocess.run([py, "-c", "from cmim_hf import pretrained_path; print(pretrained_path('cmim-moses-tiny'))"],
                                 capture_output=True, text=True, env=env, check=True).stdout.strip()
    csv = work / "molecules.csv"
    subprocess.run([py, "-c", "import sys; from cmim_hf.data import load_named_dataset; "
                    "s = load_named_dataset('moses', split='train', max_samples=120, seed=7)['text']; "
                    "open(sys.argv[1], 'w').write('smiles\\n' + '\\n'.join(s) + '\\n')", str(csv)], env=env, check=True)
    CTX["csv"] = str(csv)
    base = work / "base-run"
    done = subprocess.run([f"{ARGS.venv}/bin/cmim-hf", *[fill(a, work) for a in train_argv(out=str(base))]],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    CTX["run"] = str(base)
    CTX["checkpoint"] = str(sorted(base.glob("checkpoint-*"))[-1])


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "results.md")
    parser.add_argument("--only", default=None)
    ARGS = parser.parse_args()
    ARGS.venv = ARGS.venv.resolve()
    shutil.rmtree(ARGS.work, ignore_errors=True)
    ARGS.work.mkdir(parents=True)
    prepare(ARGS.work)
    rows = []
    all_cases = [c for c in cases() if ARGS.only is None or any(part in c.name for part in ARGS.only.split(","))]
    # round-robin over the kinds, so that a run cut short still covers every kind
    queues: dict = {}
    for case in all_cases:
        queues.setdefault(case.kind, []).append(case)
    all_cases = [q[i] for i in range(max(map(len, queues.values()), default=0)) for q in queues.values() if i < len(q)]
    for index, case in enumerate(all_cases):
        w = ARGS.work / f"case{index:03d}"
        w.mkdir()
        try:
            if case.setup:
                case.setup(w)
            before = {rel: digest(w / rel) for rel in case.precious}
            r = case.runner(case, w) if case.runner else run(command_of(case, w), case, w)
            verdict, note = classify(case, w, r, before)
        except Exception as error:  # a broken case is reported, not hidden
            r, verdict, note = Result(None, "", repr(error), 0.0), "?", f"case setup failed: {error!r}"
        err_lines = [line for line in r.err.splitlines() if line.strip() and not line.startswith(("WARNING: Location",))]
        first = next((line for line in err_lines if line.startswith("cmim-hf ") and ": error: " in line),
                     next((line for line in err_lines if "error" in line.lower() or "warning" in line.lower()
                           or "Traceback" in line), err_lines[0] if err_lines else ""))
        if verdict == "c" and "Traceback" in r.err:
            first = err_lines[-1] if err_lines else first  # the exception line says what blew up
        if case.api is not None:
            first = next((line for line in r.out.splitlines() if line.startswith("RAISED")), first or r.out.strip()[:120])
        shown = case.shell if case.shell else ("python: " + case.api.strip().splitlines()[-1] if case.api else
                                               "cmim-hf " + " ".join(case.argv))
        rows.append((case, shown, r, first, verdict, note))
        print(f"[{index + 1}/{len(all_cases)}] {verdict} {case.name} (exit {r.rc}, {r.seconds:.0f}s) {note} | {first[:160]}",
              flush=True)
        (w / "stdout.txt").write_text(r.out)
        (w / "stderr.txt").write_text(r.err)
        write_results(rows)  # after every case: a partial run still leaves its table


def esc(text: str, limit: int = 200) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    for key in ("tiny", "csv", "venv"):
        if CTX.get(key):
            text = text.replace(CTX[key], "{" + key + "}")
    text = text.replace(str(ARGS.work), "{work}")
    return text if len(text) <= limit else text[:limit] + "..."


def write_results(rows) -> None:
    from collections import Counter
    counts = Counter(v for *_, v, _ in rows)
    by_kind: dict = {}
    for case, *_, v, _ in rows:
        by_kind.setdefault(case.kind, Counter())[v] += 1
    lines = ["# Hostile corpus results (issue 17)", "",
             f"venv: `{ARGS.venv}`; {len(rows)} cases; `{{work}}` = `{ARGS.work}`, `{{tiny}}` = the shipped cmim-moses-tiny folder, "
             "`{csv}` = 120 MOSES molecules.", "",
             "Classes: a = one-line error naming the input; b = documented handling; c = traceback or unhelpful message; "
             "d = accepted silently with wrong/empty output; e = lost data; f = code ran from a checkpoint/model folder.", "",
             "## Counts", "", "| class | cases |", "|---|---|"]
    lines += [f"| {k} | {counts.get(k, 0)} |" for k in "abcdef?"]
    lines += ["", "| kind | " + " | ".join("abcdef") + " |", "|---|" + "---|" * 6]
    lines += [f"| {kind} | " + " | ".join(str(c.get(k, 0)) for k in "abcdef") + " |" for kind, c in by_kind.items()]
    lines += ["", "## Cases", "", "| # | case | command | exit | first stderr line | class | note |", "|---|---|---|---|---|---|---|"]
    for i, (case, shown, r, first, v, note) in enumerate(rows):
        lines.append(f"| {i} | {esc(case.name, 80)} | `{esc(shown, 160)}` | {r.rc if not r.timed_out else 'timeout'} | "
                     f"{esc(first)} | {v} | {esc(note, 120)} |")
    ARGS.results.write_text("\n".join(lines) + "\n")
    print(f"counts: {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
