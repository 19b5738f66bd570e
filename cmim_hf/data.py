"""Data sets as `datasets.Dataset`s: the named corpora, user files, tokenization with a report of bad rows.

Every loader returns the texts in one canonical column, `"text"` (`TEXT_COLUMN`), whatever the source
calls it (MOSES calls it `SMILES`); other columns, such as labels, are kept.

Randomised SMILES views (InfoNCE) are RDKit's job: `cmim_hf.chem.randomized_smiles_views`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import pyarrow.compute as pc

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "NAMED_DATASETS",
    "TEXT_COLUMN",
    "NamedDataset",
    "TextSource",
    "TokenizeReport",
    "StreamTokenizer",
    "default_eval_split",
    "iter_text_chunks",
    "list_datasets",
    "load_named_dataset",
    "load_text_dataset",
    "load_text_splits",
    "moses_data_dir",
    "moses_sample",
    "pick_split",
    "read_texts",
    "resolve_text_source",
    "tokenize_dataset",
]

TEXT_COLUMN = "text"


# ------------------------------------------------------------------------------------------------
# Named data sets
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NamedDataset:
    """A corpus whose files ship inside a Python package, so it loads offline."""

    name: str
    description: str
    package: str  # import name of the package holding the files; located, never imported
    install: str  # the command that installs that package
    subdir: str  # folder of the files inside the package
    files: dict[str, str]  # split -> file name
    column: str  # column of the text in the files
    num_rows: dict[str, int]  # split -> rows, as documented by the source
    license: str
    homepage: str
    title: str = ""  # how cards name it; default the name
    hub_id: str | None = None  # the same files as a Hub data set, for a card's `datasets:` metadata


NAMED_DATASETS: dict[str, NamedDataset] = {
    "moses": NamedDataset(
        name="moses",
        description="MOSES benchmark: 1.9M drug-like molecules (ZINC Clean Leads) as SMILES, no stereo or charges.",
        package="moses",
        # `import moses` fails on current stacks and `pip install molsets` pins an unbuildable pomegranate;
        # the data files only need the wheel's contents.
        install="pip install --no-deps molsets==0.3.1",
        subdir="dataset/data",
        files={"train": "train.csv.gz", "test": "test.csv.gz", "test_scaffolds": "test_scaffolds.csv.gz"},
        column="SMILES",
        num_rows={"train": 1_584_663, "test": 176_074, "test_scaffolds": 176_225},
        license="MIT",
        homepage="https://github.com/molecularsets/moses",
        title="MOSES",
        hub_id="katielink/moses",  # train.csv / test.csv / test_scaffolds.csv of the MOSES repository
    ),
}


def list_datasets() -> list[str]:
    """Names accepted by `load_named_dataset`, sorted."""
    return sorted(NAMED_DATASETS)


def _get_named(name: str) -> NamedDataset:
    if name not in NAMED_DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(list_datasets())}")
    return NAMED_DATASETS[name]


def _package_data_dir(spec: NamedDataset) -> Path:
    """The folder of `spec`'s files, found through the import system without importing the package."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the {spec.name!r} data set ships in the Python package {spec.package!r}, which is not installed; "
            f"install it with: {spec.install}"
        )
    folder = Path(list(found.submodule_search_locations)[0]) / spec.subdir
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: the installed {spec.package!r} package has no data files; "
                                f"reinstall it with: {spec.install}")  # fmt: skip
    return folder


def default_eval_split(available, requested: str | None = None) -> str | None:
    """The split to validate on: `requested`, else the first of validation / valid / test in `available`."""
    return requested or next((s for s in ("validation", "valid", "test") if s in available), None)


def moses_data_dir() -> Path:
    """The folder holding MOSES `train.csv.gz`, `test.csv.gz` and `test_scaffolds.csv.gz`."""
    return _package_data_dir(NAMED_DATASETS["moses"])


