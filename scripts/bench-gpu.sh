#!/usr/bin/env bash
# lablens against transformers (+ PEFT) on one NVIDIA GPU, bf16, side by side in one run:
#   training: LoRA on SmolLM2-135M-Instruct (GGUF dequantized), sequence length 512, micro-batch 16, r=16 on all
#             seven targets, the same batches for both (lablens records them, PyTorch replays them): tokens/s,
#             peak GPU memory, their ratios, loss agreement;
#   generation: greedy decode tokens/s at batch 1 and batch 16.
#
#   scripts/bench-gpu.sh [--quick] [--device cuda:N] [--dtype bf16|f32] [--train-model DIR] [--seq N]
#                        [--micro-batch N] [--steps N] [--train-only | --generate-only] [--qlora] [LABLENS]
#
# --train-model trains a Hugging Face folder instead (scripts/make-random-llama.py writes Llama-3.2-1B/3B-shaped
# ones), --seq/--micro-batch/--steps change the training shape, --train-only skips the generation timing,
# --generate-only the training, --qlora trains a GGUF --train-model with its weights kept quantized (lablens
# alone).
#
# LABLENS is a binary built with scripts/build-cuda.sh (default target/release/lablens). The machine needs the
# NVIDIA driver, the CUDA 13.0 libraries (found under /usr/local/cuda-13.0 and added to LD_LIBRARY_PATH here),
# python3 with torch, transformers, peft and gguf, nvidia-smi, and models/ from scripts/fetch-smollm2.sh.
# `--device cpu --dtype bf16 --quick` runs the script's code on the CPU with short shapes (a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
ARGS=()
LABLENS=target/release/lablens
while [ $# -gt 0 ]; do
    case "$1" in
        --quick | --train-only | --generate-only | --qlora) ARGS+=("$1") ;;
        --device | --dtype | --train-model | --seq | --micro-batch | --steps)
            ARGS+=("$1" "${2:?$1 needs a value}")
            shift
            ;;
        *) LABLENS="$1" ;;
    esac
    shift
done

for lib in /usr/local/cuda-13.0/targets/x86_64-linux/lib /usr/local/cuda/lib64; do
    if [ -d "$lib" ]; then
        export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
done
if [ ! -x "$LABLENS" ]; then
    echo "no lablens binary at $LABLENS: build one with scripts/build-cuda.sh" >&2
    exit 2
fi
for module in torch transformers peft gguf; do
    if ! python3 -c "import $module" 2>/dev/null; then
        echo "python module $module is missing: python3 -m pip install torch transformers peft gguf" >&2
        exit 2
    fi
done
if [ ! -f "$MODEL" ]; then
    echo "$MODEL is missing: run scripts/fetch-smollm2.sh (or copy the file there)" >&2
    exit 2
fi

PYTHONUNBUFFERED=1 exec python3 scripts/bench_gpu.py "${ARGS[@]}" "$LABLENS" "$MODEL"
