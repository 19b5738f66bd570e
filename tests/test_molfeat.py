"""The molfeat plugin: molfeat's plugin loader finds `cmim.*`, its rows equal `embed_smiles` of the canonical
SMILES molfeat hands it, it clones, pickles and grid-searches as molfeat's transformers do, and its ModelInfo card
comes from the model's own card."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("molfeat")

import datamol as dm  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from cmim_hf.embedding_store import model_fingerprint  # noqa: E402
from cmim_hf.embeddings import embed_smiles, load_pretrained  # noqa: E402
from cmim_hf.pretrained import pretrained_path  # noqa: E402

SMILES = ["CCO", "OCC", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]


@pytest.fixture(scope="module")
def plugin_class():
    from molfeat.plugins import load_registered_plugins

    load_registered_plugins(plugins=["cmim"], groups=["molfeat.trans.pretrained"])
    import molfeat.trans.pretrained as pretrained

    return pretrained.CMIMMolTransformer


def test_molfeat_finds_the_plugin_by_its_entry_point(plugin_class):
    from molfeat.plugins.entry_point import get_entry_points

    names = [entry.name for entry in get_entry_points("molfeat.trans.pretrained")]
    assert "cmim.CMIMMolTransformer" in names and all(n.startswith("cmim.") for n in names if "CMIM" in n)
    assert plugin_class.__module__ == "cmim_hf.molfeat_plugin"


@pytest.mark.parametrize("kind", ["informative", "latent"])
def test_rows_equal_embed_smiles_of_the_canonical_smiles(plugin_class, kind):
    featurizer = plugin_class(model="cmim-moses-tiny", kind=kind)
    rows = featurizer(SMILES)
    model, tokenizer = load_pretrained("cmim-moses-tiny", device="cpu")
    canonical = [dm.to_smiles(dm.to_mol(s)) for s in SMILES]
    np.testing.assert_array_equal(rows, embed_smiles(model, tokenizer, canonical, kind=kind))
    assert rows.dtype == np.float32 and rows.shape == (len(SMILES), model.config.embedding_size if kind ==
                                                        "informative" else model.config.latent_dim)
    np.testing.assert_array_equal(rows[0], rows[1])  # CCO and OCC: one molecule
    assert len(featurizer) == rows.shape[1]


def test_clones_pickles_and_grid_searches(plugin_class):
    featurizer = plugin_class(model="cmim-moses-tiny", kind="informative", batch_size=4)
    expected = featurizer(SMILES)
    copy = clone(featurizer)
    assert copy.get_params() == featurizer.get_params() and copy is not featurizer
    restored = pickle.loads(pickle.dumps(featurizer))
    assert restored._embed_fn is None  # the model is not in the pickle: reloaded on use
    np.testing.assert_array_equal(restored(SMILES), expected)
    y = np.arange(len(SMILES), dtype=float)
    search = GridSearchCV(Pipeline([("cmim", plugin_class(model="cmim-moses-tiny")), ("ridge", Ridge())]),
                          {"cmim__kind": ["latent", "decoder"], "ridge__alpha": [0.1, 1.0]}, cv=2)
    search.fit(SMILES, y)
    assert search.best_params_["cmim__kind"] in ("latent", "decoder")
    assert search.predict(SMILES[:2]).shape == (2,)


def test_model_card_fields_come_from_the_models_own_card(plugin_class):
    import json

    folder = pretrained_path("cmim-moses-small")
    card = plugin_class(model="cmim-moses-small").card
    settings = json.loads((folder / "card_data.json").read_text())
    assert card.name == "cmim.cmim-moses-small" and card.type == "pretrained" and card.inputs == "smiles"
    assert card.license == settings["license"] and card.tags == settings["tags"]
    assert card.sha256sum == model_fingerprint(folder)
    readme = (folder / "README.md").read_text()
    assert card.description and card.description in readme
    assert 'CMIMMolTransformer(model="cmim-moses-small"' in card.usage()


def test_bad_kind_and_backend_are_refused_at_construction(plugin_class):
    with pytest.raises(ValueError, match="kind must be one of"):
        plugin_class(kind="pooled")
    with pytest.raises(ValueError, match="backend must be one of"):
        plugin_class(backend="tensorrt")
