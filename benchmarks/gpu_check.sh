#!/usr/bin/env bash
# Every CUDA path of latentkit in one run of under 10 minutes, so that a lent GPU is used at once.
#
#   bash benchmarks/gpu_check.sh            # results under $OUT (the device machine's folder) or
#                                           # benchmarks/results/gpu_check/ when OUT is not set
#
# Each check has its own time limit (the sum stays under 10 minutes) and its own log; one failing check does
# not stop the others. summary.txt lists each check's exit status (0 ok, 124 timed out) and seconds.
# Checks: the -m gpu tests; projection in fp32, bf16 and fp16 autocast on a tiny reference net; torchrun with
# NCCL (2 ranks when there are 2 GPUs, else 1); train-encoder and project --init encoder on CUDA; the
# time-to-quality benchmark on the real default model; the real model's encoder trained on the GPU (resumable:
# rerunning continues it). Written by reading the code: it had not yet run on a GPU when it was committed.
# A device machine without internet needs the real model's wheel (random_face-2021.7.21.1-py3-none-any.whl),
# the LPIPS VGG weights and the cached prior in a latentkit cache: copy ~/.cache/latentkit there (it travels
# as an ignored path of the checkout, e.g. carry ".gpu-cache") and run with LATENTKIT_CACHE=$PWD/.gpu-cache.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
R="${OUT:-benchmarks/results/gpu_check}"
mkdir -p "$R"
NET=tests/data/reference-nets/sg2ada_uncond_map8_res32.pkl
SUMMARY="$R/summary.txt"
: > "$SUMMARY"
START=$(date +%s)

check() {  # check NAME SECONDS COMMAND...: run with a time limit, log to $R/NAME.log, record status and time
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s)
    timeout --signal=INT --kill-after=15 "$limit" "$@" > "$R/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$SUMMARY"
}

{ nvidia-smi; python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0),
  'bf16', torch.cuda.is_bf16_supported())"; } > "$R/device.txt" 2>&1

# 1. The tests marked gpu (fp16 NVIDIA nets against the reference outputs, on CUDA).
check pytest_gpu 120 python -m pytest -q -m gpu -p no:cacheprovider tests/

# 2. Projection in each precision on a tiny reference net (the manifests hold LPIPS, PSNR and seconds).
python - "$R" <<'EOF'
import sys, torch
from latentkit.io import save_image
from latentkit.load import load_generator
G = load_generator("tests/data/reference-nets/sg2ada_uncond_map8_res32.pkl")
for i in range(4):
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(100 + i))
    save_image(f"{sys.argv[1]}/target{i}.png", G(z).clamp(-1, 1))
EOF
for p in fp32 bf16 fp16; do
    check "project_$p" 60 python -m latentkit project "$R"/target*.png --network "$NET" --device cuda --precision "$p" \
        --num-steps 200 --perceptual-weights random --outdir "$R/project_$p" --restart
done

# 3. torchrun with NCCL: each rank projects its share on cuda:LOCAL_RANK.
NGPU=$(python -c "import torch; print(min(2, torch.cuda.device_count()))")
check "torchrun_nccl_$NGPU" 90 torchrun --standalone --nproc-per-node "$NGPU" -m latentkit project "$R"/target*.png \
    --network "$NET" --device cuda --num-steps 50 --perceptual-weights random --outdir "$R/torchrun" --restart

# 4. The encoder on CUDA: train on a tiny net, then start a projection from it.
check encoder_tiny 60 python -m latentkit train-encoder --network "$NET" --out "$R/enc_tiny.safetensors" \
    --samples 2048 --steps 1000 --device cuda
check project_encoder 30 python -m latentkit project "$R"/target*.png --network "$NET" --device cuda \
    --init encoder --encoder "$R/enc_tiny.safetensors" --num-steps 20 --perceptual-weights random \
    --outdir "$R/project_encoder" --restart

# 5. Time to quality on the real default model (NVIDIA's schedule at 300 steps against latentkit's defaults).
check time_to_quality 150 python benchmarks/bench_time_to_quality.py --device cuda --seeds 2 \
    --methods nvidia latentkit --nvidia-steps 300 --latentkit-steps 300 --out "$R/time_to_quality_cuda.json"

# 6. The real model's encoder, trained on the GPU with what time is left (the file is usable at each
#    checkpoint; rerunning the same command continues it). Copy it out with the work folder to resume elsewhere.
LEFT=$(( 570 - ($(date +%s) - START) ))
if [ "$LEFT" -gt 30 ]; then
    check encoder_msg "$LEFT" python -m latentkit train-encoder --network mobilestylegan-ffhq \
        --out "$R/mobilestylegan-ffhq-encoder.safetensors" --samples 8000 --steps 20000 --batch-size 64 \
        --checkpoint-every 250 --device cuda
fi
echo "total seconds=$(( $(date +%s) - START ))" | tee -a "$SUMMARY"
