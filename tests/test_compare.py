"""`cmim-hf compare` in miniature: two objectives x two batch sizes of a tiny model, a few steps each,
through the real training entry point and evaluation; checks the table, the plots and the resume."""

import json

import pytest

from cmim_hf.training.compare import comparison_markdown, headline_rows, run_compare

pytest.importorskip("rdkit")

TINY_TRAINING = ["--max_train_samples", "256", "--max_eval_samples", "32", "--num_reconstruction_samples", "8",
                 "--eval_steps", "0", "--save_steps", "0", "--logging_steps", "2", "--disable_tqdm", "true",
                 "--encoder_hidden_size", "32", "--decoder_hidden_size", "32", "--encoder_layers", "1",
                 "--decoder_layers", "1", "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64",
                 "--latent_size", "8", "--report_to", "csv"]


@pytest.mark.slow
def test_compare_miniature_trains_evaluates_and_tabulates(tmp_path):
    out = tmp_path / "compare"
    kwargs = dict(objectives=("cmim", "infonce"), batch_sizes=(4, 8), max_steps=3,
                  extra_train_args=TINY_TRAINING, reconstruction_samples=8, generation_samples=4,
                  tasks=("freesolv",))
    comparison = run_compare(out, **kwargs)
    assert {(r["objective"], r["batch_size"]) for r in comparison["rows"]} == {
        ("cmim", 4), ("cmim", 8), ("infonce", 4), ("infonce", 8)}
    assert all(r["freesolv"] > 0 for r in comparison["rows"])
    assert set(comparison["baselines"]) == {"ecfp4", "rdkit2d"}
    table = (out / "compare.md").read_text()
    assert "| cmim | 4 | informative |" in table and "| baseline | - | ecfp4 |" in table
    assert (out / "batch_size_freesolv.png").stat().st_size > 0
    assert json.loads((out / "compare.json").read_text())["settings"]["max_steps"] == 3
    # a second call finds every evaluation on disk and trains nothing
    (out / "cmim-bs4" / "train").rename(out / "cmim-bs4" / "moved")
    again = run_compare(out, **kwargs)
    assert not (out / "cmim-bs4" / "train").exists()
    assert again["rows"] == comparison["rows"]


def test_headline_rows_and_table_from_results():
    result = {"tasks": {"freesolv": {f: {"best": {"rmse": 1.5}} for f in ("latent", "decoder", "informative")}},
              "reconstruction": {"moses_test": {"token_accuracy": 0.9, "exact": 0.25}},
              "generation": {"prior": {"validity": 0.5}}}
    rows = headline_rows({"cmim-bs16": result})
    assert len(rows) == 3 and rows[0]["objective"] == "cmim" and rows[0]["batch_size"] == 16
    assert rows[0]["freesolv"] == 1.5 and rows[0]["solubility"] is None and rows[0]["exact_reconstruction"] == 0.25
    table = comparison_markdown(rows, {"ecfp4": {"freesolv": 1.8}},
                                {"recipe": "tiny-cpu", "max_steps": 10, "batch_sizes": [16], "probes": {}, "hours": 0.1})
    assert "| cmim | 16 | informative | 1.500 | - | - | 0.900 | 0.250 | 0.500 |" in table
    assert "| baseline | - | ecfp4 | 1.800 |" in table
