#!/usr/bin/env bash
# bf16 training throughput and MFU of the molmim-base recipe on one NVIDIA H200, in under 5 minutes.
#
#   bash benchmarks/gpu_h200.sh [--output_dir DIR] [--compile] [--batch_size N] ...   # on the GPU machine
#   bash benchmarks/gpu_h200.sh --device cpu --quick --output_dir /tmp/gpu-smoke     # smoke test on a CPU
#   bash benchmarks/gpu_h200.sh --cpu-smoke [--compile]     # the whole script on a CPU: tiny-cpu recipe, a few steps
#
# --cpu-smoke stands for `--device cpu --quick --recipe tiny-cpu` (later arguments win) and writes to a temporary
# folder unless --output_dir is given, so a smoke run never replaces measured results in benchmarks/.
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

args=()
smoke=false
has_output_dir=false
for arg in "$@"; do
    case "$arg" in
        --cpu-smoke) smoke=true ;;
        --output_dir|--output_dir=*) has_output_dir=true; args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done
limit_s=300  # on the GPU: the whole run, model build and matmul peak included, is capped at 5 minutes
if $smoke; then
    args=(--device cpu --quick --recipe tiny-cpu "${args[@]}")
    if ! $has_output_dir; then
        smoke_dir="$(mktemp -d)"
        args+=(--output_dir "$smoke_dir")
        echo "gpu_h200.sh --cpu-smoke: results in $smoke_dir"
    fi
    # A CPU compiles its own C++ kernels for --compile: minutes on a busy machine, in a cache of this run's own
    # (a cache shared with other jobs can hold a kernel another compiler is still writing).
    limit_s=1200
    if [ -z "${TORCHINDUCTOR_CACHE_DIR:-}" ]; then
        export TORCHINDUCTOR_CACHE_DIR="$(mktemp -d)"
        trap 'rm -rf "${shim:-}" "$TORCHINDUCTOR_CACHE_DIR"' EXIT
    fi
fi

timeout "$limit_s" "$python" -m cmim_hf.benchmarks.gpu_train "${args[@]}"
