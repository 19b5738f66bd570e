"""Shared fixtures: tiny configs, real MOSES molecules, the SMILES tokenizer, and a fresh-process runner."""

import gzip
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from cmim_hf import CMIMConfig, default_smiles_tokenizer
from cmim_hf.data import moses_data_dir

# The models under test are tiny: one thread is faster than two fighting over shared cores.
torch.set_num_threads(1)

TINY = dict(encoder_hidden_size=32, decoder_hidden_size=32, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
            latent_tokens=2, latent_size=8, max_position_embeddings=64, dropout=0.0)


def tiny_config(**overrides) -> CMIMConfig:
    """A 2+2-layer, width-32 config over the SMILES vocabulary (about 80k parameters)."""
    kwargs = dict(TINY, vocab_size=len(default_smiles_tokenizer()))
    kwargs.update(overrides)
    return CMIMConfig(**kwargs)


@pytest.fixture(scope="session")
def smiles_tokenizer():
    return default_smiles_tokenizer(model_max_length=64)


@pytest.fixture(scope="session")
def moses_smiles() -> list[str]:
    """The first 256 molecules of MOSES train, read without loading the 1.6M-row file."""
    try:
        path = moses_data_dir() / "train.csv.gz"
    except ModuleNotFoundError as error:
        pytest.skip(str(error))
    with gzip.open(path, "rt") as handle:
        next(handle)  # header
        return [next(handle).strip() for _ in range(256)]


# Simulates a machine where transformers is installed but cmim_hf is not: the import of cmim_hf fails.
_BLOCK_CMIM_HF = textwrap.dedent("""
    import importlib.abc, sys
    class _NoCmimHf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "cmim_hf" or name.startswith("cmim_hf."):
                raise ModuleNotFoundError(f"No module named {name!r}")
    sys.meta_path.insert(0, _NoCmimHf())
    try:
        import cmim_hf
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("cmim_hf is importable: the fresh-process test would prove nothing")
""")


@pytest.fixture
def run_without_cmim_hf(tmp_path):
    """Run Python source in a fresh interpreter where `cmim_hf` cannot be imported, offline, with an empty
    Hugging Face home (so remote code is really fetched from the folder). Returns stdout."""

    def run(source: str, extra_env: dict | None = None) -> str:
        script = tmp_path / "fresh_process.py"
        script.write_text(_BLOCK_CMIM_HF + textwrap.dedent(source))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), TRANSFORMERS_VERBOSITY="error")
        env.update(extra_env or {})
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]
        return result.stdout

    return run


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_accelerate_state():
    """Each in-process run builds its own Accelerator; reset Accelerate's process-wide singletons around it."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(scope="session")
def moses_csv(tmp_path_factory) -> Path:
    """300 MOSES training molecules as a user CSV with a `smiles` column."""
    path = tmp_path_factory.mktemp("data") / "molecules.csv"
    from cmim_hf.data import load_named_dataset

    smiles = load_named_dataset("moses", split="train", max_samples=300, seed=1)["text"]
    path.write_text("smiles\n" + "\n".join(smiles) + "\n")
    return path
