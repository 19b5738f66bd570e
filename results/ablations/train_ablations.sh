#!/usr/bin/env bash
# Trains the ablation variants of issue 22 one after the other, on one core, niced. Every variant is the
# tiny-cpu recipe (1.4M parameters, width 128, 2+2 layers, latent 4x64, seed 42) cut to 850 steps of 64 over
# 54,400 MOSES molecules (one pass), with one factor changed. `len2x` is the tiny-cpu recipe unchanged: 1700
# steps over 108,800 molecules, twice the molecules seen.
# Usage: bash results/ablations/train_ablations.sh [VARIANT ...]   (default: all, in priority order)
# Runs land in $ABLATION_RUNS (default /work/runs/ablations)/<variant>, logs in <variant>.log; a finished
# variant (final/ exists) is skipped, so the script can be rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
RUNS=${ABLATION_RUNS:-/work/runs/ablations}
SHORT="--max_steps 850 --max_train_samples 54400"
declare -A OVERRIDES=(
  [baseline]="$SHORT"
  [sigma-2]="$SHORT --min_log_scale -2"
  [vae]="$SHORT --objective vae"
  [sigma-1]="$SHORT --min_log_scale -1"
  [sum]="$SHORT --latent_reduction sum"
  [mim]="$SHORT --objective mim"
  [len2x]=""
)
ORDER=(baseline sigma-2 vae sigma-1 sum mim len2x)
VARIANTS=("${@:-${ORDER[@]}}")
for variant in "${VARIANTS[@]}"; do
  out="$RUNS/$variant"
  if [[ -d "$out/final" ]]; then echo "skip $variant (done)"; continue; fi
  echo "$(date -u +%FT%TZ) start $variant: ${OVERRIDES[$variant]}"
  # shellcheck disable=SC2086
  .venv/bin/cmim-hf train --recipe tiny-cpu --output_dir "$out" --overwrite_output_dir true \
      --eval_steps 100000 --save_steps 100000 ${OVERRIDES[$variant]} > "$RUNS/$variant.log" 2>&1
  echo "$(date -u +%FT%TZ) done $variant"
done
