"""cmim_hf.benchmarks: speed and memory benchmarks reported as ratios against references measured in the same run.

Run `cmim-hf benchmark [--quick] [--output_dir DIR]` (or `python -m cmim_hf.benchmarks`); see `suite.py` for what
is measured and `results.md` for the committed full run. The GPU script is `gpu_h200.sh`. Names are imported from
their modules on first use (PEP 562): the command line (`cli.py`) answers `--help` without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS: dict[str, tuple[str, ...]] = {
    "cli": ("main",),
    "flops": ("StepFlops", "bart_training_step_flops", "cmim_forward_flops", "cmim_training_step_flops"),
    "suite": ("RATIO_KEYS", "TARGETS", "BenchmarkSettings", "run_benchmarks"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
