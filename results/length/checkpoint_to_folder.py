"""A model folder (loadable by `cmim-hf evaluate`) from a training checkpoint, for the length comparison of two
runs stopped at the same step before the end of their schedule.

Usage: python results/length/checkpoint_to_folder.py RUN/checkpoint-STEP OUT_FOLDER
The model is rebuilt from the checkpoint's recipe.yaml (`cmim-hf train`'s own builder) and its weights read from
the checkpoint's model.safetensors: every stored tensor must fit, and every parameter it lacks must be tied to one
it holds (safetensors stores shared embeddings once).
"""
import sys
from pathlib import Path

from cmim_hf.saving import save_model_folder
from cmim_hf.training.checkpoints import load_checkpoint_model

checkpoint, out = Path(sys.argv[1]), Path(sys.argv[2])
model, tokenizer, _, recipe = load_checkpoint_model(checkpoint)
save_model_folder(model, tokenizer, out, recipe=recipe)
print(out)
