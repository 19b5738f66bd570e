"""The longest MOSES molecules in tokens of the shipped tokenizer, specials included (what the positions hold).

Usage: OMP_NUM_THREADS=1 python results/length/moses_lengths.py   -> prints the maximum and 99.9th percentile per split
"""
import numpy as np

from cmim_hf.data import load_named_dataset
from cmim_hf.embeddings import load_pretrained

_, tokenizer = load_pretrained("cmim-moses-small", device="cpu")
for split in ("train", "test"):
    texts = load_named_dataset("moses", split=split)["text"]
    lengths = np.array([len(ids) for ids in tokenizer(list(texts))["input_ids"]])
    print(f"{split}: {len(lengths)} molecules, max {lengths.max()} tokens, 99.9th percentile "
          f"{np.percentile(lengths, 99.9):.0f}, over 64: {(lengths > 64).sum()}")
