"""A model folder (loadable by `cmim-hf evaluate`) from a training checkpoint, for the length comparison of two
runs stopped at the same step before the end of their schedule.

Usage: python results/length/checkpoint_to_folder.py RUN/checkpoint-STEP OUT_FOLDER
The model is rebuilt from the checkpoint's recipe.yaml (`cmim-hf train`'s own builder) and its weights read from
the checkpoint's model.safetensors: every stored tensor must fit, and every parameter it lacks must be tied to one
it holds (safetensors stores shared embeddings once).
"""
import sys
from pathlib import Path

from safetensors.torch import load_file
from transformers import AutoTokenizer

from cmim_hf.saving import save_model_folder
from cmim_hf.training.arguments import parse_args
from cmim_hf.training.model import build_model

checkpoint, out = Path(sys.argv[1]), Path(sys.argv[2])
_, model_args, recipe = parse_args(["--recipe", str(checkpoint / "recipe.yaml")])
tokenizer = AutoTokenizer.from_pretrained(checkpoint / "tokenizer")
model = build_model(model_args, tokenizer)
stored = load_file(checkpoint / "model.safetensors")
missing, unexpected = model.load_state_dict(stored, strict=False)
params = model.state_dict(keep_vars=True)
loaded = {params[name].data_ptr() for name in stored}
untied = [name for name in missing if params[name].data_ptr() not in loaded]
if unexpected or untied:
    raise SystemExit(f"{checkpoint}: unexpected tensors {unexpected}, parameters not in it and not tied {untied}")
save_model_folder(model.eval(), tokenizer, out, recipe=recipe)
print(out)
