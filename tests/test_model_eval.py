"""`evaluate_model` end to end on a tiny saved model: the results file's shape, the reconstruction and
generation numbers' ranges and consistency, the Markdown report and the plots."""

import json

import pytest
import torch
from conftest import tiny_config

from cmim_hf import CMIMForConditionalGeneration
from cmim_hf.evaluation.model_eval import evaluate_model, reconstruction_metrics
from cmim_hf.modeling import EMBEDDING_KINDS
from cmim_hf.saving import save_model_folder

pytest.importorskip("rdkit")
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, smiles_tokenizer):
    torch.manual_seed(0)
    model = CMIMForConditionalGeneration(tiny_config())
    return save_model_folder(model, smiles_tokenizer, tmp_path_factory.mktemp("eval") / "tiny")


def test_evaluate_model_writes_results_report_and_plots(tiny_folder, tmp_path):
    out = tmp_path / "eval"
    results = evaluate_model(tiny_folder, out, tasks=("freesolv",), baselines=("ecfp4",),
                             probes={"regression": ("ridge",)}, reconstruction_samples=16,
                             generation_samples=8, radii=(0.5,), samples_per_seed=2, progress=False)
    on_disk = json.loads((out / "results.json").read_text())
    assert set(on_disk["tasks"]["freesolv"]) == {"ecfp4", *EMBEDDING_KINDS}
    for features in on_disk["tasks"]["freesolv"].values():
        assert features["ridge"]["rmse"] > 0 and features["best"]["rmse"] > 0
    reconstruction = on_disk["reconstruction"]
    assert reconstruction["moses_test"]["n"] == 16
    for part in reconstruction.values():
        assert 0 <= part["token_accuracy"] <= 1 and 0 <= part["exact"] <= part["exact_canonical"] + 1e-9 <= 1
    prior = on_disk["generation"]["prior"]
    assert prior["n"] == 8 and 0 <= prior["validity"] <= 1 and len(prior["examples"]) == 8
    assert set(on_disk["generation"]["around"]["radii"]) == {"0.5"}
    report = (out / "results.md").read_text()
    assert "freesolv" in report.lower() and "Reconstruction" in report and "Generation" in report
    for plot in ("downstream.png", "latent_pca.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["settings"]["model"] == str(tiny_folder)


def test_reconstruction_metrics_count_what_generate_returns(tiny_folder, smiles_tokenizer, moses_smiles):
    """A model whose decoder always emits <eos> first reconstructs nothing: exact 0, token accuracy equal
    to the share of <eos> among the targets."""
    model = CMIMForConditionalGeneration.from_pretrained(tiny_folder).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[smiles_tokenizer.eos_token_id] = 1.0
        model.model.decoder.final_norm.bias.fill_(1.0)  # positive features -> <eos> scores highest
        model.model.decoder.final_norm.weight.zero_()
    smiles = moses_smiles[:5]
    metrics = reconstruction_metrics(model, smiles_tokenizer, smiles)
    lengths = [len(smiles_tokenizer(s)["input_ids"]) - 1 for s in smiles]  # targets: tokens + <eos>
    assert metrics["exact"] == 0.0
    assert metrics["token_accuracy"] == pytest.approx(len(smiles) / sum(lengths))
