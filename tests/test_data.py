"""Named data sets, user files, tokenization with a report of bad rows, randomised SMILES views."""

import gzip
import importlib.util
import io
import json
import subprocess
import sys

import datasets
import huggingface_hub
import pytest

from cmim_hf import data
from cmim_hf.data import (
    TokenizeReport,
    list_datasets,
    load_named_dataset,
    load_text_dataset,
    load_text_splits,
    moses_data_dir,
    resolve_text_source,
    tokenize_dataset,
)
from cmim_hf.chem import randomized_smiles_views
from cmim_hf.tokenization import default_smiles_tokenizer

requires_moses = pytest.mark.skipif(
    importlib.util.find_spec("moses") is None, reason="MOSES data: pip install --no-deps molsets==0.3.1"
)
MOSES_TRAIN_HEAD = [
    "CCCS(=O)c1ccc2[nH]c(=NC(=O)OC)[nH]c2c1",
    "CC(C)(C)C(=O)C(Oc1ccc(Cl)cc1)n1ccnc1",
    "Cc1c(Cl)cccc1Nc1ncccc1C(=O)OCC(O)CO",
]
MOSES_TEST_HEAD = [
    "CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1",
    "COc1ccc(-c2cc(=O)c3c(O)c(OC)c(OC)cc3o2)cc1O",
    "CCOC(=O)c1ncn2c1CN(C)C(=O)c1cc(F)ccc1-2",
]
SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O"]


@pytest.fixture(scope="module")
def tokenizer():
    return default_smiles_tokenizer()


