"""The on-disk format of an embedded compound library, shared by the writer (`cmim-hf embed` to parquet) and
its readers (`cmim-hf index`, `cmim-hf search`).

A library is a folder:

    OUT/
      .manifest.json         what every shard was made with, and the list of finished shards
      shard-00000.parquet    rows in input order; a shard is listed in the manifest only once it is complete
      shard-00001.parquet
      ...

Columns of every shard (`COLUMNS`):
    row_id          int64    the row's 0-based index in the input
    smiles          string   the input text as given
    embedding       fixed_size_list<float32 | float16>[width]
    invalid         bool     RDKit could not parse it (False when not checked)
    unknown_tokens  bool     the tokenizer mapped part of it to <unk>
    truncated       bool     it was longer than the model reads and was cut

`model_fingerprint` names the weights a library (or an index built from it) was made with, so that a reader
given another model refuses instead of mixing vectors from two models.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["COLUMNS", "FORMAT_NAME", "MANIFEST_NAME", "SHARD_PATTERN", "model_fingerprint"]

FORMAT_NAME = "cmim-hf-embeddings"
# Hidden, so that pandas.read_parquet(OUT), pyarrow.parquet.read_table(OUT) and datasets.load_dataset("parquet",
# data_dir=OUT) read the folder as it is: pyarrow skips names starting with "." or "_", datasets only "." ones,
# and both fail on any other file that is not parquet.
MANIFEST_NAME = ".manifest.json"
SHARD_PATTERN = "shard-{index:05d}.parquet"
COLUMNS = ("row_id", "smiles", "embedding", "invalid", "unknown_tokens", "truncated")

_CHUNK = 1 << 20


def model_fingerprint(folder: str | os.PathLike) -> str:
    """SHA-256 (hex) over the model folder's weight files, in name order (`model.safetensors`, or the shards of
    `model.safetensors.index.json`, or `pytorch_model*.bin`). Re-saving the same weights with new code or a new
    card keeps it; any change of a weight changes it."""
    folder = Path(folder)
    names = sorted(path.name for path in folder.glob("*.safetensors")) or \
        sorted(path.name for path in folder.glob("pytorch_model*.bin"))
    if not names:
        raise FileNotFoundError(f"{folder} holds no weight files (model.safetensors or pytorch_model*.bin)")
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0")
        with open(folder / name, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
