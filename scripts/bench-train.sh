#!/usr/bin/env bash
# LoRA training speed of lablens against transformers + PEFT on SmolLM2-135M-Instruct: f32 (the GGUF
# dequantized), sequence length 256, micro-batch 4, r=16 on all seven targets, CPU with 2 threads, the same
# batches for every engine (lablens records them, PyTorch replays them). Prints training tokens/s (forward +
# backward + optimizer) and peak RSS side by side, lablens' quantized-base (QLoRA) mode beside them, the ratios
# against issue 4's goals and how closely the losses agree. `--quick`: 3 steps instead of 12, for a smoke test.
# Needs target/release/lablens (cargo build --release) and
# python3 -m pip install torch transformers peft gguf.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
LABLENS=target/release/lablens

if [ ! -x "$LABLENS" ]; then
    echo "build first: cargo build --release" >&2
    exit 2
fi
if ! "$LABLENS" train --help 2>/dev/null | grep -q -- --record-batches; then
    echo "$LABLENS predates train --record-batches: rebuild it (cargo build --release)" >&2
    exit 2
fi
for module in torch transformers peft gguf; do
    if ! python3 -c "import $module" 2>/dev/null; then
        echo "python module $module is missing: python3 -m pip install torch transformers peft gguf" >&2
        exit 2
    fi
done
if [ ! -f "$MODEL" ]; then
    scripts/fetch-smollm2.sh >&2
fi

exec python3 scripts/bench_train.py "$@" "$LABLENS" "$MODEL"