@pytest.fixture
def tmp_datasets_cache(tmp_path, monkeypatch):
    """Keep the Arrow copies of the tests' little files out of the user's `datasets` cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    return tmp_path


# ----------------------------------------------------------------------------------------------- named sets
def test_registry():
    assert list_datasets() == ["moses"]
    assert data.NAMED_DATASETS["moses"].num_rows["train"] == 1_584_663


@requires_moses
def test_moses_train_rows_and_head():
    train = load_named_dataset("moses")
    assert train.column_names == ["text"]
    assert len(train) == 1_584_663
    assert train[:3]["text"] == MOSES_TRAIN_HEAD


@requires_moses
@pytest.mark.parametrize(("split", "rows"), [("test", 176_074), ("test_scaffolds", 176_225)])
def test_moses_test_splits(split, rows):
    assert (moses_data_dir() / f"{split}.csv.gz").is_file()
    assert len(load_named_dataset("moses", split)) == rows


@requires_moses
def test_moses_max_samples_and_seed():
    head = load_named_dataset("moses", "test", max_samples=100)
    assert len(head) == 100 and head[:3]["text"] == MOSES_TEST_HEAD
    sample = load_named_dataset("moses", "test", max_samples=100, seed=0)
    assert sample["text"] == load_named_dataset("moses", "test", max_samples=100, seed=0)["text"]
    assert sample["text"] != head["text"]
    assert sample["text"] != load_named_dataset("moses", "test", max_samples=100, seed=1)["text"]
    assert len(set(sample["text"])) == 100  # a sample without replacement


def test_named_dataset_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown data set 'zinc'; available: moses"):
        load_named_dataset("zinc")
    with pytest.raises(ValueError, match="no split 'valid'; splits: train, test, test_scaffolds"):
        load_named_dataset("moses", "valid")
    with pytest.raises(ValueError, match="max_samples"):
        load_named_dataset("moses", max_samples=0)
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps molsets==0\.3\.1"):
        moses_data_dir()


# ----------------------------------------------------------------------------------------------- user files
def _write(path, kind):
    """Write SMILES with a label column in one format; returns the path."""
    labels = [0.5, 1.5, 2.5, 3.5]
    if kind in ("csv", "tsv"):
        sep = "\t" if kind == "tsv" else ","
        datasets.Dataset.from_dict({"smiles": SMILES, "y": labels}).to_csv(str(path), sep=sep, index=False)
    elif kind == "csv.gz":
        with gzip.open(path, "wt") as f:
            f.write("smiles,y\n" + "".join(f"{s},{y}\n" for s, y in zip(SMILES, labels)))
    elif kind == "parquet":
        datasets.Dataset.from_dict({"smiles": SMILES, "y": labels}).to_parquet(str(path))
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"smiles": s, "y": y}) + "\n" for s, y in zip(SMILES, labels)))
    elif kind == "json":
        path.write_text(json.dumps([{"smiles": s, "y": y} for s, y in zip(SMILES, labels)]))
    elif kind == "disk":
        datasets.Dataset.from_dict({"smiles": SMILES, "y": labels}).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "tsv", "parquet", "jsonl", "json", "disk"])
def test_load_tabular_files_keep_labels(tmp_datasets_cache, kind):
    path = _write(tmp_datasets_cache / f"mols.{kind}", kind)
    dataset = load_text_dataset(path)
    assert isinstance(dataset, datasets.Dataset)
    assert dataset["text"] == SMILES and dataset["y"] == [0.5, 1.5, 2.5, 3.5]


@pytest.mark.parametrize("suffix", ["smi", "smi.gz"])
def test_load_line_files(tmp_datasets_cache, suffix):
    smi = tmp_datasets_cache / f"mols.{suffix}"
    text = "CCO ethanol\nc1ccccc1O\tphenol\n\nCC(=O)Nc1ccc(O)cc1 paracetamol extra\n"
    if suffix.endswith(".gz"):
        with gzip.open(smi, "wt") as handle:
            handle.write(text)
    else:
        smi.write_text(text)
    assert load_text_dataset(smi)["text"] == ["CCO", "c1ccccc1O", "", "CC(=O)Nc1ccc(O)cc1"]
    assert load_text_splits(smi, skip_blank_lines=True)["train"]["text"] == ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    txt = tmp_datasets_cache / "lines.txt.gz"
    with gzip.open(txt, "wt") as handle:
        handle.write("a b c\nd e\n")
    assert load_text_dataset(txt)["text"] == ["a b c", "d e"]


def test_load_stdin_as_smi_lines():
    stdin = io.StringIO("CCO ethanol\n\nc1ccccc1O\n")
    splits = load_text_splits("-", allow_stdin=True, skip_blank_lines=True, stdin=stdin)
    assert list(splits) == ["train"] and splits["train"]["text"] == ["CCO", "c1ccccc1O"]
    with pytest.raises(FileNotFoundError, match="no such file or folder: -"):
        load_text_splits("-")  # only where stdin is allowed (embed)


def _hub_layout(folder, splits: dict[str, list[str]]):
    """A data folder as the Hub lays one out: data/<split>-00000-of-00001.parquet and a README with configs."""
    (folder / "data").mkdir(parents=True)
    for split, smiles in splits.items():
        datasets.Dataset.from_dict({"smiles": smiles, "y": [float(i) for i in range(len(smiles))]}).to_parquet(
            str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    files = "".join(f"  - split: {split}\n    path: data/{split}-*\n" for split in splits)
    (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: default\n  data_files:\n{files}---\n# mols\n")
    return folder


def test_load_data_folders_as_datasets_reads_them(tmp_datasets_cache):
    hub = _hub_layout(tmp_datasets_cache / "hub_style", {"train": ["CCO", "CCN"], "test": ["CCC"]})
    splits = load_text_splits(hub)
    assert {k: v["text"] for k, v in splits.items()} == {"train": ["CCO", "CCN"], "test": ["CCC"]}
    assert splits["train"]["y"] == [0.0, 1.0]  # other columns kept
    assert load_text_dataset(hub, split="test")["text"] == ["CCC"]
    with pytest.raises(ValueError, match=r"hub_style holds splits \['train', 'test'\]; choose one with split="):
        load_text_dataset(hub)
    csvs = tmp_datasets_cache / "csvs"
    csvs.mkdir()
    (csvs / "train.csv").write_text("id,mol\n1,CCO\n2,CCN\n")
    (csvs / "test.csv").write_text("id,mol\n3,CCC\n")
    splits = load_text_splits(csvs, "mol")
    assert {k: v["text"] for k, v in splits.items()} == {"train": ["CCO", "CCN"], "test": ["CCC"]}
    with pytest.raises(ValueError, match=r"csvs \(split 'train'\) has no column 'smiles'; its columns are "
                                         r"\['id', 'mol'\]"):
        load_text_splits(csvs, "smiles")


def test_load_a_hub_dataset_from_the_local_cache_offline(tmp_datasets_cache, monkeypatch):
    """A Hub data-set id is read from huggingface_hub's cache (laid out as it lays it out), without the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_datasets_cache / "hub"))
    repo = tmp_datasets_cache / "hub" / "datasets--org--mols"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    _hub_layout(repo / "snapshots" / commit, {"train": ["CCO", "CCN"], "validation": ["CCC"]})
    assert resolve_text_source("org/mols").kind == "hub"
    splits = load_text_splits("org/mols")
    assert {k: v["text"] for k, v in splits.items()} == {"train": ["CCO", "CCN"], "validation": ["CCC"]}
    with pytest.raises(FileNotFoundError, match=r"no such file or folder: org/absent \(and no Hub data set of that "
                                                r"id in the local cache, and HF_HUB_OFFLINE=1 forbids downloading\)"):
        load_text_splits("org/absent")


