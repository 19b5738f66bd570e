"""Recipes and command-line arguments of `cmim-hf train` / `python -m cmim_hf.training`.

A run is described by one *recipe*: a YAML file with a `model` section (any `CMIMConfig` field a user may
set) and a `training` section (`CMIMTrainingArguments`). Named recipes live in `training/recipes/`;
`list_recipes()` lists them. On the command line every field of both sections can be overridden as
`--field value` (transformers' HfArgumentParser conventions), e.g.

    cmim-hf train --recipe small --objective mim --latent_size 64 --max_steps 2000 --output_dir runs/mim

The resolved recipe (the recipe with every override applied and every default filled in) is written next
to each checkpoint and into the final model folder; `--recipe path/to/that/recipe.yaml` reruns it.

Parsing imports neither torch nor transformers (`cmim-hf train --help` answers at once, and bad arguments fail
before the seconds of imports): the model's names come from `cmim_hf.modeling.names` (which imports nothing), its
config fields are read from the source of `modeling/configuration_cmim.py` (`config_fields`), and the
parser is argparse built from the dataclasses with HfArgumentParser's conventions (`--flag`, `--flag false`,
`--no_flag`, `--list a b`, `Literal` choices), because importing HfArgumentParser imports transformers (~1 s).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cmim_hf.modeling import names as model_names
from cmim_hf.modeling.names import LATENT_POOLINGS, OBJECTIVES, REDUCTIONS
from cmim_hf.checks import ArgumentParser

from .run_checks import check_arguments, check_recipe_types

__all__ = [
    "DEFAULT_RECIPE",
    "CMIMTrainingArguments",
    "ModelArguments",
    "list_recipes",
    "load_recipe",
    "parse_args",
    "recipe_path",
    "resolved_recipe",
]

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = "tiny-cpu"


# ---------------------------------------------------------------------------------------------------------
# Training arguments (transformers' TrainingArguments names where it has one)
# ---------------------------------------------------------------------------------------------------------


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


@dataclass
class CMIMTrainingArguments:
    """Everything about a run that is not the model's geometry or objective."""

    # -- where -------------------------------------------------------------------------------------------
    output_dir: str | None = field(default=None, metadata=_help(
        "Run folder: checkpoints (checkpoint-<step>), logs, recipe.yaml and the final model (<output_dir>/final). "
        "Default: runs/<recipe name>."))
    overwrite_output_dir: bool = field(default=False, metadata=_help(
        "Start afresh in an output_dir that already holds checkpoints: they are deleted first. Without it, such a "
        "folder needs --resume_from_checkpoint."))
    run_name: str | None = field(default=None, metadata=_help(
        "Name of the run in the trackers (default: recipe name)."))

    # -- data --------------------------------------------------------------------------------------------
    dataset: str = field(default="moses", metadata=_help(
        "A named data set (`moses`) or a path: CSV/TSV/Parquet/JSONL/TXT/SMI file or a save_to_disk folder."))
    text_column: str | None = field(default=None, metadata=_help(
        "Column holding the texts (default: `text`, else a `smiles` column, else the only column)."))
    train_split: str = field(default="train", metadata=_help(
        "Split to train on (named data sets and DatasetDict folders)."))
    eval_split: str | None = field(default=None, metadata=_help(
        "Split to evaluate on (default: `test` for MOSES, `validation`/`test` of a DatasetDict folder). Without "
        "one, max_eval_samples rows are held out of the training data."))
    eval_dataset: str | None = field(default=None, metadata=_help("A separate file or folder to evaluate on."))
    max_train_samples: int | None = field(default=None, metadata=_help(
        "Train on a random subset of this many rows (drawn with `seed`)."))
    max_eval_samples: int = field(default=1000, metadata=_help(
        "Rows of the evaluation set used for the validation loss (a fixed random sample)."))
    num_reconstruction_samples: int = field(default=256, metadata=_help(
        "Validation rows whose greedy reconstruction (model.generate) is compared exactly to the input."))
    streaming: bool = field(default=False, metadata=_help(
        "Read the training data lazily (datasets streaming): corpora larger than memory. Needs max_steps > 0; "
        "no length grouping (a shuffle buffer instead); skipped rows are reported as they are met."))
    shuffle_buffer_size: int = field(default=10_000, metadata=_help("Shuffle buffer of the streaming mode."))
    tokenizer: str = field(default="smiles", metadata=_help(
        "`smiles` (the project's SMILES tokenizer), `smiles-corpus` (the same plus any extra tokens of the "
        "training data), or a tokenizer folder / Hub id for any text."))
    max_length: int | None = field(default=None, metadata=_help(
        "Longest sequence in tokens, specials included (default: max_position_embeddings). Longer rows are "
        "counted and skipped."))
    skip_unknown_tokens: bool = field(default=False, metadata=_help(
        "Also skip rows that contain tokens the tokenizer maps to <unk> (they are always counted)."))
    pad_to_multiple_of: int = field(default=8, metadata=_help("Dynamic padding to a multiple of this."))
    group_by_length: bool = field(default=True, metadata=_help(
        "Batch rows of similar length together (less padding), in random order of batches."))
    dataloader_num_workers: int = field(default=0, metadata=_help("DataLoader worker processes."))
    preprocessing_num_workers: int | None = field(default=None, metadata=_help("Processes for dataset.map."))

    # -- optimisation ------------------------------------------------------------------------------------
    max_steps: int = field(default=-1, metadata=_help(
        "Optimizer steps to run; <= 0: num_train_epochs epochs."))
    num_train_epochs: float = field(default=1.0, metadata=_help("Epochs, when max_steps <= 0."))
    per_device_train_batch_size: int = field(default=64, metadata=_help("Batch size per process."))
    per_device_eval_batch_size: int = field(default=128, metadata=_help("Evaluation batch size per process."))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("Batches per optimizer step."))
    learning_rate: float = field(default=5e-4, metadata=_help("Peak AdamW learning rate."))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay (not on biases, norms, embeddings)."))
    adam_beta1: float = field(default=0.9, metadata=_help("AdamW beta1."))
    adam_beta2: float = field(default=0.999, metadata=_help("AdamW beta2."))
    adam_epsilon: float = field(default=1e-8, metadata=_help("AdamW epsilon."))
    lr_scheduler_type: Literal["cosine", "linear", "constant_with_warmup"] = field(default="cosine", metadata=_help(
        "Learning-rate schedule after the warm-up (transformers.get_scheduler)."))
    warmup_steps: float = field(default=0, metadata=_help(
        "Linear learning-rate warm-up: steps (>= 1) or a fraction of the run (< 1)."))
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient clipping (<= 0: off)."))
    latent_loss_warmup_steps: int = field(default=0, metadata=_help(
        "Ramp the latent-loss weight linearly from 0 to 1 over this many steps (MolMIM); 0: always 1."))
    bf16: bool = field(default=False, metadata=_help(
        "bf16 mixed precision where the hardware supports it (falls back to fp32 with a warning elsewhere)."))
    torch_compile: bool = field(default=False, metadata=_help(
        "torch.compile the model for the training steps (inductor: forward and backward; on CPU it needs a C++ "
        "compiler). The first steps pay the compile time; evaluation, generation and saving use the plain model. "
        "`cmim-hf benchmark --sections compile` measures whether it pays on a machine."))
    seed: int = field(default=42, metadata=_help("Seed of the model init, data order, dropout and latent noise."))

    # -- logging, evaluation, checkpoints ----------------------------------------------------------------
    logging_steps: int = field(default=50, metadata=_help(
        "Log the running loss every this many steps (the only host syncs of the training loop)."))
    eval_steps: int = field(default=500, metadata=_help("Evaluate every this many steps (<= 0: only at the end)."))
    save_steps: int = field(default=500, metadata=_help("Checkpoint every this many steps (<= 0: never)."))
    save_total_limit: int | None = field(default=2, metadata=_help("Keep at most this many checkpoints (oldest go)."))
    resume_from_checkpoint: str | None = field(default=None, metadata=_help(
        "`latest` (the newest valid checkpoint of output_dir; falls back to older ones if it is damaged; starts "
        "afresh if there is none) or the path of a checkpoint folder."))
    init_from: str | None = field(default=None, metadata=_help(
        "Start from the weights of this checkpoint folder, saved model folder or shipped checkpoint name (e.g. "
        "cmim-moses-small): fine-tuning, or a run continued without its optimizer state. Its model must be this "
        "recipe's model and its tokenizer this run's; the optimizer, schedule and step start afresh. Ignored "
        "when a checkpoint is resumed (that holds the weights)."))
    report_to: list[str] = field(default_factory=lambda: ["tensorboard", "csv"], metadata=_help(
        "Trackers. TensorBoard (if installed) and CSV are always on; add `wandb` (if installed) or `all`."))
    disable_tqdm: bool = field(default=False, metadata=_help("No progress bar."))


