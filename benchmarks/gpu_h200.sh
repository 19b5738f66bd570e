#!/usr/bin/env bash
# bf16 training throughput and MFU of the molmim-base recipe on one NVIDIA H200, in under 5 minutes.
#
#   bash benchmarks/gpu_h200.sh [--output_dir DIR] [--compile] [--batch_size N] ...   # on the GPU machine
#   bash benchmarks/gpu_h200.sh --device cpu --quick --output_dir /tmp/gpu-smoke     # smoke test on a CPU
#
# Arguments go to benchmarks/gpu_train.py (see --help). Writes DIR/gpu_results.json (default benchmarks/), or
# DIR/gpu_results_compiled.json with --compile, so an eager and a compiled run can follow each other.
# Works from a plain checkout: when cmim_hf (with its benchmarks) is not importable, the package is assembled
# from the checkout's folders in a temporary directory (links only; nothing is installed). PYTHON selects the
# interpreter (default: python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python3}"

if ! "$python" -c "import cmim_hf.benchmarks.gpu_train" >/dev/null 2>&1; then
    shim="$(mktemp -d)"
    trap 'rm -rf "$shim"' EXIT
    mkdir "$shim/cmim_hf"
    for entry in "$repo"/cmim_hf/*; do ln -s "$entry" "$shim/cmim_hf/"; done
    for pair in modeling:modeling training:training benchmarks:benchmarks model_cards:model_cards; do
        src="${pair%%:*}"; dst="${pair##*:}"
        if [ -d "$repo/$src" ]; then rm -f "$shim/cmim_hf/$dst"; ln -s "$repo/$src" "$shim/cmim_hf/$dst"; fi
    done
    export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
fi

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
fi

# The whole run, model build and matmul peak included, is capped at 5 minutes.
timeout 300 "$python" -m cmim_hf.benchmarks.gpu_train "$@"
