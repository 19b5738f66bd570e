#!/usr/bin/env bash
# One call on the lent GPU machine (an H200 in this project): benchmarks/gpu_h200.sh eager and compiled, the
# moses-base recipe's own step time, then the moses-base recipe trained with `accelerate launch` for the time
# that is left, its step count sized from that step time so that the cosine schedule ends inside the call.
#
# Here, once, from the repository root (the files the device image lacks; see benchmarks/device_site.sh):
#   mkdir -p .devcarry/whl .devcarry/data && echo /.devcarry/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .devcarry/whl datasets==5.2.0 \
#       dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0 transformers==5.25.0 huggingface_hub==2.4.0 \
#       httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 idna==3.20 click==8.5.1
#   cp <molsets>/moses/dataset/data/{train,test}.csv.gz .devcarry/data/
# The tree a device call carries is limited to 64 MiB: with the shipped checkpoints' weights (26 MB) it does not
# fit, so they are stood in for by empty files during the call and restored afterwards (`git checkout`).
# On the device (run tool, carry [".devcarry"]):
#   C=.devcarry DEADLINE_S=540 bash results/flagship/device_train.sh
# A second, shorter call continues from the weights the first brought back (the optimizer state, 84 MB, does not
# travel): no benchmark, a fixed step count, `--init_from` a model folder in the carried folder (float16
# model.safetensors + tokenizer.json, 21 MB) and MOSES train as .csv.xz (7.4 MB against 10.2 MB), so it fits:
#   C=.devcarry2 DEADLINE_S=250 BENCHMARK=0 MAX_STEPS=2000 LR=3e-4 WARMUP=100 INIT_FROM=init \
#     TRAIN_FILE=train.csv.xz bash results/flagship/device_train.sh
# (INIT_FROM: a folder in $C; TRAIN_FILE: a file in $C/data, evaluated on the MOSES test rows in $C/data).
# That folder, made here from the first call's checkpoint (R: where its model.tgz parts were unpacked):
#   mkdir -p .devcarry2/init .devcarry2/data && cp -r .devcarry/whl .devcarry2/
#   zcat .devcarry/data/train.csv.gz | xz -6 > .devcarry2/data/train.csv.xz
#   zcat .devcarry/data/test.csv.gz | head -5001 | gzip -9 > .devcarry2/data/test.csv.gz
#   cp $R/checkpoint-3000/tokenizer/tokenizer.json .devcarry2/init/
#   python -c "from safetensors.torch import load_file, save_file; s = load_file('$R/checkpoint-3000/model.safetensors'); \
#     save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in s.items()}, \
#     '.devcarry2/init/model.safetensors')"
# A dry run here: PY=.venv/bin/python C=.devcarry DRY_RUN=1 OUT=/tmp/devout bash results/flagship/device_train.sh
#
# Writes to $OUT: gpu_results.json and gpu_results_compiled.json (the benchmark), logs.tgz (this script's log,
# the training log, metrics.csv, eval_results.json, the moses-base step timing) and model.tgz.part-* (the final
# model folder without optimizer state, or the newest checkpoint if the run was cut short, split into 15 MiB
# parts: `cat model.tgz.part-* | tar xz`).
set -u
STARTED=$(date +%s)
DEADLINE_S=${DEADLINE_S:-540}     # seconds this script may take in all
BATCH=${BATCH:-256}               # per step: the GPU is launch-bound at the recipe's 64, so 4x the molecules cost
LR=${LR:-1.5e-3}                  # about the same time; the learning rate goes up by about sqrt(4) less a margin
C=$(cd "${C:-.devcarry}" && pwd)
ROOT=$PWD
OUT=${OUT:-/tmp/out}
SITE=${SITE:-/tmp/site}
RUNS=${RUNS:-/tmp/flagship-gpu}
PY=${PY:-python3}
mkdir -p "$OUT" "$RUNS"
LOG=$RUNS/device.log
exec > >(tee -a "$LOG") 2>&1
# shellcheck source=../../benchmarks/device_site.sh
source "$ROOT/benchmarks/device_site.sh" || exit 1
elapsed() { echo $(( $(date +%s) - STARTED )); }

MAX_STEPS=${MAX_STEPS:-}
# shellcheck disable=SC2206
TRAIN_EXTRA=(${TRAIN_FILE:+--dataset "$C/data/$TRAIN_FILE" --eval_dataset "$C/data/test.csv.gz" --text_column SMILES}
             ${INIT_FROM:+--init_from "$C/$INIT_FROM"})
