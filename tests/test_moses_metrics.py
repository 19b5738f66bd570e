"""The MOSES benchmark (`evaluate --sections moses`, computed by molsets' `get_all_metrics`) and the ChEMBL
length buckets (`--sections length`) on the shipped tiny model, with a few hundred samples."""

import importlib.util
import json
import math

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("fcd_torch")
if importlib.util.find_spec("moses") is None:  # molsets, installed with --no-deps (.ci/install)
    pytest.skip("molsets is not installed", allow_module_level=True)

from cmim_hf.commands import evaluate as evaluate_command  # noqa: E402
from cmim_hf.embeddings import generate_smiles, load_pretrained  # noqa: E402
from cmim_hf.evaluation import model_eval  # noqa: E402
from cmim_hf.evaluation.length import LENGTH_BUCKETS, length_buckets_reconstruction  # noqa: E402
from cmim_hf.evaluation.metrics import validity  # noqa: E402
from cmim_hf.evaluation.moses_benchmark import (  # noqa: E402
    MOSES_METRICS,
    default_radius,
    moses_metrics,
    sample_around_test,
)

SAMPLES = 200


@pytest.fixture(scope="module")
def tiny():
    return load_pretrained("cmim-moses-tiny", device="cpu")


@pytest.fixture(scope="module")
def evaluated(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("moses") / "eval"
    model_eval.evaluate_model("cmim-moses-tiny", out, sections=("moses",), moses_samples=SAMPLES, seed=3,
                              device="cpu", progress=False)
    return out, json.loads((out / "results.json").read_text())


def test_moses_section_reports_every_metric_in_range(evaluated):
    out, results = evaluated
    assert set(results) >= {"moses", "settings"} and "reconstruction" not in results and results["tasks"] == {}
    assert results["moses"]["settings"]["radius"] == default_radius() == 1.0
    for row in ("prior", "around_test"):
        metrics = results["moses"][row]
        assert set(MOSES_METRICS) <= set(metrics) and metrics["n"] == SAMPLES
        assert metrics["n_valid"] >= 2, "the tiny model gives a few valid molecules in 200 at this seed"
        assert metrics["valid"] == pytest.approx(metrics["n_valid"] / SAMPLES)
        assert metrics["FCD/Test"] > 0 and metrics["FCD/TestSF"] > 0
        for key in MOSES_METRICS:
            if not key.startswith("FCD"):
                assert 0 <= metrics[key] <= 1, (row, key, metrics[key])
    report = (out / "results.md").read_text()
    assert "## MOSES benchmark" in report and "| prior |" in report and "| around test |" in report


def test_moses_validity_equals_ours_on_the_same_samples(tiny, evaluated):
    """The samples are reproducible from the seed: MOSES's Valid is cmim_hf's validity of those strings."""
    _, results = evaluated
    model, tokenizer = tiny
    prior = generate_smiles(model, tokenizer, SAMPLES, seed=3)
    assert prior[:10] == results["moses"]["prior"]["examples"]
    assert results["moses"]["prior"]["valid"] == pytest.approx(validity(prior))
    seeds, around = sample_around_test(model, tokenizer, SAMPLES, radius=1.0, seed=3)
    assert [[x, y] for x, y in zip(seeds[:10], around)] == results["moses"]["around_test"]["examples"]
    assert results["moses"]["around_test"]["valid"] == pytest.approx(validity(around))


def test_moses_metrics_of_test_molecules_find_themselves(moses_smiles):
    """MOSES test molecules are their own nearest neighbours in the test set (SNN/Test = 1); two invalid strings
    count against validity only."""
    from cmim_hf.data import moses_sample

    test = moses_sample("test", 50, seed=0)
    metrics = moses_metrics(test + ["C1CC", "not a molecule"])
    assert metrics["n_valid"] == 50 and metrics["valid"] == pytest.approx(50 / 52)
    assert metrics["SNN/Test"] == pytest.approx(1.0)
    assert metrics["SNN/TestSF"] < 0.9  # the scaffold test set shares no scaffold with them
    assert metrics["Novelty"] == 1.0  # MOSES test and train do not overlap


def test_moses_metrics_with_fewer_than_two_valid_samples_report_validity_only():
    metrics = moses_metrics(["CCO", "C1CC", "xyz"])
    assert metrics["valid"] == pytest.approx(1 / 3) and metrics["n_valid"] == 1
    assert math.isnan(metrics["FCD/Test"]) and math.isnan(metrics["Novelty"])
    with pytest.raises(ValueError, match="at least one sample"):
        moses_metrics([])


def test_frag_and_scaf_cosine_of_large_counts_is_computed_in_float():
    """molsets' count cosine on current scipy multiplies int64 squared norms: with MOSES test's fragment counts
    (squared norm 3.0e10) and a generator's of 4e8 the product wraps. During the metrics it is float64."""
    import numpy as np

    from cmim_hf.evaluation.moses_benchmark import _float_count_cosine, import_moses

    import_moses()
    from moses.metrics import metrics as module

    reference, generated = {"c1ccccc1": 173_000, "C1CC1": 1}, {"c1ccccc1": 20_000, "C1CC1": 3}
    r, g = np.array([173_000.0, 1.0]), np.array([20_000.0, 3.0])
    expected = r @ g / np.linalg.norm(r) / np.linalg.norm(g)
    original = module.cos_distance
    with _float_count_cosine():
        assert module.cos_similarity(reference, generated) == pytest.approx(expected, rel=1e-12)
    assert module.cos_distance is original
    with pytest.raises(ValueError, match="math domain error"):  # what 30,000 cmim-moses-base samples met
        module.cos_similarity(reference, generated)


def test_length_buckets_of_a_64_token_model(tiny):
    """The shipped tiny model reads 64 tokens: only the first bucket is read whole, and longer molecules, cut at
    64 tokens, are never reconstructed exactly."""
    model, tokenizer = tiny
    results = length_buckets_reconstruction(model, tokenizer, sets=("chembl_drugs",), max_samples=3)
    assert results["max_input_length"] == 64 and results["read_in_full"] == ["<= 64"]
    entry = results["sets"]["chembl_drugs"]
    assert list(entry["buckets"]) == ["<= 64", "65-96", "97-128"] and entry["n"] > 1000
    for name, bucket in entry["buckets"].items():
        assert bucket["n"] == 3 and 0 <= bucket["token_accuracy"] <= 1
        lengths = [len(tokenizer(x)["input_ids"]) for x, _ in bucket["examples"]]
        low, high = LENGTH_BUCKETS[list(entry["buckets"]).index(name)]
        assert all(low <= n <= high for n in lengths)
        if name != "<= 64":
            assert bucket["exact"] == 0
    by_position = entry["token_accuracy_by_position"]
    assert list(by_position) == ["<= 64"], "a 64-token model has no target beyond position 64"
    # every measured molecule has targets at positions 2..min(length, 64); the 6 longer ones fill all 63
    assert by_position["<= 64"]["tokens"] >= 6 * 63 and 0 <= by_position["<= 64"]["accuracy"] <= 1


def test_evaluate_command_sections(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_command.main(["cmim-moses-tiny", "--output_dir", str(tmp_path / "a"), "--sections", "bogus"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        evaluate_command.main(["cmim-moses-tiny", "--output_dir", str(tmp_path / "b"), "--sections", "moses",
                               "--update_card"])
    assert "--update_card rewrites the card" in capsys.readouterr().err
    with pytest.raises(ValueError, match="sections must be some of"):
        model_eval.evaluate_model("cmim-moses-tiny", tmp_path / "c", sections=("moses", "everything"))


def test_moses_section_of_a_plain_encoder_decoder_is_refused_not_skipped(tmp_path):
    from transformers import AutoModelForSeq2SeqLM, BartConfig

    from cmim_hf.tokenization import default_smiles_tokenizer

    tokenizer = default_smiles_tokenizer(model_max_length=64)
    config = BartConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        decoder_start_token_id=tokenizer.bos_token_id)
    AutoModelForSeq2SeqLM.from_config(config).save_pretrained(tmp_path / "bart")
    tokenizer.save_pretrained(tmp_path / "bart")
    with pytest.raises(ValueError, match="the moses section samples a cMIM model's latent space"):
        model_eval.evaluate_model(str(tmp_path / "bart"), tmp_path / "out", sections=("moses",))
    assert not (tmp_path / "out" / "results.json").exists()
