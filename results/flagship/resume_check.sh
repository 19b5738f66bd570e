#!/usr/bin/env bash
# Scratch check of kill-and-resume with the moses-base recipe (small overrides so that it checkpoints at step 3).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
ARGS="--recipe training/recipes/moses-base.yaml --output_dir /work/runs/flagship-resume-test --max_train_samples 640 --max_steps 8 --save_steps 3 --eval_steps 100000 --max_eval_samples 20 --num_reconstruction_samples 4 --logging_steps 1 --disable_tqdm true"
rm -rf /work/runs/flagship-resume-test
nice -n 10 .venv/bin/cmim-hf train $ARGS > /work/runs/resume-test-1.log 2>&1 &
pid=$!
while [[ ! -d /work/runs/flagship-resume-test/checkpoint-3 ]]; do sleep 2; kill -0 $pid 2>/dev/null || break; done
kill $pid; wait $pid
echo "killed after: $(ls /work/runs/flagship-resume-test | tr '\n' ' ')"
nice -n 10 .venv/bin/cmim-hf train $ARGS --resume_from_checkpoint latest > /work/runs/resume-test-2.log 2>&1
echo "resume rc=$?"
