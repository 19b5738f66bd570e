"""Lazy package attributes (PEP 562), shared by `cmim_hf`, `cmim_hf.training` and `cmim_hf.benchmarks`: each
public name is imported from its module on first use, so importing the package stays light."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[list[str], Callable, Callable]:
    """`(__all__, __getattr__, __dir__)` for `package`, whose submodules provide the names of `exports`
    (module -> names). Call it from the package's `__init__.py`: `__all__, __getattr__, __dir__ = ...`."""
    module_of = {name: module for module, names in exports.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str):
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return sorted(module_of), __getattr__, __dir__