# ---------------------------------------------------------------------------------------------------------
# Model arguments: the CMIMConfig fields a recipe may set (vocabulary and special ids come from the tokenizer)
# ---------------------------------------------------------------------------------------------------------

_MODEL_FIELDS_FROM_TOKENIZER = {"vocab_size", "pad_token_id", "bos_token_id", "eos_token_id",
                                "decoder_start_token_id", "mask_token_id"}
_MODEL_FIELDS_FIXED = {"is_encoder_decoder", "use_cache", "tie_word_embeddings"}
# A nested transformers config (a BART, T5, ... backbone) is not a command-line value: training builds native models.
_MODEL_FIELDS_NESTED = {"backbone_config"}


# Annotation text -> type, for the config fields the command line can set (others are skipped).
_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool,
                          "int | None": int | None, "float | None": float | None, "str | None": str | None}




def config_fields() -> list[tuple[str, Any, Any]]:
    """(name, type, default) of each field CMIMConfig declares itself with a literal default, in order, read from
    the source of `modeling/configuration_cmim.py` with `ast`: the class needs transformers (seconds to import),
    and `cmim-hf train --help` must answer at once (`tests/test_cli.py` checks the fields equal the imported ones).
    Fields whose type the command line cannot express (a nested config) are left out."""
    source = Path(model_names.__file__).with_name("configuration_cmim.py").read_text(encoding="utf-8")
    config_class = next(node for node in ast.parse(source).body
                        if isinstance(node, ast.ClassDef) and node.name == "CMIMConfig")
    fields = []
    for node in config_class.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            annotation = ast.unparse(node.annotation)
            if annotation in _TYPES:
                fields.append((node.target.id, _TYPES[annotation], ast.literal_eval(node.value)))
    return fields


