"""cmim_hf.benchmarks: speed and memory benchmarks reported as ratios against references measured in the same run.

Run `cmim-hf benchmark [--quick] [--output_dir DIR]` (or `python -m cmim_hf.benchmarks`); see `suite.py` for what
is measured and `results.md` for the committed full run. The GPU script is `gpu_h200.sh`. Names are imported from
their modules on first use (PEP 562); the command line is `cmim_hf/commands/benchmark.py`, which answers `--help`
without importing torch.
"""

from __future__ import annotations

from cmim_hf._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "flops": ("StepFlops", "bart_training_step_flops", "cmim_forward_flops", "cmim_training_step_flops"),
    "suite": ("RATIO_KEYS", "TARGETS", "BenchmarkSettings", "run_benchmarks"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


