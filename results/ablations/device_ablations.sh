#!/usr/bin/env bash
# The issue-22 ablations on a GPU machine (the project's lent H200; the shared 2-core CPU machine ran at load
# 10-17 and gave a tiny-cpu step 12 s). Every variant trains in parallel on the one GPU, then
# run_ablations.py decodes its measurements; RDKit scoring happens afterwards on the CPU machine
# (run_ablations.py score), since the GPU image has no RDKit.
#
# Run from the repository root with $C a folder holding: whl/ (datasets 5.2.0, dill, multiprocess, fsspec,
# transformers 5.25.0, huggingface_hub 2.4.0 and its httpx2/httpcore2/truststore/idna/click, for Python 3.12),
# data/test.csv.gz (MOSES test, from the molsets wheel) and data/train330k.csv.gz (330,000 rows of MOSES train,
# pandas .sample(n=330000, random_state=0): the whole 1.58M did not fit the 64 MiB a device call carries), and
# a copy of run_ablations.py. Writes $OUT/ablations.tgz (decoded strings, metrics.csv, logs) and $OUT/device.log.
set -u
C=$(cd "${C:-.devcarry}" && pwd)
ROOT=$PWD
OUT=${OUT:-/tmp/out}
SITE=${SITE:-/tmp/site}
RUNS=${RUNS:-/tmp/abl}
PY=${PY:-python3}  # a dry run on the CPU machine: PY=.venv/bin/python SITE=/tmp/drysite EXTRA="--max_steps 3 ..." QUICK=--quick
# shellcheck source=../../benchmarks/device_site.sh
source "$ROOT/benchmarks/device_site.sh" || exit 1

TRAIN="--dataset $C/data/train330k.csv.gz --eval_dataset $SITE/moses/dataset/data/test.csv.gz --text_column SMILES"
declare -A OVERRIDES=(
  [baseline]="--recipe tiny-cpu"
  [sigma-4]="--recipe tiny-cpu --min_log_scale -4"
  [sigma-3]="--recipe tiny-cpu --min_log_scale -3"
  [sigma-2]="--recipe tiny-cpu --min_log_scale -2"
  [sigma-1]="--recipe tiny-cpu --min_log_scale -1"
  [vae]="--recipe tiny-cpu --objective vae"
  [mim]="--recipe tiny-cpu --objective mim"
  [sum]="--recipe tiny-cpu --latent_reduction sum"
  [warmup]="--recipe tiny-cpu --latent_loss_warmup_steps 850"
  [k1]="--recipe tiny-cpu --latent_tokens 1 --latent_size 256"
  [len2x]="--recipe tiny-cpu --max_steps 3400 --max_train_samples 217600"
  [len3x]="--recipe tiny-cpu --max_steps 5100 --max_train_samples 326400"
  [sigma-2-len3x]="--recipe tiny-cpu --max_steps 5100 --max_train_samples 326400 --min_log_scale -2"
  [sigma-0.5]="--recipe tiny-cpu --min_log_scale -0.5"
  [sigma-0]="--recipe tiny-cpu --min_log_scale 0"
  [sigma-1-len2x]="--recipe tiny-cpu --max_steps 3400 --max_train_samples 217600 --min_log_scale -1"
  [small-sigma-1]="--recipe small --min_log_scale -1"
  [small]="--recipe small"
  [small-sigma-2]="--recipe small --min_log_scale -2"
)
VARIANTS=(${VARIANTS:-${!OVERRIDES[@]}})
mkdir -p "$RUNS"
# Time limits keep the whole call inside the device's 10 minutes: a variant still training at TRAIN_S is dropped.
run_variant() {
  local v=$1
  # shellcheck disable=SC2086
  timeout "${TRAIN_S:-400}" $PY -m cmim_hf.training ${OVERRIDES[$v]} $TRAIN ${EXTRA:-} --output_dir "$RUNS/$v" \
      --eval_steps 100000 --save_steps 100000 --disable_tqdm true > "$RUNS/$v.train.log" 2>&1 \
    && timeout "${DECODE_S:-100}" $PY "$C/run_ablations.py" decode ${QUICK:-} --model "$RUNS/$v/final" --name "$v" \
      > "$RUNS/$v.decode.log" 2>&1
  local rc=$?
  echo "$(date -u +%T) $v finished rc=$rc"
}
for v in "${VARIANTS[@]}"; do run_variant "$v" & done
for shipped in ${SHIPPED-small tiny}; do
  ( cd "$ROOT" && timeout "${DECODE_S:-100}" $PY "$C/run_ablations.py" decode ${QUICK:-} --decoding --model "cmim-moses-$shipped" \
      --name "shipped-$shipped" > "$RUNS/shipped-$shipped.decode.log" 2>&1
    rc=$?; echo "$(date -u +%T) shipped-$shipped decoded rc=$rc" ) &
done
wait
mkdir -p "$OUT"
cd "$RUNS" && tar czf "$OUT/ablations.tgz" --exclude='*.safetensors' --exclude='*.bin' --exclude='*.pkl' \
    --exclude='checkpoint-*' --exclude='tensorboard' ./*.log ./*/metrics.csv ./*/eval_results.json \
    -C "$C" decoded 2>/dev/null
ls -la "$OUT"