# `plain`: the backbone trained alone, without latent (needs a backbone; see model.py).
TRAINING_OBJECTIVES = (*OBJECTIVES, "plain")


def _model_fields() -> list[tuple[str, Any, Any]]:
    excluded = _MODEL_FIELDS_FROM_TOKENIZER | _MODEL_FIELDS_FIXED | _MODEL_FIELDS_NESTED
    # The config's checks of these names run again when the model is built; the command line refuses a
    # misspelt choice before anything is loaded.
    choices = {"objective": TRAINING_OBJECTIVES, "latent_pooling": LATENT_POOLINGS, "reconstruction_reduction": REDUCTIONS,
               "latent_reduction": REDUCTIONS}
    return [(name, Literal[choices[name]] if name in choices else type_, default)
            for name, type_, default in config_fields() if name not in excluded]


_MODEL_HELP = {
    "objective": "The training objective: cmim, mim, vae, ae, infonce (CMIMConfig.objective), or plain (the "
                 "--backbone alone, without a latent: an ordinary sequence-to-sequence auto-encoder). Default 'cmim'.",
}
ModelArguments = dataclasses.make_dataclass(
    "ModelArguments",
    [(name, type_, field(default=default, metadata=_help(_MODEL_HELP.get(name, f"CMIMConfig.{name} (default "
                                                                             f"{default!r})."))))
     for name, type_, default in _model_fields()]
    + [("backbone", str | None, field(default=None, metadata=_help(
        "Encoder and decoder from transformers instead of the native ones: `bart` or `t5` (built with the "
        "recipe's geometry) or the folder / Hub id of a pretrained encoder-decoder (its geometry and weights; "
        "train with its tokenizer, --tokenizer PATH). Default: the native architecture.")))],
)
ModelArguments.__doc__ = ("CMIMConfig fields settable from a recipe or the command line (built from CMIMConfig), and "
                          "the backbone.")

