"""Checks of a run's description before any work: the types of a recipe's fields, and the ranges of the training
and model arguments (finite numbers; seeds, workers and sizes in range; a model config that builds).

`arguments.py` calls `check_recipe_types` when it reads a recipe and `check_arguments` once the command line is
parsed, and `cmim-hf train` calls `check_model_config` after the data set's check; each raises ValueError or
TypeError naming the field, which `cmim-hf train` prints as one line (exit 2).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Literal, Union

from cmim_hf.checks import MAX_NUMPY_SEED, check_number

__all__ = ["check_arguments", "check_model_config", "check_recipe_types"]

# Ranges beyond those `arguments._check_training_args` checks: (minimum, maximum); None is unbounded.
_INTEGER_RANGES = {
    "seed": (0, MAX_NUMPY_SEED),
    "dataloader_num_workers": (0, None),
    "preprocessing_num_workers": (1, None),
    "shuffle_buffer_size": (1, None),
    "max_length": (2, None),  # the start and end tokens
    "max_train_samples": (1, None),
}
# Floats: keyword arguments of check_number (every float field is also checked to be finite).
_FLOAT_RANGES = {"weight_decay": {"minimum": 0}, "adam_beta1": {"minimum": 0, "below": 1},
                 "adam_beta2": {"minimum": 0, "below": 1}, "adam_epsilon": {"above": 0}}


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is list:
        return f"a list of {_describe(args[0]).split(' ', 1)[-1]}s"  # "a list of strings"
    return {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _matches(value, hint) -> bool:
    """Whether a YAML value fits a field's type. Strings that the command-line parser converts (`5e-4` for a float,
    which YAML 1.1 reads as a string; `true` for a bool) count for the type they convert to."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in
                                           ("true", "false", "yes", "no", "1", "0"))
    if hint in (int, float):
        if isinstance(value, str):
            try:
                hint(value)
            except ValueError:
                return False
            return True
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # nested configs and the like: their own constructors check them


def check_recipe_types(section: dict, dataclass_type, where: str) -> None:
    """Raise TypeError naming the first field of `section` whose value does not fit `dataclass_type`'s field."""
    hints = typing.get_type_hints(dataclass_type)
    for key, value in section.items():
        if key in hints and not _matches(value, hints[key]):
            raise TypeError(f"{where}: field `{key}` must be {_describe(hints[key])}, got {value!r} "
                            f"({type(value).__name__})")


def check_arguments(training_args, model_args) -> None:
    """Raise ValueError/TypeError for a non-finite number or an out-of-range value among the parsed arguments
    (choices such as the objective are checked by the parser and `check_recipe_types`; `check_model_config`
    checks the model fields together)."""
    for args, section in ((training_args, "training arguments"), (model_args, "model arguments")):
        for field in dataclasses.fields(args):
            value = getattr(args, field.name)
            if isinstance(value, float) or field.name in _FLOAT_RANGES:
                check_number(f"{section}: `{field.name}`", value, **_FLOAT_RANGES.get(field.name, {}))
            elif field.name in _INTEGER_RANGES and value is not None:
                low, high = _INTEGER_RANGES[field.name]
                check_number(f"{section}: `{field.name}`", value, integer=True, minimum=low, maximum=high)


def check_model_config(model_args) -> None:
    """Raise ValueError when the model fields do not make a valid config: checked before the data is prepared, but
    after the checks above and the data set's, since building the config imports transformers (and torch)."""
    from cmim_hf.modeling import CMIMConfig

    fields = dataclasses.asdict(model_args)
    fields.pop("backbone", None)
    if fields["objective"] == "plain":  # no latent: the backbone alone, checked when it is built
        return
    try:
        CMIMConfig(**fields)  # the vocabulary comes later, from the tokenizer
    except (ValueError, TypeError) as error:
        raise ValueError(f"model arguments: {error}") from None
