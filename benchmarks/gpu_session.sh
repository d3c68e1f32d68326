#!/usr/bin/env bash
# One-shot GPU session for a borrowed machine with no network: check the CUDA and Triton
# kernels, time BiWKV and the codec, continue training the bundled weights there, bring back
# fp16 weights and the logs.
#
#   benchmarks/gpu_session.sh prepare       # here, with network: wheels + data into the checkout
#   benchmarks/gpu_session.sh run OUTDIR    # there, in the repository root
#   benchmarks/gpu_session.sh effort OUTDIR # there: Kodak at --effort 7 and 9 (issue 41's measure)
#
# `prepare` fills two ignored folders, .whl/ (compressai and pytorch-msssim for the
# GPU machine's Python 3.12) and .gpu-data/ (BSDS500 train+test as training photos,
# kodim04/15/23 for validation, all of Kodak for `effort`; Urban100 is left out to stay
# under a 64 MiB transfer);
# both must travel with the working tree. `run` installs the wheels into /tmp/site
# (where the image lacks those packages), runs the CUDA and Triton tests, times BiWKV
# (benchmarks/biwkv_speed.py: Triton vs the CUDA and CPU kernels, Kodak and training
# sizes) and the codec (benchmarks/gpu_codec.py, Triton path vs LALIC_BIWKV=kernel,
# the CUDA kernel) into OUTDIR/*.log, trains for TRAIN_SECONDS
# with --init from the bundled weights and writes
# OUTDIR/lalic-small-vr-gpu.safetensors (fp16, about 14 MB) with the logs.
# Measure those weights here with `lalic bench` before bundling them. `effort` benches the
# bundled weights on the 24 Kodak images at QUALITIES, effort 7 then 9 (refinement on the
# GPU, coding on the portable path as always), into OUTDIR/kodak-effort{7,9}.json; AVIF is
# run here, on the same images, and compared with benchmarks/compare_runs.py (BD-rate per JSON).
#
# Environment: BENCH (1; 0 skips the timings), TRAIN_SECONDS (420), STEPS (900: the lr drops x0.1 at 85 %), BATCH (16),
# PATCH (256), CONFIG (small), DEVICE (cuda), DATA (../shared/data, for prepare),
# QUALITIES (1 2 3 4 5 6), EFFORT_SECONDS (480, for effort 9).
set -euo pipefail
cd "$(dirname "$0")/.."

prepare() {
    local data=${DATA:-../shared/data}
    rm -rf .whl .gpu-data
    mkdir -p .whl .gpu-data/train .gpu-data/val .gpu-data/kodak
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        -d .whl compressai==1.2.8 pytorch-msssim==1.0.0
    for d in bsds500-train bsds500-test; do
        for f in "$data/$d"/*; do cp "$f" ".gpu-data/train/${d}_$(basename "$f")"; done
    done
    for k in 04 15 23; do cp "$data/kodak/kodim$k.png" .gpu-data/val/; done
    cp "$data"/kodak/*.png .gpu-data/kodak/
    du -sh .whl .gpu-data
}

setup() {  # log to $1, and the wheels the GPU image lacks
    exec > >(tee "$1") 2>&1
    if ! python3 -c "import compressai, pytorch_msssim" 2> /dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONUNBUFFERED=1
}

run() {
    local out=${1:?usage: $0 run OUTDIR}
    mkdir -p "$out"
    setup "$out/session.log"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
    python3 -c "import torch, compressai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'compressai', compressai.__version__)"
    if [ "${DEVICE:-cuda}" = cuda ]; then
        timeout 240 python3 -m pytest -q -x tests/test_biwkv.py -k cuda -p no:cacheprovider || echo "CUDA TESTS FAILED: $?"
        timeout 300 python3 -m pytest -q tests/test_biwkv_triton.py -p no:cacheprovider || echo "TRITON TESTS FAILED: $?"
        if [ "${BENCH:-1}" = 1 ]; then
            bench "$out"
        fi
    fi
    timeout $(( ${TRAIN_SECONDS:-420} + 120 )) python3 -m lalic_cli.cli train \
        --device "${DEVICE:-cuda}" --data .gpu-data/train --val-data .gpu-data/val --out /tmp/gpu-run \
        --config "${CONFIG:-small}" --variable-rate --init weights/lalic-small-vr.safetensors \
        --steps "${STEPS:-900}" --batch "${BATCH:-16}" --patch "${PATCH:-256}" --lr 1e-4 \
        --val-every 200 --checkpoint-every 100 --time-limit "${TRAIN_SECONDS:-420}" --seed 8 \
        --export lalic-small-vr-gpu --export-dtype float16 2>&1 | tr '\r' '\n' | grep -v "^train " > "$out/train.log" || true
    tail -5 "$out/train.log"
    cp /tmp/gpu-run/lalic-small-vr-gpu.safetensors "$out/"
}

effort() {
    local out=${1:?usage: $0 effort OUTDIR} q
    mkdir -p "$out"
    setup "$out/effort.log"
    read -ra q <<< "${QUALITIES:-1 2 3 4 5 6}"
    for e in 7 9; do
        timeout $(( e == 9 ? ${EFFORT_SECONDS:-480} : 120 )) python3 -m lalic_cli.cli bench .gpu-data/kodak \
            -q "${q[@]}" --effort "$e" --device cuda --per-image --json "$out/kodak-effort$e.json" 2>&1 \
            | tr '\r' '\n' | tail -25 || echo "EFFORT $e STOPPED: $?"
    done
}

bench() {
    local out=$1 threads
    threads=$(nproc)
    timeout 300 python3 benchmarks/biwkv_speed.py --threads "$threads" \
        --triton-blocks 64,16,16,4 32,32,16,4 128,16,16,8 2>&1 | tee "$out/biwkv-kodak.log" || true
    timeout 200 python3 benchmarks/biwkv_speed.py --threads "$threads" --B 8 --T 4096 --C 32 2>&1 \
        | tee "$out/biwkv-train.log" || true
    for path in auto kernel; do  # auto: the Triton scan; kernel: the CUDA extension
        LALIC_BIWKV=${path/auto/} timeout 400 python3 benchmarks/gpu_codec.py .gpu-data/val --limit 3 2>&1 \
            | tee "$out/codec-$path.log" || true
    done
}

case "${1:-}" in
    prepare) prepare ;;
    run) shift; run "$@" ;;
    effort) shift; effort "$@" ;;
    *) echo "usage: $0 prepare | run OUTDIR | effort OUTDIR" >&2; exit 2 ;;
esac
