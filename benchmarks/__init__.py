"""cmim_hf.benchmarks: speed and memory benchmarks reported as ratios against references measured in the same run.

Run `cmim-hf benchmark [--quick] [--output_dir DIR]` (or `python -m cmim_hf.benchmarks`); see `suite.py` for what
is measured and `results.md` for the committed full run. The GPU script is `gpu_h200.sh`.
"""

from .flops import StepFlops, bart_training_step_flops, cmim_forward_flops, cmim_training_step_flops
from .suite import RATIO_KEYS, TARGETS, BenchmarkSettings, main, run_benchmarks

__all__ = [
    "RATIO_KEYS",
    "TARGETS",
    "BenchmarkSettings",
    "StepFlops",
    "bart_training_step_flops",
    "cmim_forward_flops",
    "cmim_training_step_flops",
    "main",
    "run_benchmarks",
]