def load_named_dataset(
    name: str,
    split: str = "train",
    *,
    max_samples: int | None = None,
    seed: int | None = None,
) -> datasets.Dataset:
    """Load a named data set (see `list_datasets()`) as a `Dataset` with a `"text"` column.

    Args:
        name: e.g. `"moses"`.
        split: one of the data set's splits; for MOSES `"train"`, `"test"` or `"test_scaffolds"`.
        max_samples: keep only this many rows (for quick runs): the first ones, or a random sample
            when `seed` is given.
        seed: shuffle with this seed before taking `max_samples` (or shuffle all rows without it).

    The first load converts the file to Arrow in the `datasets` cache (~1 s for MOSES train); later
    loads memory-map the cached copy.
    """
    spec = _get_named(name)
    if split not in spec.files:
        raise ValueError(f"data set {name!r} has no split {split!r}; splits: {', '.join(spec.files)}")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive int, got {max_samples!r}")
    path = _package_data_dir(spec) / spec.files[split]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall the data with: {spec.install}")
    dataset = load_text_dataset(path, text_column=spec.column)
    if seed is not None:
        dataset = dataset.shuffle(seed=seed)
    if max_samples is not None and max_samples < len(dataset):
        dataset = dataset.select(range(max_samples))
    return dataset


# ------------------------------------------------------------------------------------------------
# User files, folders, Hub data sets and stdin: one reader for `cmim-hf train --dataset` and `embed --input`
# ------------------------------------------------------------------------------------------------
# suffix -> (`datasets` builder, extra builder arguments)
_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".parquet": ("parquet", {}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".txt": ("text", {}),
    ".smi": ("text", {}),
}
_LINE_FORMATS = (".txt", ".smi")
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
STDIN = "-"
SOURCES_TEXT = (".csv, .tsv, .parquet, .jsonl/.json, .txt, .smi (optionally compressed: .gz, .bz2, .xz, .zst, .zip), "
                "a save_to_disk folder, a data folder as on the Hub (data/train-*.parquet, train.csv + test.csv, "
                "...), or a Hub data-set id")


@dataclass(frozen=True)
class TextSource:
    """Where texts come from, found without reading them (`resolve_text_source`)."""

    name: str  # as the user gave it
    kind: str  # "stdin", "file", "saved" (save_to_disk folder), "folder" (load_dataset folder), "hub"
    path: Path | None = None  # the file or folder (a Hub data set: its snapshot in the local cache)
    suffix: str = ""  # files: the format suffix, compression removed


def moses_sample(split: str, n: int, seed: int) -> list[str]:
    """`n` SMILES of a MOSES split ("train", "test", "test_scaffolds"), a seeded random sample (what the
    evaluations, the MOSES benchmark and the flagship's stages all draw)."""
    return list(load_named_dataset("moses", split=split, max_samples=n, seed=seed)["text"])


def _format_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _hub_dataset_folder(repo_id: str) -> Path | None:
    """The local snapshot of the Hub data set `repo_id`: from the cache, else downloaded unless the Hub is off.
    None when it is neither cached nor downloadable."""
    from huggingface_hub import snapshot_download

    from .hub import hub_offline

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or not a valid id
        pass
    if hub_offline():
        return None
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset"))
    except Exception:  # unreachable Hub, no such repo, gated: reported as "not found" by the caller
        return None


def resolve_text_source(source: str | os.PathLike, *, allow_stdin: bool = False) -> TextSource:
    """Find what `source` names without reading its rows: `-` (stdin, when allowed), a file of a known format,
    a `save_to_disk` folder, a data folder `datasets.load_dataset` reads (as on the Hub: `data/train-*.parquet`
    with a README, `train.csv` and `test.csv`, ...), or a Hub data-set id (from the local cache, or downloaded
    unless HF_HUB_OFFLINE=1).

    Raises:
        FileNotFoundError: nothing of that name (the message says what was looked for).
        ValueError: a file of an unknown format.
    """
    name = os.fspath(source)
    if name == STDIN and allow_stdin:
        return TextSource(name, "stdin")
    path = Path(name).expanduser()
    if path.is_dir():
        saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
        return TextSource(name, "saved" if saved else "folder", path)
    if path.exists():
        suffix = _format_suffix(path)
        if suffix not in _FORMATS:
            raise ValueError(f"cannot read {path}: unknown format {suffix or '(no suffix)'!r}; expected "
                             f"{SOURCES_TEXT}")
        return TextSource(name, "file", path, suffix)
    from .hub import hub_offline, is_repo_id

    if not _format_suffix(path) and is_repo_id(name):
        folder = _hub_dataset_folder(name)
        if folder is not None:
            return TextSource(name, "hub", folder)
        where = "in the local cache, and HF_HUB_OFFLINE=1 forbids downloading" if hub_offline() else "found"
        raise FileNotFoundError(f"no such file or folder: {name} (and no Hub data set of that id {where})")
    raise FileNotFoundError(f"no such file or folder: {name}")