if [[ -n "${DRY_RUN:-}" ]]; then
  BENCH=(--cpu-smoke) STEP_BENCH=(--cpu-smoke --batch_size 8) MAX_STEPS=${MAX_STEPS:-6}
  TRAIN_EXTRA+=(--max_train_samples 3000 --max_eval_samples 64 --num_reconstruction_samples 8 --bf16 false)
else
  BENCH=(--time_budget_s 30) STEP_BENCH=(--recipe moses-base --batch_size "$BATCH" --time_budget_s 15 --matmul_repeats 2)
  TRAIN_EXTRA+=(--preprocessing_num_workers 8 --dataloader_num_workers 4)
fi

mkdir -p "$RUNS/step-timing"
if [[ "${BENCHMARK:-1}" == 1 ]]; then
  echo "$(date -u +%T) [$(elapsed) s] benchmark: molmim-base, eager then compiled"
  PYTHON=$PY timeout 150 bash "$ROOT/benchmarks/gpu_h200.sh" "${BENCH[@]}" --output_dir "$OUT"
  PYTHON=$PY timeout 200 bash "$ROOT/benchmarks/gpu_h200.sh" "${BENCH[@]}" --compile --output_dir "$OUT"
fi
if [[ -z "$MAX_STEPS" ]]; then
  echo "$(date -u +%T) [$(elapsed) s] step time of moses-base at batch $BATCH"
  PYTHON=$PY timeout 90 bash "$ROOT/benchmarks/gpu_h200.sh" "${STEP_BENCH[@]}" --output_dir "$RUNS/step-timing"
fi
# 90 s are kept for data preparation (tokenising 1.58M molecules), the last evaluation and the packing; the
# trainer's own steps (data loading, logging, an evaluation every 1,000 steps) are counted at 1.6x the benchmark's.
# At most 12,500 steps of 256: 3.2M molecules, the two epochs the recipe plans (50,000 of 64).
LEFT=$(( DEADLINE_S - $(elapsed) - 90 ))
if [[ -z "$MAX_STEPS" ]]; then
  MAX_STEPS=$($PY -c "import json,sys; ms=json.load(open('$RUNS/step-timing/gpu_results.json'))['step_ms']; \
print(min(12500, max(500, int($LEFT * 1000 / (1.6 * ms)) // 100 * 100)))") || MAX_STEPS=3000
fi
WARMUP=${WARMUP:-$(( MAX_STEPS / 20 ))}
echo "$(date -u +%T) [$(elapsed) s] training moses-base: $MAX_STEPS steps of $BATCH, lr $LR, warm-up $WARMUP, $LEFT s planned"
timeout $(( DEADLINE_S - $(elapsed) - 25 )) $PY -m accelerate.commands.launch --num_processes 1 --num_machines 1 \
    --dynamo_backend no --mixed_precision "$([[ -n "${DRY_RUN:-}" ]] && echo no || echo bf16)" \
    -m cmim_hf.training --recipe moses-base --output_dir "$RUNS/run" --max_steps "$MAX_STEPS" \
    --per_device_train_batch_size "$BATCH" --learning_rate "$LR" --warmup_steps "$WARMUP" --eval_steps 1000 \
    --save_steps 1000 --save_total_limit 1 --disable_tqdm true "${TRAIN_EXTRA[@]}" > "$RUNS/train.log" 2>&1
rc=$?
echo "$(date -u +%T) [$(elapsed) s] training ended rc=$rc"
tail -5 "$RUNS/train.log"

cd "$RUNS/run" 2>/dev/null || { cd "$RUNS" && tar czf "$OUT/logs.tgz" device.log train.log step-timing; exit 1; }
model=final
[[ -d final ]] || model=$(ls -d checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -1)
echo "$(date -u +%T) [$(elapsed) s] packing $model"
[[ -n "$model" ]] && tar czf - --exclude='optimizer.bin' --exclude='*.pkl' "$model" | split -b 15M - "$OUT/model.tgz.part-"
tar czf "$OUT/logs.tgz" -C "$RUNS" device.log train.log step-timing -C "$RUNS/run" metrics.csv recipe.yaml \
    $(ls eval_results.json 2>/dev/null)
ls -la "$OUT"
