"""The `library` section of `cmim-hf benchmark`: embedding a compound library to disk with `cmim-hf embed`.

Every run is the real command in a fresh process (`python -m cmim_hf embed ...`, OMP_NUM_THREADS=1 per process)
on the first N molecules of the MOSES training set, with the default model, and its peak RSS is the kernel's
(`os.wait4`). Measured in one run, so that the ratios compare like with like on a shared machine:

  molecules_per_s_per_core  rows / embedding seconds of one single-threaded process (the command's own timer)
  rss_ratio                 peak RSS at the largest N / at the smallest N, same command (target <= 1.3, with the
                            largest peak under 1.5 GB)
  resume_overhead           (wall of a run SIGKILLed halfway + wall of its rerun) / wall of an uninterrupted run
  two_vs_one_processes      wall of 1 process / wall of 2 processes (`accelerate launch --multi_gpu
                            --num_processes 2` on CPU), same input and shards
  bytes_per_molecule        parquet bytes per row on disk, float32 as written by the command; float16 from the same
                            vectors rewritten by the writer's own shard function (`--storage_dtype float16`)
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["bench_library", "md_library"]

_SUMMARY = re.compile(r"embedded (\d+) molecules .* in ([0-9.]+) s ->")


def _moses_smi(path: Path, n: int) -> Path:
    """The first `n` MOSES training SMILES as a .smi file."""
    from cmim_hf.data import moses_data_dir

    with gzip.open(moses_data_dir() / "train.csv.gz", "rt") as source, open(path, "w") as out:
        next(source)  # the header
        for _, line in zip(range(n), source):
            out.write(line.split(",")[0].strip() + "\n")
    return path


def _run(command: list[str], kill_after_shards: int | None = None, folder: Path | None = None) -> dict:
    """Run `command` (OMP_NUM_THREADS=1); with `kill_after_shards`, SIGKILL it once that many shards are in
    `folder`. Returns wall seconds, peak RSS (MB, the kernel's) and the command's own embedding seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = False
    if kill_after_shards is not None:
        while process.poll() is None and len(list(folder.glob("shard-*.parquet"))) < kill_after_shards:
            time.sleep(0.05)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed = True
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0 and not killed:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr[-2000:]}")
    found = _SUMMARY.search(stderr)
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "embed_s": float(found.group(2)) if found else None, "killed": killed}


def _embed_command(source: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cmim_hf", "embed", "--input", str(source), "--output", str(output), *extra]


def _launch_command(processes: int, source: Path, output: Path, *extra: str) -> list[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(port), "-m", "cmim_hf", "embed", "--input", str(source), "--output", str(output), *extra]


def bench_library(quick: bool, workdir: Path, sizes: tuple[int, int] | None = None) -> dict:
    """Run the section; sizes (small, large): full 20k and 200k molecules (resume and 2 processes on the small
    one), quick 200 and 400, or `sizes`."""
    small, large = sizes or ((200, 400) if quick else (20_000, 200_000))
    shard_rows = small // 4  # resume and processes need several shards
    workdir = Path(workdir) / "library"
    workdir.mkdir(parents=True, exist_ok=True)
    sources = {n: _moses_smi(workdir / f"moses-{n}.smi", n) for n in (small, large)}
    result: dict = {"molecules": [small, large], "shard_rows_small_runs": shard_rows, "model": "cmim-moses-tiny",
                    "command": "python -m cmim_hf embed --input moses-N.smi --output DIR (OMP_NUM_THREADS=1)"}

    # Peak RSS against N: the default command (default shard size).
    memory = {}
    for n in (small, large):
        out = workdir / f"rss-{n}"
        memory[n] = _run(_embed_command(sources[n], out))
        memory[n]["bytes_per_molecule_float32"] = round(
            sum(p.stat().st_size for p in out.glob("shard-*.parquet")) / n, 1)
        shutil.rmtree(out)
    half = workdir / "float16"  # the same command with --storage_dtype float16
    _run(_embed_command(sources[small], half, "--storage_dtype", "float16"))
    memory[small]["bytes_per_molecule_float16"] = round(
        sum(p.stat().st_size for p in half.glob("shard-*.parquet")) / small, 1)
    result["memory"] = {str(n): m for n, m in memory.items()}
    result["rss_ratio"] = round(memory[large]["peak_rss_mb"] / memory[small]["peak_rss_mb"], 3)
    result["peak_rss_mb_largest"] = memory[large]["peak_rss_mb"]
    result["molecules_per_s_per_core"] = round(large / memory[large]["embed_s"], 1)
    result["bytes_per_molecule"] = {"float32": memory[small]["bytes_per_molecule_float32"],
                                    "float16": memory[small]["bytes_per_molecule_float16"]}

    # Resume: an uninterrupted run against a run killed halfway plus its rerun; then 1 against 2 processes.
    extra = ("--shard_rows", str(shard_rows))
    whole = _run(_embed_command(sources[small], workdir / "whole", *extra))
    killed_folder = workdir / "killed"
    killed = _run(_embed_command(sources[small], killed_folder, *extra), kill_after_shards=2, folder=killed_folder)
    resumed = _run(_embed_command(sources[small], killed_folder, *extra))
    result["resume"] = {"uninterrupted": whole, "killed": killed, "resumed": resumed}
    result["resume_overhead"] = round((killed["wall_s"] + resumed["wall_s"]) / whole["wall_s"], 3)
    two = _run(_launch_command(2, sources[small], workdir / "two", *extra))  # against `whole`, one process
    result["processes"] = {"1": whole, "2": two, "cpu_count": os.cpu_count()}
    result["two_vs_one_processes"] = round(whole["wall_s"] / two["wall_s"], 3)
    for name in ("whole", "killed", "two", "float16"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    return result


def md_library(section: dict) -> list[str]:
    """The section's lines of results.md."""
    small, large = section["molecules"]
    memory = section["memory"]
    lines = ["## Embedding a library to disk (`cmim-hf embed --output DIR`)", "",
             f"{section['command']}, model {section['model']}, each run a fresh process.", "",
             "| measure | value |", "|---|---|",
             f"| molecules/s per core ({large:,} molecules, one thread) | {section['molecules_per_s_per_core']} |",
             f"| peak RSS, {small:,} molecules | {memory[str(small)]['peak_rss_mb']} MB |",
             f"| peak RSS, {large:,} molecules | {memory[str(large)]['peak_rss_mb']} MB |",
             f"| peak RSS ratio {large:,} / {small:,} (target <= 1.3) | {section['rss_ratio']} |",
             f"| resume: (killed halfway + rerun) / uninterrupted wall, {small:,} molecules | "
             f"{section['resume_overhead']} |",
             f"| 2 processes / 1 process speed-up, {small:,} molecules, {section['processes']['cpu_count']} cores | "
             f"{section['two_vs_one_processes']} |",
             f"| bytes per molecule on disk, float32 | {section['bytes_per_molecule']['float32']} |",
             f"| bytes per molecule on disk, float16 | {section['bytes_per_molecule']['float16']} |", ""]
    return lines
