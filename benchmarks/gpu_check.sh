#!/usr/bin/env bash
# The GPU check in one command, within 8 minutes on one GPU:
#
#   OUT=results/bench benchmarks/gpu_check.sh          # on a machine with one GPU
#   OUT=/tmp/check benchmarks/gpu_check.sh --cpu       # the same steps, tiny sizes, on the CPU
#
# Needs PyTorch, timm, torchvision, pandas, safetensors and scipy, and for the compile steps a C
# compiler with Python's headers (checked first: without them those steps are recorded as
# skipped and the rest runs eager). No install, no snakemake, no datasets, no internet: it runs
# the package from src/. It raises the open-file limit to the hard limit, and writes its JPEGs
# (4,096 training and 1,024 validation images of 500x375) under $SCRATCH (default
# /tmp/mimetic-gpu-check, reused by a rerun), never under $OUT. Steps, most important first:
#   preflight                the compiler, the open-file limit, versions
#   syncs                    host synchronizations in 3 CIFAR and 3 ImageNet steps (target: none in the loop)
#   decode_order             torchvision's decoder against a freed buffer still read by a queued kernel
#   patch2_compile_off       bench patch 2: the project step vs the model step alone and the reference
#                            loop with 6 DataLoader workers (a 48-core 8-GPU node's share)
#   patch2_compile_on        the same with torch.compile (a cold compile: its own time)
#   imagenet_step            bench ImageNet ViT-Tiny/16: the full step vs the model step alone
#   idle                     the GPU's idle fraction over five profiled steps, CIFAR and ImageNet
#   patch4_pack              packing: 4 processes training patch 4 on one GPU vs one
#   train_2_epochs           a 2-epoch CIFAR-shaped `mimetic train` with every fast-path switch on
#   imagenet_input           the input path alone: images/s per decode path
#   patch2_reference_all_cores  the reference loop with 15 workers (all cores but one)
#   patch4_compile_on        bench patch 4 with torch.compile
# With --cpu the sizes are tiny, the training run is a digits one, and the compile steps and the
# all-cores reference are skipped (the trainer compiles on CUDA only; one core is patch2's). A step that fails or runs out of time is recorded
# and the next one runs; the whole script keeps to $BUDGET seconds (default 460) by giving each
# step at most what is left. The result, $OUT/gpu_check.json, holds every step's status, each
# bench's and probe's JSON, the training run's images/s per epoch and the targets (met or not).
# Exit status 1 if a step failed.
set -euo pipefail

cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-results/bench}
SCRATCH=${SCRATCH:-${TMPDIR:-/tmp}/mimetic-gpu-check}
BUDGET=${BUDGET:-460}
CPU=0
for arg in "$@"; do
    case $arg in
        --cpu) CPU=1 ;;
        *) echo "usage: [OUT=folder] [SCRATCH=folder] [BUDGET=seconds] $0 [--cpu]" >&2; exit 2 ;;
    esac
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # many workers, each with its batches in flight

if [[ $CPU == 1 ]]; then
    MODE=cpu
    SCRATCH=$SCRATCH-cpu
    BENCH=(--device cpu --threads 1 --batch-size 4 --images 32 --test-images 8 --warmup 0 --steps 1 --repeats 1
           --matmul-size 256)
    REF6=(--workers 1)
    REFALL=()  # one core: patch2_compile_off's reference is the all-cores one
    PACK=2
    TRAIN=(--recipe '{"dataset": "digits", "model": "vit_digits", "epochs": 2, "warmup_epochs": 1, "batch_size": 256}'
           --gpus 0 --threads 1)
    JPEGS=(--images 32 --val-images 8)
    INPUT=(--device cpu --batch 4 --workers 1 --epochs 2 --model vit_digits)
    IMAGENET=(--model vit_digits --batch-size 4 --recipe '{"decode": "device", "workers": 1}')
    PROBE=(--device cpu)
else
    MODE=gpu
    BENCH=(--device cuda --batch-size 512 --images 50000 --test-images 10000 --warmup 10 --steps 20 --repeats 3)
    REF6=(--workers 6)
    REFALL=(--workers 15)
    PACK=4
    RECIPE='{"dataset": "synthetic", "model": "vit_tiny_patch2_32", "epochs": 2, "warmup_epochs": 1, "batch_size": 512,'
    RECIPE+=' "randaugment": "rand-m9-mstd0.5-inc1", "amp": true}'
    TRAIN=(--recipe "$RECIPE" --gpus 1)
    JPEGS=(--images 4096 --val-images 1024)
    INPUT=(--device cuda --batch 256 --workers 15 --epochs 3 --decode device cpu)
    IMAGENET=(--model vit_tiny_patch16_224 --batch-size 256 --recipe '{"decode": "device"}')
    PROBE=(--device cuda)