_MOVED_TO_MODEL = ("decoder_input_dropout",)
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelArguments))
TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(CMIMTrainingArguments))


# ---------------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------------


def list_recipes() -> list[str]:
    """Names of the recipes shipped in `training/recipes/`, sorted."""
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """The YAML file of a named recipe, or `name_or_path` itself when it is an existing file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"recipe file {path} does not exist")
        return path
    named = RECIPES_DIR / f"{name_or_path}.yaml"
    if not named.is_file():
        close = difflib.get_close_matches(str(name_or_path), list_recipes(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown recipe {str(name_or_path)!r}{hint}; named recipes: {', '.join(list_recipes())}; "
                         "or pass the path of a .yaml file")
    return named


def _check_keys(section: Mapping, allowed: Sequence[str], where: str) -> None:
    unknown = [key for key in section if key not in allowed]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"{where}: unknown field(s) {', '.join(hints)}; allowed: {', '.join(allowed)}")


def load_recipe(name_or_path: str | Path = DEFAULT_RECIPE) -> dict:
    """Read a recipe: `{"name", "description", "model": {...}, "training": {...}}`, keys checked.

    A recipe may also be flat (model and training fields mixed at the top level); each key is then sorted
    into its section by name.
    """
    path = recipe_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"recipe {path} is not valid YAML: {' '.join(str(error).split())}") from error
    if not isinstance(raw, dict):
        raise ValueError(f"recipe {path} must be a mapping, got {type(raw).__name__}")
    recipe = {"name": raw.pop("name", path.stem), "description": raw.pop("description", ""),
              "model": dict(raw.pop("model", None) or {}), "training": dict(raw.pop("training", None) or {})}
    for moved in _MOVED_TO_MODEL:  # resolved recipes written before the field became a CMIMConfig field
        if moved in recipe["training"]:
            recipe["model"].setdefault(moved, recipe["training"].pop(moved))
    for key, value in raw.items():  # flat style
        if key in MODEL_FIELDS:
            recipe["model"][key] = value
        elif key in TRAINING_FIELDS:
            recipe["training"][key] = value
        else:
            _check_keys({key: value}, ("name", "description", "model", "training", *MODEL_FIELDS, *TRAINING_FIELDS),
                        f"recipe {path}")
    _check_keys(recipe["model"], MODEL_FIELDS, f"recipe {path}, section `model`")
    _check_keys(recipe["training"], TRAINING_FIELDS, f"recipe {path}, section `training`")
    check_recipe_types(recipe["model"], ModelArguments, f"recipe {path}, section `model`")
    check_recipe_types(recipe["training"], CMIMTrainingArguments, f"recipe {path}, section `training`")
    return recipe


def resolved_recipe(name: str, description: str, training_args: CMIMTrainingArguments, model_args) -> dict:
    """The full description of a run, every field filled in: rerunnable with `--recipe <this file>`."""
    return {"name": name, "description": description,
            "model": dataclasses.asdict(model_args), "training": dataclasses.asdict(training_args)}


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------


def _string_to_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "t", "yes", "y", "1"):
        return True
    if value in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One `--name` (and `--name-with-dashes`) option per field of the dataclass `cls`, as HfArgumentParser
    makes them: `bool` fields take an optional true/false (`--no_name` turns a default-True one off), `list`
    fields one or more values, `Literal` fields their choices, `X | None` fields an X."""
    group = parser.add_argument_group(cls.__name__)
    hints = typing.get_type_hints(cls)  # the annotations of this module are strings (future annotations)
    for config_field in dataclasses.fields(cls):
        type_ = hints[config_field.name]
        if isinstance(type_, types.UnionType) or typing.get_origin(type_) is typing.Union:
            type_ = next(arg for arg in typing.get_args(type_) if arg is not type(None))
        default = (config_field.default_factory() if config_field.default_factory is not dataclasses.MISSING
                   else config_field.default)
        kwargs: dict[str, Any] = {"default": default, "help": config_field.metadata.get("help")}
        if typing.get_origin(type_) is Literal:
            kwargs.update(choices=typing.get_args(type_), type=type(typing.get_args(type_)[0]))
        elif type_ is bool:
            kwargs.update(type=_string_to_bool, nargs="?", const=True, metavar="{true,false}")
        elif typing.get_origin(type_) is list:
            kwargs.update(type=typing.get_args(type_)[0], nargs="+")
        else:
            kwargs["type"] = type_
        names = [f"--{config_field.name}"]
        if "_" in config_field.name:
            names.append(f"--{config_field.name.replace('_', '-')}")
        group.add_argument(*names, **kwargs)
        if type_ is bool and default is True:
            group.add_argument(f"--no_{config_field.name}", action="store_false", dest=config_field.name,
                               help=f"same as --{config_field.name} false")


