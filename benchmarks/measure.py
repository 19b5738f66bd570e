"""Timing and memory helpers for benchmarks on shared, noisy machines.

Every comparison runs its contestants back to back in interleaved rounds (the order rotates each round), so
a burst of load from another job hits all of them alike; a ratio is the median over rounds of the ratio
measured within each round. Absolute numbers (the median over rounds) are reported next to the ratios, but
only the ratios are meant to be compared across machines and runs.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager

import torch

__all__ = ["interleaved", "machine_info", "matmul_peak_flops", "median", "paired_ratio", "read_moses_smiles", "rss_bytes",
           "tensor_memory_peak", "timed", "torch_threads"]


def timed(fn: Callable[[], object]) -> float:
    """Seconds taken by `fn()`."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(contestants: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Run each contestant once per round, changing the order every round; return the seconds of each run.

    A contestant may return a float: the seconds it wants counted (to leave its own setup out); anything else
    (None, a result) means it is timed whole.
    """
    names = list(contestants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        # Rotate every other round and reverse every odd one, so that over the rounds each contestant runs
        # early and late alike (a load change within a round then hits all of them).
        shift = (r // 2) % len(names)
        order = names[shift:] + names[:shift]
        for name in (reversed(order) if r % 2 else order):
            start = time.perf_counter()
            reported = contestants[name]()
            elapsed = time.perf_counter() - start
            times[name].append(float(reported) if isinstance(reported, float) else elapsed)
    return times


def median(values) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator_times: list[float], denominator_times: list[float]) -> float:
    """Median over rounds of denominator_time / numerator_time: how many times faster the numerator is, when
    both do the same work each round."""
    return median([d / n for n, d in zip(numerator_times, denominator_times)])


def rss_bytes() -> int:
    """Resident set size of this process now."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # not Linux
        import psutil

        return psutil.Process().memory_info().rss


@contextmanager
def _quiet_stderr():
    """Silence the profiler's start/stop lines, which its C++ side writes straight to file descriptor 2."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. captured by a test runner)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tensor_memory_peak(fn: Callable[[], object]) -> int:
    """Peak bytes of CPU tensor memory that `fn()` holds at once beyond what was allocated before it (the CPU
    analogue of `torch.cuda.max_memory_allocated` after a reset), from the profiler's allocation events.

    Unlike RSS, it does not depend on what the C allocator keeps from earlier work, so it can be measured in a
    process that already ran bigger steps.
    """
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as handle:
            events = json.load(handle)["traceEvents"]
    memory = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e.get("ts", 0))
    return int(max([0] + [e["args"]["Total Allocated"] for e in memory]))


def matmul_peak_flops(size: int = 2048, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                      repeats: int = 3) -> Callable[[], float]:
    """A contestant measuring the matmul peak: each call times `repeats` (size x size) @ (size x size) products
    and returns the seconds of the fastest one. FLOP/s = 2 * size**3 / seconds."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: thread pool, BLAS dispatch

    def run() -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            if out.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    return run


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def machine_info() -> dict:
    """What the numbers were measured on: CPU, cores, threads, library versions, load."""
    import transformers

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "cpu_model": _cpu_model(),
        "cpu_flags": " ".join(_cpu_flags()),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: libgomp default, spins)"),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "blas": "MKL" if torch.backends.mkl.is_available() else "other",
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        if hasattr(os, "sysconf") else None,
    }
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


@contextmanager
def torch_threads(n: int | None):
    """Temporarily use `n` intra-op threads (None: leave as is)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def read_moses_smiles(n: int) -> list[str]:
    """The first `n` SMILES of the MOSES train split, read straight from the shipped file."""
    from cmim_hf.data import moses_data_dir

    out = []
    with gzip.open(moses_data_dir() / "train.csv.gz", "rt") as handle:
        next(handle)  # header
        for line in handle:
            out.append(line.strip())
            if len(out) >= n:
                break
    return out
