"""The model's names and config fields for command-line parsers, read from the source of `modeling/`.

Importing `cmim_hf.modeling` costs transformers and torch (seconds), which `cmim-hf <command> --help` and
argument checking must not pay. The values still have one home, `modeling/`: this module reads the literal
assignments there with `ast` instead of executing the files (`tests/test_cli.py` checks that they equal the
imported values).

    EMBEDDING_KINDS, OBJECTIVES, LATENT_POOLINGS, REDUCTIONS   # tuples of str
    config_fields()   # [(name, type, default)] of CMIMConfig's own fields, in order
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path
from typing import Any

__all__ = ["EMBEDDING_KINDS", "LATENT_POOLINGS", "OBJECTIVES", "REDUCTIONS", "config_fields"]

# Annotation text -> type, for the config fields the command line can set (others are skipped).
_TYPES: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool,
                          "int | None": int | None, "float | None": float | None, "str | None": str | None}


@functools.cache
def _module_tree(name: str) -> ast.Module:
    spec = importlib.util.find_spec("cmim_hf.modeling")  # located, not executed
    folder = Path(next(iter(spec.submodule_search_locations)))
    return ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))


def _constant(module: str, name: str):
    for node in _module_tree(module).body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
            return ast.literal_eval(node.value)
    raise LookupError(f"modeling/{module}.py assigns no literal {name}")


def config_fields() -> list[tuple[str, Any, Any]]:
    """(name, type, default) of each field CMIMConfig declares itself with a literal default, in order.
    Fields whose type the command line cannot express (a nested config) are left out."""
    config_class = next(node for node in _module_tree("configuration_cmim").body
                        if isinstance(node, ast.ClassDef) and node.name == "CMIMConfig")
    fields = []
    for node in config_class.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            annotation = ast.unparse(node.annotation)
            if annotation in _TYPES:
                fields.append((node.target.id, _TYPES[annotation], ast.literal_eval(node.value)))
    return fields


EMBEDDING_KINDS: tuple[str, ...] = _constant("modeling_cmim", "EMBEDDING_KINDS")
OBJECTIVES: tuple[str, ...] = _constant("configuration_cmim", "OBJECTIVES")
LATENT_POOLINGS: tuple[str, ...] = _constant("configuration_cmim", "LATENT_POOLINGS")
REDUCTIONS: tuple[str, ...] = _constant("configuration_cmim", "REDUCTIONS")