def build_parser(defaults: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cmim-hf train", usage="%(prog)s [--recipe NAME|PATH] [--field value ...]",
                            description="Train a cMIM model with Accelerate. Same arguments for `cmim-hf train` and "
                                        "`accelerate launch -m cmim_hf.training`. Every field of the recipe can be "
                                        "overridden as --field value.")
    for cls in (CMIMTrainingArguments, ModelArguments):
        _add_dataclass_arguments(parser, cls)
    parser.add_argument("--recipe", default=DEFAULT_RECIPE,
                        help=f"Named recipe ({', '.join(list_recipes())}) or a recipe .yaml path (default: "
                             f"{DEFAULT_RECIPE}).")
    if defaults:
        parser.set_defaults(**defaults)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[CMIMTrainingArguments, Any, dict]:
    """Parse `--recipe NAME|PATH` and `--field value` overrides.

    Returns `(training_args, model_args, recipe)` where `recipe` is the recipe as read (name, description).
    Precedence: command line > recipe > dataclass defaults.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default=DEFAULT_RECIPE)
    known, _ = pre.parse_known_args(argv)
    recipe = load_recipe(known.recipe)
    parser = build_parser({**recipe["training"], **recipe["model"]})
    namespace = parser.parse_args(argv)
    values = vars(namespace)
    values.pop("recipe", None)
    training_args = CMIMTrainingArguments(**{k: values[k] for k in TRAINING_FIELDS})
    model_args = ModelArguments(**{k: values[k] for k in MODEL_FIELDS})
    _check_training_args(training_args)
    check_arguments(training_args, model_args)
    return training_args, model_args, recipe


def run_output_dir(args: CMIMTrainingArguments, recipe: dict) -> Path:
    """The run folder: `--output_dir`, default `runs/<recipe name>`."""
    if args.output_dir is not None and not str(args.output_dir).strip():  # `--output_dir "$UNSET"`: not the default
        raise ValueError("--output_dir is empty; expected a path (or leave it out: runs/<recipe name>)")
    return Path(args.output_dir or Path("runs") / recipe["name"])


def _check_training_args(args: CMIMTrainingArguments) -> None:
    def require(condition: bool, message: str) -> None:
        if not condition:
            raise ValueError(f"training arguments: {message}")

    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                 "logging_steps", "pad_to_multiple_of", "max_eval_samples"):
        require(getattr(args, name) >= 1, f"`{name}` must be >= 1, got {getattr(args, name)!r}")
    require(args.learning_rate > 0, f"`learning_rate` must be > 0, got {args.learning_rate!r}")
    require(args.warmup_steps >= 0, f"`warmup_steps` must be >= 0, got {args.warmup_steps!r}")
    require(args.max_steps > 0 or args.num_train_epochs > 0,
            "set `max_steps` > 0 or `num_train_epochs` > 0")
    require(not args.streaming or args.max_steps > 0, "`streaming` needs `max_steps` > 0 (the length is unknown)")
    require(args.save_total_limit is None or args.save_total_limit >= 1,
            f"`save_total_limit` must be >= 1 or None, got {args.save_total_limit!r}")
    require(args.num_reconstruction_samples >= 0, "`num_reconstruction_samples` must be >= 0")
    require(args.latent_loss_warmup_steps >= 0, "`latent_loss_warmup_steps` must be >= 0")
