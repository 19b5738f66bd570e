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
from cmim_hf.data import NAMED_DATASETS
from cmim_hf.embeddings import load_pretrained
from cmim_hf.pretrained import PRETRAINED_ROOT
from cmim_hf.saving import save_model_folder
from cmim_hf.training.checkpoints import find_checkpoints

HERE = Path(__file__).resolve().parent
NAME = "cmim-moses-base"
STAGE1_OUTPUT = "runs/moses-base-stage1"
MOSES_TRAIN_ROWS = NAMED_DATASETS["moses"].num_rows["train"]


def _rate(value: float) -> str:
    """A learning rate as recipes write it: 1.5e-3, 3e-4."""
    return f"{value:.1e}".replace(".0e", "e").replace("e-0", "e-")


def release_recipe(stage1: dict, stage2: dict, stage1_steps: int) -> tuple[dict, int]:
    """Stage 2's resolved recipe with the device call's paths replaced by what they held, and the molecules both
    stages saw (steps x batch each; stage 1 counted to the checkpoint stage 2 started from)."""
    recipe = json.loads(json.dumps(stage2))
    first, second = stage1["training"], stage2["training"]
    seen1 = stage1_steps * first["per_device_train_batch_size"]
    seen2 = second["max_steps"] * second["per_device_train_batch_size"]
    training = recipe["training"]
    training.update(dataset="moses", text_column="text", eval_dataset=None, eval_split=None,
                    output_dir="runs/moses-base-stage2",
                    init_from=f"{STAGE1_OUTPUT}/checkpoint-{stage1_steps}")
    recipe["name"] = NAME
    recipe["description"] = (
        "The flagship generator of cmim-hf, trained on one NVIDIA H200 in two calls of results/flagship/"
        f"device_train.sh. Stage 1: the moses-base recipe at batch {first['per_device_train_batch_size']}, lr "
        f"{_rate(first['learning_rate'])} cosine over {first['max_steps']} steps (sized from the step time measured in "
        f"the same call), stopped at the call's deadline after {stage1_steps:,} steps ({seen1:,} molecules); its "
        f"checkpoint-{stage1_steps} weights (float16 copies; the optimizer state stayed behind). Stage 2 (this "
        f"recipe): {second['max_steps']:,} steps of {second['per_device_train_batch_size']} from those weights, lr "
        f"{_rate(second['learning_rate'])} cosine to 0 after {second['warmup_steps']:g} warm-up steps, a fresh optimizer. "
        f"{seen1 + seen2:,} molecules in all, {(seen1 + seen2) / MOSES_TRAIN_ROWS:.2f} epoch of MOSES train. Stage "
        "1's recipe and both stages' logs are in results/flagship/gpu/.")
    return recipe, seen1 + seen2


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
    stage1_steps = int(find_checkpoints(args.stage1)[-1].name.rsplit("-", 1)[1])  # the weights stage 2 started from
    recipe, seen = release_recipe(stage1, stage2, stage1_steps)
    settings = {"model_id": NAME, "location": f"cmim_hf/pretrained/{NAME}", "num_molecules": seen,
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
