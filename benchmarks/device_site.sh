# Sourced (not run) by the scripts that work on the lent GPU machine: results/ablations/device_ablations.sh and
# results/flagship/device_train.sh. That machine's image has torch, accelerate, tokenizers, safetensors and
# pyarrow but not datasets, and an older transformers than this package needs (no SubConfigSpec), and nothing
# can be installed there from the network. So the carried wheels go into $SITE, the package is laid out there
# the way setuptools' package-dir lays it out (modeling/ -> cmim_hf.modeling, ...) without building it, and the
# MOSES files stand in for the molsets package (cmim_hf.data finds them through `moses`'s import spec).
#
# Needs: ROOT (the repository root), C (the carried folder: whl/*.whl and data/ with the MOSES test.csv.gz and
# optionally train.csv.gz), PY (the interpreter), SITE (a scratch folder, emptied). Leaves the shell in /tmp, not
# the repository root, where `python -m cmim_hf...` would find the unmapped cmim_hf/ folder first.
# USE_HUB_KERNELS=NO: transformers 5.25 would otherwise ask for the `kernels` package the GPU image lacks.
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_DATASETS_DISABLE_PROGRESS_BARS=1 USE_HUB_KERNELS=NO
rm -rf "${SITE:?}" && mkdir -p "$SITE"
if [[ -d "$C/whl" ]]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$C"/whl/*.whl \
    || return 1
fi
cp -r "$ROOT/cmim_hf" "$SITE/cmim_hf"
for d in modeling training model_cards benchmarks; do rm -rf "${SITE:?}/cmim_hf/$d"; cp -r "$ROOT/$d" "$SITE/cmim_hf/$d"; done
mkdir -p "$SITE/moses/dataset/data" && touch "$SITE/moses/__init__.py"
for f in test.csv.gz train.csv.gz; do [[ -f "$C/data/$f" ]] && cp "$C/data/$f" "$SITE/moses/dataset/data/"; done
export PYTHONPATH=$SITE
cd /tmp || return 1
$PY -c "import torch, transformers, datasets, accelerate, pyarrow, huggingface_hub as h; print('torch', torch.__version__, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU', 'transformers', transformers.__version__, \
'datasets', datasets.__version__, 'accelerate', accelerate.__version__, 'pyarrow', pyarrow.__version__, 'hub', h.__version__)" \
  || return 1
