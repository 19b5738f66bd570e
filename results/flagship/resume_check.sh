#!/usr/bin/env bash
# Kill-and-resume check of the moses-base recipe: small overrides make it checkpoint at step 3; the run is
# killed once checkpoint-3 exists, then resumed with --resume_from_checkpoint latest and finishes step 8.
# Usage: bash results/flagship/resume_check.sh [RUN_FOLDER]   (default runs/flagship-resume-test, deleted first)
set -u
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
RUN=${1:-runs/flagship-resume-test}
ARGS=(--recipe training/recipes/moses-base.yaml --output_dir "$RUN" --max_train_samples 640 --max_steps 8
      --save_steps 3 --eval_steps 100000 --max_eval_samples 20 --num_reconstruction_samples 4 --logging_steps 1
      --disable_tqdm true)
rm -rf "$RUN" && mkdir -p "$(dirname "$RUN")"
nice -n 10 .venv/bin/cmim-hf train "${ARGS[@]}" > "$RUN.1.log" 2>&1 &
pid=$!
while [[ ! -d "$RUN/checkpoint-3" ]] && kill -0 "$pid" 2>/dev/null; do sleep 2; done
kill "$pid" 2>/dev/null; wait "$pid"
echo "killed after: $(ls "$RUN" | tr '\n' ' ')"
nice -n 10 .venv/bin/cmim-hf train "${ARGS[@]}" --resume_from_checkpoint latest > "$RUN.2.log" 2>&1
echo "resume rc=$?"
grep -E "saved checkpoint|resumed from|steps \(|saved the model" "$RUN.1.log" "$RUN.2.log"