def _first_field(batch: dict[str, list]) -> dict[str, list]:
    """`.smi` lines are `SMILES [name ...]`: keep the SMILES (blank lines stay blank, to be counted later)."""
    return {"text": [line.split(maxsplit=1)[0] if line.strip() else line for line in batch["text"]]}


def _column_names(dataset: datasets.Dataset | datasets.IterableDataset) -> list[str]:
    if dataset.column_names is not None:
        return list(dataset.column_names)
    # Some streamed formats (JSON) only know their columns after reading a row.
    first = next(iter(dataset), None)
    return [] if first is None else list(first)


def _pick_text_column(columns: list[str], text_column: str | None, where: str) -> str:
    """The requested column, or when none was requested: `text`, else a `smiles` column, else the only one."""
    if text_column is not None:
        if text_column not in columns:
            raise ValueError(f"{where} has no column {text_column!r}; its columns are {columns}")
        return text_column
    if TEXT_COLUMN in columns:
        return TEXT_COLUMN
    smiles = [c for c in columns if c.lower() == "smiles"]
    if len(smiles) == 1:
        return smiles[0]
    if len(columns) == 1:
        return columns[0]
    raise ValueError(f"cannot tell which column of {where} holds the texts (columns: {columns}); pass text_column= "
                     "(--text_column)")


def _raw_splits(source: TextSource, streaming: bool, stdin=None) -> dict[str, Any]:
    """Every split of the source as `datasets` reads it (a file, stdin: one split, "train")."""
    if source.kind == "stdin":
        lines = [line.rstrip("\n") for line in (stdin if stdin is not None else sys.stdin)]
        dataset = datasets.Dataset.from_dict({"text": lines}).map(_first_field, batched=True)
        return {"train": dataset.to_iterable_dataset() if streaming else dataset}
    if source.kind == "file":
        builder, options = _FORMATS[source.suffix]
        if source.path.stat().st_size == 0:
            raise ValueError(f"{source.path} is empty; expected {source.suffix} rows")
        try:
            dataset = datasets.load_dataset(builder, data_files=str(source.path), split="train", streaming=streaming,
                                            **options)
        except (datasets.exceptions.DatasetGenerationError, ValueError) as error:  # a parser's error is the cause;
            # a ValueError: no rows (a header only: 'Instruction "train" corresponds to no data!')
            cause = error.__cause__ or error.__context__ or error
            raise ValueError(f"cannot read {source.path} as {source.suffix}: {cause}") from error
        if source.suffix == ".smi":
            dataset = dataset.map(_first_field, batched=True)
        return {"train": dataset}
    if source.kind == "saved":
        loaded = datasets.load_from_disk(str(source.path))
        splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        return {name: split.to_iterable_dataset() if streaming else split for name, split in splits.items()}
    try:  # a data folder (local, or a Hub snapshot): the split layout is datasets' to infer
        return dict(datasets.load_dataset(str(source.path), streaming=streaming))
    except datasets.data_files.EmptyDatasetError:
        raise ValueError(f"{source.name} is a folder but holds no data files datasets can read and was not written "
                         f"by save_to_disk; expected {SOURCES_TEXT}") from None


def load_text_splits(
    source: str | os.PathLike,
    text_column: str | None = None,
    *,
    streaming: bool = False,
    skip_blank_lines: bool = False,
    allow_stdin: bool = False,
    stdin=None,
) -> dict[str, datasets.Dataset | datasets.IterableDataset]:
    """Every split of a source (see `resolve_text_source`), the texts in a `"text"` column and other columns kept.

    A file (or stdin) is one split, `"train"`; folders and Hub data sets have the splits `datasets` finds.

    Args:
        text_column: column holding the texts. Default: `text` if present, else a column named `smiles` in any
            case, else the only column.
        streaming: `IterableDataset`s that read rows lazily, for files larger than memory.
        skip_blank_lines: drop blank lines of `.txt`/`.smi` files and stdin (they are kept by default, to be
            counted as empty rows by `tokenize_dataset`).
        allow_stdin: read stdin (lines as in a `.smi` file: the first field) when `source` is `-`.
        stdin: the stream to read for `-` (default `sys.stdin`).
    """
    resolved = resolve_text_source(source, allow_stdin=allow_stdin)
    splits = _raw_splits(resolved, streaming, stdin)
    out = {}
    for split, dataset in splits.items():
        where = resolved.name if len(splits) == 1 else f"{resolved.name} (split {split!r})"
        column = _pick_text_column(_column_names(dataset), text_column, where)
        if column != TEXT_COLUMN:
            if TEXT_COLUMN in _column_names(dataset):
                raise ValueError(f"{where} already has a {TEXT_COLUMN!r} column; cannot rename {column!r} to it")
            dataset = dataset.rename_column(column, TEXT_COLUMN)
        if skip_blank_lines and (resolved.kind == "stdin" or resolved.suffix in _LINE_FORMATS):
            dataset = dataset.filter(lambda text: bool(text.strip()), input_columns=TEXT_COLUMN)
        out[split] = dataset
    return out