fi

mkdir -p "$OUT" "$SCRATCH"
LOG=$OUT/gpu_check.log
rm -rf "$OUT/parts" "$OUT/train" "$OUT/steps.tsv" "$OUT/gpu_check.json"
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

bench() {  # bench NAME LIMIT ARGS...
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" python -m mimetic bench "${BENCH[@]}" "$@" --json "$OUT/parts/$name.json"
}

compiled() {  # compiled NAME LIMIT ARGS...: a bench with torch.compile, where this machine can compile
    if [[ -n $NO_COMPILE ]]; then skip "$1" "$NO_COMPILE"; else bench "$@"; fi
}

probe() {  # probe NAME LIMIT PROBE ARGS...
    local name=$1 limit=$2 what=$3
    shift 3
    step "$name" "$limit" python benchmarks/gpu_probe.py "$what" "${PROBE[@]}" "$@" --json "$OUT/parts/probe_$name.json"
}

# preflight: written whatever the rest does
python - "$OUT/parts/preflight.json" "$MODE" <<'EOF' >> "$LOG" 2>&1 || echo '{}' > "$OUT/parts/preflight.json"
import json, resource, sys
import torch, torchvision, timm
from mimetic.train.launch import compiler_missing
doc = {"compiler_missing": compiler_missing(), "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
       "torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
       "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
open(sys.argv[1], "w").write(json.dumps(doc, indent=2) + "\n")
print("preflight", json.dumps(doc))
EOF
NO_COMPILE=$(python -c "import json, sys; print(json.load(open(sys.argv[1])).get('compiler_missing') or '')" \
    "$OUT/parts/preflight.json")
[[ -z $NO_COMPILE && $CPU == 1 ]] && NO_COMPILE="the trainer compiles on CUDA only (the same bench ran eager)"
[[ -z $NO_COMPILE ]] && TRAIN+=(--compile)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$LOG" 2>&1 || true
echo "== gpu_check.sh ($MODE) $(date -u +%FT%TZ), budget ${BUDGET}s, open files $(ulimit -n), scratch $SCRATCH" \
    | tee -a "$LOG"

# The JPEGs (quick where a rerun finds them) before the steps that read them.
python benchmarks/imagenet_input.py "${JPEGS[@]}" --keep "$SCRATCH" --prepare-only >> "$LOG" 2>&1 \
    || echo "== the JPEGs could not be made: the ImageNet steps will fail" | tee -a "$LOG"
INDEX=$SCRATCH/index

probe syncs 60 syncs --data-root "$INDEX"
probe decode_order 30 decode-order
bench patch2_compile_off 60 --model vit_tiny_patch2_32 --compile off "${REF6[@]}"
compiled patch2_compile_on 150 --model vit_tiny_patch2_32 --compile default --reference off --eval off
bench imagenet_step 60 --dataset imagenet --data-root "$INDEX" --randaugment "" --reference off --eval off \
    "${IMAGENET[@]}"
probe idle 60 idle --data-root "$INDEX"
bench patch4_pack 60 --model vit_tiny_patch4_32 --compile off --reference off --eval off --pack "$PACK"
step train_2_epochs 120 python -m mimetic train "${TRAIN[@]}" --out "$OUT/train"
step imagenet_input 60 python benchmarks/imagenet_input.py "${JPEGS[@]}" "${INPUT[@]}" --keep "$SCRATCH"
if ((${#REFALL[@]})); then
    bench patch2_reference_all_cores 45 --model vit_tiny_patch2_32 --compile off --eval off "${REFALL[@]}"
else
    skip patch2_reference_all_cores "on one core the reference loop is patch2_compile_off's"
fi
compiled patch4_compile_on 90 --model vit_tiny_patch4_32 --compile default --reference off --eval off

python -m mimetic.bench collect "$OUT" "$MODE"
echo "== done in $((SECONDS - START)) s: $OUT/gpu_check.json, $OUT/gpu_check.log" | tee -a "$LOG"
exit $FAILED
