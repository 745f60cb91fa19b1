#!/usr/bin/env bash
# Issue 12's GPU check in one command, within 8 minutes on one GPU:
#
#   OUT=results/bench benchmarks/gpu_check.sh          # on a machine with one GPU
#   OUT=/tmp/check benchmarks/gpu_check.sh --cpu       # the same steps, tiny sizes, on the CPU
#
# Needs only PyTorch, timm, torchvision, pandas, safetensors and scipy (no install, no snakemake,
# no datasets, no internet): it runs the package from src/. Steps, most important first, each
# logged to $OUT/gpu_check.log:
#   1. bench patch 2: reference loop vs project step, compile off
#   2. bench patch 2, compile on (mode default)
#   3. a 2-epoch CIFAR-shaped `mimetic train` (synthetic 32 px, vit_tiny_patch2_32) on CUDA with
#      every fast-path switch on: bf16 autocast, fused AdamW (automatic on CUDA), SDPA, compile
#   4. bench patch 4, compile off
#   5. packing: 4 processes training patch 4 at once on the GPU vs one
#   6. the ImageNet input path: images/s of the training input alone, decoded on the GPU and by CPU
#      workers (benchmarks/imagenet_input.py, 500x375 JPEGs made on the spot)
#   7. bench ImageNet ViT-Tiny/16 at 224 on those JPEGs, decoded on the GPU: the full step vs the
#      model step alone on one batch (the input path must not be the bottleneck)
#   8. bench patch 4, compile on
# With --cpu, the compile steps are skipped (the trainer compiles on CUDA only), the training
# run is a digits one (vit_digits), since 32 px ViT-Tiny epochs take many minutes on a CPU, and
# the ImageNet steps take 8 px crops of a few JPEGs.
# A step that fails or runs out of time is recorded and the next one runs; the whole script
# keeps to $BUDGET seconds (default 460) by giving each step at most what is left. The result,
# $OUT/gpu_check.json, holds every step's status, each bench's JSON, the training run's
# images/s per epoch and the issue's targets (met or not). Exit status 1 if a step failed.
set -euo pipefail

cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-results/bench}
BUDGET=${BUDGET:-460}
CPU=0
for arg in "$@"; do
    case $arg in
        --cpu) CPU=1 ;;
        *) echo "usage: [OUT=folder] [BUDGET=seconds] $0 [--cpu]" >&2; exit 2 ;;
    esac
done

if [[ $CPU == 1 ]]; then
    MODE=cpu
    BENCH=(--device cpu --threads 1 --workers 1 --batch-size 4 --images 32 --test-images 8 --warmup 0 --steps 1
           --repeats 1 --matmul-size 256)
    PACK=2
    TRAIN=(--recipe '{"dataset": "digits", "model": "vit_digits", "epochs": 2, "warmup_epochs": 1, "batch_size": 256}'
           --gpus 0 --threads 1)
    INPUT=(--device cpu --images 16 --batch 4 --workers 1 --epochs 2 --model vit_digits)
    IMAGENET=(--model vit_digits --batch-size 4 --recipe '{"decode": "device", "workers": 1}')
else
    MODE=gpu
    BENCH=(--device cuda --batch-size 512 --images 50000 --test-images 10000 --warmup 10 --steps 20 --repeats 3)
    PACK=4
    RECIPE='{"dataset": "synthetic", "model": "vit_tiny_patch2_32", "epochs": 2, "warmup_epochs": 1, "batch_size": 512,'
    RECIPE+=' "randaugment": "rand-m9-mstd0.5-inc1", "amp": true}'
    TRAIN=(--recipe "$RECIPE" --compile --gpus 1)
    INPUT=(--device cuda --images 768 --batch 256 --workers 15 --epochs 3 --decode device cpu)
    IMAGENET=(--model vit_tiny_patch16_224 --batch-size 256 --recipe '{"decode": "device"}')
fi

mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
rm -rf "$OUT/parts" "$OUT/train" "$OUT/imagenet" "$OUT/steps.tsv" "$OUT/gpu_check.json"
mkdir -p "$OUT/parts"
: > "$LOG"
START=$SECONDS
FAILED=0

# step NAME LIMIT COMMAND...: run COMMAND for at most LIMIT seconds (or what the budget has left),
# appending its output to the log and its status to steps.tsv.
step() {
    local name=$1 limit=$2 status
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    ((limit > left)) && limit=$left
    local t0=$SECONDS command="$*"
    command=${command//$'\t'/ }
    if ((limit < 5)); then
        status="failed: out of time (budget spent)"
    else
        echo "== $name (limit ${limit}s): $*" >> "$LOG"
        if timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1; then status=ok; else status="failed: exit $?"; fi
    fi
    [[ $status == ok ]] || FAILED=1
    echo "== $name: $status after $((SECONDS - t0)) s" | tee -a "$LOG"
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" "${command//$'\n'/ }" >> "$OUT/steps.tsv"
}

skip() {  # skip NAME WHY: recorded, not a failure
    echo "== $1: skipped: $2" | tee -a "$LOG"
    printf '%s\t%s\t0\t\n' "$1" "skipped: $2" >> "$OUT/steps.tsv"
}

compiled() {  # compiled NAME LIMIT ARGS...: a bench with torch.compile, which the CPU never runs
    if [[ $CPU == 1 ]]; then skip "$1" "the trainer compiles on CUDA only (the same bench, eager, ran above)"
    else bench "$@"; fi
}

bench() {  # bench NAME LIMIT ARGS...
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" python -m mimetic bench "${BENCH[@]}" "$@" --json "$OUT/parts/$name.json"
}

{
    echo "gpu_check.sh ($MODE) $(date -u +%FT%TZ), budget ${BUDGET}s"
    python -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda',
torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
} >> "$LOG" 2>&1

bench patch2_compile_off 75 --model vit_tiny_patch2_32 --compile off
compiled patch2_compile_on 120 --model vit_tiny_patch2_32 --compile default
step train_2_epochs 120 python -m mimetic train "${TRAIN[@]}" --out "$OUT/train"
bench patch4_compile_off 45 --model vit_tiny_patch4_32 --compile off
bench patch4_pack 75 --model vit_tiny_patch4_32 --compile off --reference off --eval off --pack "$PACK"
step imagenet_input 75 python benchmarks/imagenet_input.py "${INPUT[@]}" --keep "$OUT/imagenet"
bench imagenet_device_decode 60 --dataset imagenet --data-root "$OUT/imagenet/index" --randaugment "" \
    --reference off "${IMAGENET[@]}"
compiled patch4_compile_on 90 --model vit_tiny_patch4_32 --compile default

python -m mimetic.bench collect "$OUT" "$MODE"
echo "== done in $((SECONDS - START)) s: $OUT/gpu_check.json, $OUT/gpu_check.log" | tee -a "$LOG"
exit $FAILED
