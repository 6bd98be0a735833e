#!/usr/bin/env bash
# The QLoRA products on a GPU: a Q4_0 weight read tile by tile inside the kernel against the same
# weight dequantized whole and multiplied by cuBLAS (what a product costs each way), for the layer
# shapes of a Llama-3.2-3B and 4,096 rows, forward (x Wᵀ) and input gradient (g W), bf16.
#
#   scripts/bench-tiles.sh [LIBTEST]
#
# LIBTEST is the library's test binary of a CUDA build (scripts/build-cuda.sh --tests prints its
# path); the GPU machine needs the CUDA 13.0 libraries (found under /usr/local/cuda-13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
LIBTEST=${1:-$(ls -t target/release/deps/lablens-* 2>/dev/null | grep -v '\.d$' | head -1)}
for lib in /usr/local/cuda-13.0/targets/x86_64-linux/lib /usr/local/cuda/lib64; do
    if [ -d "$lib" ]; then
        export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
done
LABLENS_TEST_DEVICE=${DEVICE:-cuda:0} "$LIBTEST" --ignored --exact --nocapture \
    model::nn::device_ops::tests::tile_products_against_dequantize_and_cublas
