"""The cMIM model family's names, importing nothing: for the commands' `--help` and argument checks, which must not
import torch or transformers (`cmim_hf.modeling` is lazy: `import cmim_hf.modeling.names` loads only this file).

The model's files keep their own definitions (`configuration_cmim.py`: OBJECTIVES, LATENT_POOLINGS, REDUCTIONS;
`modeling_cmim.py`: EMBEDDING_KINDS, beside `seq2seq_embedding`, `embedding_kinds` and `embedding_size`), because
they travel as remote code and a relative import of this file would make transformers print "A new version of the
following files was downloaded" whenever a model is first loaded from the Hub (tests/test_habits.py). This module
is package-only, and tests/test_cli.py keeps its values equal to the model files'.
"""

__all__ = ["EMBEDDING_KINDS", "LATENT_POOLINGS", "OBJECTIVES", "REDUCTIONS"]

OBJECTIVES = ("cmim", "mim", "vae", "ae", "infonce")  # the training objectives of a cMIM model
LATENT_POOLINGS = ("perceiver", "mean")
REDUCTIONS = ("mean", "sum")
EMBEDDING_KINDS = ("informative", "latent", "decoder", "encoder")