def load_text_dataset(
    path: str | os.PathLike,
    text_column: str | None = None,
    *,
    split: str | None = None,
    streaming: bool = False,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load texts from a file, folder or Hub data set (see `load_text_splits`): one split, with the texts in a
    `"text"` column and other columns kept.

    Formats, by suffix (optionally compressed: `.gz`, `.bz2`, `.xz`, `.zst`, `.zip`):
      `.csv`, `.tsv`, `.parquet`, `.jsonl`/`.json` (JSON Lines, or a JSON list of records), `.txt` (one
      text per line, whole line), `.smi` (one molecule per line, first whitespace-separated field); or a
      folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`, a data folder as on the Hub, or a
      Hub data-set id.

    Args:
        path: the file, folder or Hub id.
        text_column: column holding the texts. Default: `text` if present, else a column named `smiles`
            in any case, else the only column.
        split: which split (needed when the source has several; a file has one, `"train"`).
        streaming: return an `IterableDataset` that reads rows lazily, for files larger than memory.
    """
    splits = load_text_splits(path, text_column, streaming=streaming)
    return pick_split(splits, split, path)


def read_texts(source: str | os.PathLike, text_column: str | None = None, *, split: str | None = None,
               allow_stdin: bool = False) -> list[str]:
    """The texts of a source (see `load_text_splits`) as a list, blank lines of line files (and stdin) skipped:
    what `cmim-hf embed --input` and `cmim-hf optimize --input` read. `source` may also name a data set of
    `list_datasets()` (then `split` picks its file), as for `iter_text_chunks`."""
    named = _named_file(os.fspath(source), split)
    if named is not None:
        path, column = named
        return list(load_text_dataset(path, text_column=text_column or column)[TEXT_COLUMN])
    splits = load_text_splits(source, text_column, skip_blank_lines=True, allow_stdin=allow_stdin)
    return list(pick_split(splits, split, source)[TEXT_COLUMN])


def _named_file(source: str, split: str | None) -> tuple[Path, str] | None:
    """A named data set (`moses`) given where a path is expected: the file of its `split` and its text column;
    None when `source` is an existing path or no data set's name."""
    if source not in NAMED_DATASETS or Path(source).exists():
        return None
    spec = NAMED_DATASETS[source]
    if split is None:
        raise ValueError(f"{source} holds splits {list(spec.files)}; choose one with split= (--split)")
    if split not in spec.files:
        raise ValueError(f"{source} has no split {split!r}; splits: {list(spec.files)}")
    return _package_data_dir(spec) / spec.files[split], spec.column


def _stdin_chunks(stdin, chunk_rows: int):
    """Lines of `stdin` as in a `.smi` file (first field, blank lines skipped), `chunk_rows` at a time, read lazily."""
    chunk = []
    for line in stdin:
        if line.strip():
            chunk.append(line.split(maxsplit=1)[0])
            if len(chunk) == chunk_rows:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def iter_text_chunks(source: str | os.PathLike, text_column: str | None = None, *, split: str | None = None,
                     chunk_rows: int = 10_000, allow_stdin: bool = False, stdin=None):
    """The texts of a source, `chunk_rows` at a time (the last chunk may be shorter), streamed: memory holds one
    chunk, never the whole input. The same texts, in the same order, as `read_texts` (blank lines of line files
    and stdin skipped); `source` may also name a data set of `list_datasets()` (then `split` picks its file).

    Yields:
        lists of texts (items are whatever the source holds: str, or None for an empty CSV cell).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
    name = os.fspath(source)
    if name == STDIN and allow_stdin:
        yield from _stdin_chunks(stdin if stdin is not None else sys.stdin, chunk_rows)
        return
    named = _named_file(name, split)
    if named is not None:
        path, column = named
        dataset = load_text_dataset(path, text_column=text_column or column, streaming=True)
    else:
        splits = load_text_splits(source, text_column, streaming=True, skip_blank_lines=True)
        dataset = pick_split(splits, split, source)
    for batch in dataset.select_columns([TEXT_COLUMN]).iter(batch_size=chunk_rows):
        yield batch[TEXT_COLUMN]


def pick_split(splits: dict, split: str | None, source) -> Any:
    """`splits[split]`, or the only split when `split` is None; errors list the splits there are."""
    if split is None:
        if len(splits) != 1:
            raise ValueError(f"{os.fspath(source)} holds splits {list(splits)}; choose one with split= (--split)")
        return next(iter(splits.values()))
    if split not in splits:
        raise ValueError(f"{os.fspath(source)} has no split {split!r}; splits: {list(splits)}")
    return splits[split]


# ------------------------------------------------------------------------------------------------
# Tokenization
# ------------------------------------------------------------------------------------------------
NOT_A_STRING, EMPTY, TOO_LONG, UNKNOWN_TOKENS = "not_a_string", "empty", "too_long", "unknown_tokens"
_REASONS = (NOT_A_STRING, EMPTY, TOO_LONG, UNKNOWN_TOKENS)
_STATUS = "_cmim_status"  # temporary per-row column: "" for a clean row, else one of _REASONS
_EXAMPLES_PER_REASON = 3


@dataclass
class TokenizeReport:
    """What `tokenize_dataset` did to each row. Each row has at most one reason, checked in the order of
    `counts`: not a str, empty/whitespace, longer than `max_length` tokens, has `<unk>` tokens."""

    total: int
    kept: int
    max_length: int
    counts: dict[str, int]  # reason -> rows, for all four reasons
    skipped_reasons: tuple[str, ...]  # reasons whose rows were dropped
    examples: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # reason -> [(row, repr)]

    @property
    def skipped(self) -> int:
        return self.total - self.kept

    def __str__(self) -> str:
        lines = [f"tokenized {self.total} rows (max_length={self.max_length}): "
                 f"kept {self.kept}, skipped {self.skipped}"]  # fmt: skip
        for reason in _REASONS:
            if self.counts.get(reason):
                action = "skipped" if reason in self.skipped_reasons else "kept"
                shown = ", ".join(f"row {i}: {text}" for i, text in self.examples.get(reason, []))
                lines.append(f"  {reason}: {self.counts[reason]} ({action}), e.g. {shown}")
        return "\n".join(lines)


def _classify_rows(texts: list, tokenizer: PreTrainedTokenizerBase,
                   max_length: int) -> tuple[list[list[int]], list[str]]:
    """Full-length ids of each row (`[]` where it is not usable text) and its status: "" for a clean row, else
    the first of `_REASONS` that applies. Never raises on bad data."""
    status = [""] * len(texts)
    good = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            status[i] = NOT_A_STRING
        elif not text.strip():
            status[i] = EMPTY
        else:
            good.append(i)
    from .tokenization import encode_texts

    input_ids: list[list[int]] = [[] for _ in texts]
    if good:
        unk = tokenizer.unk_token_id
        for i, ids in zip(good, encode_texts(tokenizer, [texts[i] for i in good])):
            input_ids[i] = ids
            if len(ids) > max_length:
                status[i] = TOO_LONG
            elif unk is not None and unk in ids:
                status[i] = UNKNOWN_TOKENS
    return input_ids, status


def _tokenize_batch(
    batch: dict[str, list], *, tokenizer: PreTrainedTokenizerBase, max_length: int, text_column: str
) -> dict[str, list]:
    """Tokenize the rows of a batch and give every row a status (see `_classify_rows`)."""
    input_ids, status = _classify_rows(batch[text_column], tokenizer, max_length)
    return {
        "input_ids": input_ids,
        "attention_mask": [[1] * len(ids) for ids in input_ids],
        "length": [len(ids) for ids in input_ids],
        _STATUS: status,
    }


def _is_kept(statuses: list[str], keep: tuple[str, ...]) -> list[bool]:
    return [s in keep for s in statuses]


def tokenize_dataset(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    text_column: str = TEXT_COLUMN,
    skip_unknown: bool = False,
    num_proc: int | None = None,
    batch_size: int = 1000,
) -> tuple[datasets.Dataset, TokenizeReport]:
    """Tokenize a text column without padding, dropping bad rows and counting why.

    Rows that are not str, are empty/whitespace, or are longer than `max_length` tokens (including
    `<bos>`/`<eos>`) are dropped; rows with `<unk>` tokens are counted and kept unless `skip_unknown`.
    A bad row never raises. Both steps (`map`, `filter`) are cached by `datasets` when the data set is
    backed by files, so a rerun with the same tokenizer and arguments reads the cache.

    Returns:
        `(tokenized, report)`: `tokenized` has the input columns plus `input_ids` (list of int32),
        `attention_mask` (list of int8, all ones) and `length` (int32, tokens per row); `report` is a
        `TokenizeReport` whose `str()` is a log-ready summary.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"tokenize_dataset needs a datasets.Dataset (map-style), got {type(dataset).__name__}")
    if text_column not in dataset.column_names:
        raise ValueError(f"the data set has no column {text_column!r}; its columns are {dataset.column_names}")
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length!r}")

    features = dataset.features.copy()
    features.update({
        "input_ids": datasets.List(datasets.Value("int32")),
        "attention_mask": datasets.List(datasets.Value("int8")),
        "length": datasets.Value("int32"),
        _STATUS: datasets.Value("string"),
    })  # fmt: skip
    mapped = dataset.map(
        _tokenize_batch,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        features=features,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "text_column": text_column},
        desc="Tokenizing",
    )

    from .tokenization import _preview

    statuses = mapped.with_format("arrow")[_STATUS]  # pyarrow column: counting stays out of Python loops
    counts, examples = {}, {}
    for reason in _REASONS:
        rows = pc.indices_nonzero(pc.equal(statuses, reason).combine_chunks()) if len(statuses) else []
        counts[reason] = len(rows)
        examples[reason] = [(int(i), _preview(dataset[int(i)][text_column], 60)) for i in rows[:_EXAMPLES_PER_REASON]]

    skipped_reasons = (NOT_A_STRING, EMPTY, TOO_LONG) + ((UNKNOWN_TOKENS,) if skip_unknown else ())
    keep = tuple(s for s in ("", *_REASONS) if s not in skipped_reasons)
    kept = mapped.filter(_is_kept, input_columns=_STATUS, batched=True, batch_size=batch_size, num_proc=num_proc,
                         fn_kwargs={"keep": keep}, desc="Dropping bad rows")  # fmt: skip
    kept = kept.remove_columns(_STATUS)
    report = TokenizeReport(
        total=len(dataset),
        kept=len(kept),
        max_length=max_length,
        counts=counts,
        skipped_reasons=skipped_reasons,
        examples={reason: rows for reason, rows in examples.items() if rows},
    )
    return kept, report


class StreamTokenizer:
    """`tokenize_dataset` for a streamed data set: a batched `IterableDataset.map` function that keeps the
    usable rows (`input_ids`, `length`) and counts the others by reason as they are read."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, skip_unknown: bool,
                 text_column: str = TEXT_COLUMN):
        self.tokenizer, self.max_length, self.text_column = tokenizer, max_length, text_column
        self.skipped_reasons = (NOT_A_STRING, EMPTY, TOO_LONG) + ((UNKNOWN_TOKENS,) if skip_unknown else ())
        self.counts = {"seen": 0, **{reason: 0 for reason in _REASONS}}

    def __call__(self, batch: dict) -> dict:
        input_ids, status = _classify_rows(batch[self.text_column], self.tokenizer, self.max_length)
        self.counts["seen"] += len(status)
        for reason in status:
            if reason:
                self.counts[reason] += 1
        kept = [ids for ids, reason in zip(input_ids, status) if reason not in self.skipped_reasons]
        return {"input_ids": kept, "length": [len(ids) for ids in kept]}

    def report(self) -> str:
        skipped = {k: v for k, v in self.counts.items() if k != "seen" and v}
        return f"streamed {self.counts['seen']} rows; counted problems: {skipped or 'none'}"