def test_load_explicit_column_and_dataset_dict(tmp_datasets_cache):
    csv = tmp_datasets_cache / "two.csv"
    csv.write_text("id,mol,y\n1,CCO,0\n2,CCN,1\n")
    assert load_text_dataset(csv, "mol").column_names == ["id", "text", "y"]
    folder = tmp_datasets_cache / "dict"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["CCO"]}),
        "test": datasets.Dataset.from_dict({"text": ["CCN", "CCC"]}),
    }).save_to_disk(str(folder))  # fmt: skip
    assert load_text_dataset(folder, split="test")["text"] == ["CCN", "CCC"]
    with pytest.raises(ValueError, match=r"holds splits \['train', 'test'\]; choose one with split="):
        load_text_dataset(folder)


@pytest.mark.parametrize("kind", ["csv", "jsonl", "disk"])
def test_streaming(tmp_datasets_cache, kind):
    path = _write(tmp_datasets_cache / f"mols.{kind}", kind)
    stream = load_text_dataset(path, streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    assert [row["text"] for row in stream] == SMILES


def test_load_text_dataset_errors(tmp_datasets_cache):
    tmp = tmp_datasets_cache
    with pytest.raises(FileNotFoundError, match="no such file or folder: .*missing.csv"):
        load_text_dataset(tmp / "missing.csv")
    two = tmp / "two.csv"
    two.write_text("a,b\nCCO,CCN\n")
    with pytest.raises(ValueError, match=r"two.csv has no column 'smiles'; its columns are \['a', 'b'\]"):
        load_text_dataset(two, "smiles")
    with pytest.raises(ValueError, match=r"cannot tell which column of .*two.csv holds the texts"):
        load_text_dataset(two)
    with pytest.raises(ValueError, match=r"two.csv has no split 'test'; splits: \['train'\]"):
        load_text_dataset(two, "a", split="test")  # a file is one split, "train"
    (tmp / "mols.xlsx").write_text("")
    with pytest.raises(ValueError, match=r"cannot read .*mols.xlsx: unknown format '.xlsx'; expected .csv"):
        load_text_dataset(tmp / "mols.xlsx")
    (tmp / "plain_folder").mkdir()
    with pytest.raises(ValueError, match="plain_folder is a folder but holds no data files datasets can read"):
        load_text_dataset(tmp / "plain_folder")
    clash = tmp / "clash.csv"
    clash.write_text("text,smiles\nhello,CCO\n")
    with pytest.raises(ValueError, match="already has a 'text' column; cannot rename 'smiles'"):
        load_text_dataset(clash, "smiles")


# ----------------------------------------------------------------------------------------------- tokenizing
def _planted():
    """12 rows: 7 good molecules and 5 planted bad ones at known places."""
    texts = list(SMILES) + ["CCN", "CCCl", "O=C=O"]
    texts.insert(2, None)  # not a string
    texts.insert(5, "")  # empty
    texts.insert(6, "   ")  # whitespace
    texts.insert(8, "C" * 70)  # 72 tokens > max_length=64
    texts.insert(10, "C[Zz]C")  # unknown token
    return datasets.Dataset.from_dict({"text": texts, "row": list(range(len(texts)))})


def test_tokenize_counts_exactly_the_planted_rows(tokenizer):
    dataset = _planted()
    tokenized, report = tokenize_dataset(dataset, tokenizer, max_length=64)
    assert isinstance(report, TokenizeReport)
    assert report.counts == {"not_a_string": 1, "empty": 2, "too_long": 1, "unknown_tokens": 1}
    assert (report.total, report.kept, report.skipped) == (12, 8, 4)
    assert report.examples == {
        "not_a_string": [(2, "None")],
        "empty": [(5, "''"), (6, "'   '")],
        "too_long": [(8, repr("C" * 70)[:57] + "...")],
        "unknown_tokens": [(10, "'C[Zz]C'")],
    }
    assert tokenized["row"] == [0, 1, 3, 4, 7, 9, 10, 11]  # other columns stay aligned
    assert tokenized.column_names == ["text", "row", "input_ids", "attention_mask", "length"]
    expected = tokenizer(list(tokenized["text"]))["input_ids"]
    assert tokenized["input_ids"] == expected
    assert tokenized["length"] == [len(ids) for ids in expected]
    assert tokenized["attention_mask"] == [[1] * len(ids) for ids in expected]
    text = str(report)
    assert "kept 8, skipped 4" in text and "unknown_tokens: 1 (kept), e.g. row 10: 'C[Zz]C'" in text
    assert "empty: 2 (skipped), e.g. row 5: '', row 6: '   '" in text

    tokenized, report = tokenize_dataset(dataset, tokenizer, max_length=64, skip_unknown=True)
    assert (report.kept, report.counts["unknown_tokens"]) == (7, 1)
    assert 10 not in tokenized["row"]


def test_tokenize_non_string_column_and_errors(tokenizer):
    tokenized, report = tokenize_dataset(datasets.Dataset.from_dict({"text": [1, 2, 3]}), tokenizer, max_length=8)
    assert (len(tokenized), report.counts["not_a_string"]) == (0, 3)
    with pytest.raises(ValueError, match=r"no column 'smiles'; its columns are \['text', 'row'\]"):
        tokenize_dataset(_planted(), tokenizer, max_length=64, text_column="smiles")
    with pytest.raises(ValueError, match="max_length must be a positive int"):
        tokenize_dataset(_planted(), tokenizer, max_length=0)
    with pytest.raises(TypeError, match="needs a datasets.Dataset"):
        tokenize_dataset(_planted().to_iterable_dataset(), tokenizer, max_length=64)


def test_tokenize_reuses_the_cache(tmp_path):
    datasets.Dataset.from_dict({"text": SMILES * 10}).save_to_disk(str(tmp_path / "d"))
    dataset = datasets.load_from_disk(str(tmp_path / "d"))
    first, _ = tokenize_dataset(dataset, default_smiles_tokenizer(), max_length=32)
    again, report = tokenize_dataset(dataset, default_smiles_tokenizer(), max_length=32)  # a fresh, equal tokenizer
    assert report.kept == 40
    assert [f["filename"] for f in again.cache_files] == [f["filename"] for f in first.cache_files]
    other, _ = tokenize_dataset(dataset, default_smiles_tokenizer(), max_length=16)
    assert [f["filename"] for f in other.cache_files] != [f["filename"] for f in first.cache_files]


# ----------------------------------------------------------------------------------------------- views
def test_randomized_views_are_the_same_molecule():
    Chem = pytest.importorskip("rdkit.Chem")
    views = randomized_smiles_views(SMILES, n_views=3, seed=7)
    assert [len(v) for v in views] == [3, 3, 3, 3]
    for smiles, molecule_views in zip(SMILES, views):
        canonical = Chem.CanonSmiles(smiles)
        assert {Chem.CanonSmiles(v) for v in molecule_views} == {canonical}
    assert randomized_smiles_views(SMILES, n_views=3, seed=7) == views
    assert randomized_smiles_views(SMILES, n_views=3, seed=8) != views
    mols = [Chem.MolFromSmiles(s) for s in SMILES]  # parsed once by the caller
    assert randomized_smiles_views(mols, n_views=3, seed=7) == views
    assert randomized_smiles_views("CCO", seed=1)[0][0] in {"CCO", "OCC", "C(C)O", "C(O)C"}


def test_randomized_views_errors():
    pytest.importorskip("rdkit")
    with pytest.raises(ValueError, match=r"2 of 4 SMILES .*smiles_list\[1\] = 'C1CC'; smiles_list\[3\] = ''"):
        randomized_smiles_views(["CCO", "C1CC", "CCN", ""])
    with pytest.raises(TypeError, match=r"smiles_list\[1\] is float \(1\.5\)"):
        randomized_smiles_views(["CCO", 1.5])
    with pytest.raises(ValueError, match="n_views"):
        randomized_smiles_views(["CCO"], n_views=0)


def test_imports_and_errors_without_rdkit():
    """The data and tokenizer modules import without RDKit; the functions that need it say how to get it."""
    code = (
        "import sys; sys.modules['rdkit'] = None\n"  # makes `import rdkit` raise ImportError
        "import cmim_hf.chem, cmim_hf.data, cmim_hf.tokenization\n"
        "for call in (lambda: cmim_hf.chem.randomized_smiles_views(['CCO']),\n"
        "             lambda: cmim_hf.chem.validate_smiles(['CCO']),\n"
        "             lambda: cmim_hf.chem.check_smiles_validity(['CCO'], 'raise')):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as error:\n"
        "        print(error)\n"
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    cmim_hf.chem.check_smiles_validity(['CCO'], 'warn')\n"
        "print(caught[0].message)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        'randomized_smiles_views needs RDKit: pip install "cmim-hf[chem]" (or rdkit)',
        'validate_smiles needs RDKit: pip install "cmim-hf[chem]" (or rdkit)',
        'checking SMILES needs RDKit: pip install "cmim-hf[chem]" (or rdkit)',
        'SMILES validity was not checked: it needs RDKit: pip install "cmim-hf[chem]" (or rdkit); '
        "on_invalid='ignore' silences this",
    ]
