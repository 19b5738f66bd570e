"""Make the shipped `cmim-moses-base` folder from the flagship's GPU training, and keep its logs in results/.

    python results/flagship/make_release.py STAGE1_RUN STAGE2_RUN
    python results/flagship/make_release.py /work/runs/flagship-gpu /work/runs/flagship-gpu-anneal

STAGE1_RUN and STAGE2_RUN are the folders `results/flagship/device_train.sh` brought back from its two device
calls (`cat model.tgz.part-* | tar xz` and `tar xzf logs.tgz`). The model is STAGE2_RUN/final, saved with its
weights stored in float16 (`save_model_folder(storage_dtype=...)`), into cmim_hf/pretrained/cmim-moses-base with
a card generated from its files. Its recipe.yaml is stage 2's, with the carried file paths named as what they
were: `dataset: moses` (the .csv.xz held MOSES train unchanged), the default MOSES validation (the carried file
held the first 5,000 rows of MOSES test; validation reads the first 1,000), and `init_from` the stage-1
checkpoint as a rerun of stage 1's recipe would write it. Each stage's recipe, metrics.csv, training log and
device log go to results/flagship/gpu/. Evaluate the folder afterwards (`cmim-hf evaluate cmim-moses-base
--output_dir results/base --update_card`), or attach an evaluation made earlier with `--evaluation results/base`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
import yaml

from cmim_hf.cards import attach_evaluation, write_model_card
from cmim_hf.embeddings import load_pretrained
from cmim_hf.pretrained import PRETRAINED_ROOT
from cmim_hf.saving import save_model_folder

HERE = Path(__file__).resolve().parent
NAME = "cmim-moses-base"
STAGE1_OUTPUT = "runs/moses-base-stage1"


def release_recipe(stage1: dict, stage2: dict) -> dict:
    """Stage 2's resolved recipe with the device call's paths replaced by what they held."""
    recipe = json.loads(json.dumps(stage2))
    stopped = stage1["training"]["max_steps"]
    training = recipe["training"]
    training.update(dataset="moses", text_column="text", eval_dataset=None, eval_split=None,
                    output_dir="runs/moses-base-stage2", init_from=f"{STAGE1_OUTPUT}/checkpoint-3000")
    recipe["name"] = NAME
    recipe["description"] = (
        "The flagship generator of cmim-hf, trained on one NVIDIA H200 in two calls of results/flagship/"
        f"device_train.sh. Stage 1: the moses-base recipe at batch 256, lr 1.5e-3 cosine over {stopped} steps "
        "(sized from the step time measured in the same call), stopped at the call's deadline after 3,000 steps "
        "(768,000 molecules); its checkpoint-3000 weights (float16 copies; the optimizer state stayed behind). "
        "Stage 2 (this recipe): 1,800 steps of 256 from those weights, lr 3e-4 cosine to 0 after 100 warm-up "
        "steps, a fresh optimizer. 1,228,800 molecules in all, 0.78 epoch of MOSES train. Stage 1's recipe and "
        "both stages' logs are in results/flagship/gpu/.")
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage1", type=Path)
    parser.add_argument("stage2", type=Path)
    parser.add_argument("--output", type=Path, default=PRETRAINED_ROOT / NAME)
    parser.add_argument("--evaluation", type=Path, default=None,
                        help="a `cmim-hf evaluate` output folder of this model to attach (results.json, plots)")
    args = parser.parse_args()

    final = args.stage2 / "final"
    stage1 = yaml.safe_load((args.stage1 / "recipe.yaml").read_text())
    stage2 = yaml.safe_load((final / "recipe.yaml").read_text())
    model, tokenizer = load_pretrained(final, device="cpu")
    recipe = release_recipe(stage1, stage2)
    settings = {"model_id": NAME, "location": f"cmim_hf/pretrained/{NAME}", "num_molecules": 1_228_800,
                "validation_source": "MOSES", "description": recipe["description"]}
    save_model_folder(model, tokenizer, args.output, recipe=recipe,
                      storage_dtype=torch.float16,
                      extra_files={"eval_results.json": (final / "eval_results.json").read_text(),
                                   "card_data.json": json.dumps(settings, indent=2) + "\n"})
    write_model_card(args.output)
    if args.evaluation is not None:
        attach_evaluation(args.output, args.evaluation)

    logs = HERE / "gpu"
    for stage, run in (("stage1", args.stage1), ("stage2", args.stage2)):
        (logs / stage).mkdir(parents=True, exist_ok=True)
        for name in ("recipe.yaml", "metrics.csv", "train.log", "device.log"):
            shutil.copyfile(run / name, logs / stage / name)
    print(f"wrote {args.output} and {logs}")


if __name__ == "__main__":
    main()
