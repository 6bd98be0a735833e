#!/usr/bin/env bash
# Greedy generation speed of lablens against llama.cpp (through llama-cpp-python) and transformers on
# SmolLM2-135M-Instruct Q4_1: a ~300-token discharge-summary prompt, 128 new tokens, batch 1, 2 threads.
# Prints prefill and decode tokens/s and peak RSS side by side, the ratios against issue 3's goals and
# whether the engines' greedy ids agree. `--quick`: 16 new tokens and one timed run, for a smoke test.
# Needs target/release/lablens (cargo build --release) and
# python3 -m pip install torch transformers gguf llama-cpp-python.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
LABLENS=target/release/lablens

if [ ! -x "$LABLENS" ]; then
    echo "build first: cargo build --release" >&2
    exit 2
fi
if ! "$LABLENS" generate --help | grep -q -- --ignore-eos; then
    echo "$LABLENS predates generate --ignore-eos: rebuild it (cargo build --release)" >&2
    exit 2
fi
for module in torch transformers gguf llama_cpp; do
    if ! python3 -c "import $module" 2>/dev/null; then
        echo "python module $module is missing: python3 -m pip install torch transformers gguf llama-cpp-python" >&2
        exit 2
    fi
done
if [ ! -f "$MODEL" ]; then
    scripts/fetch-smollm2.sh >&2
fi

exec python3 scripts/bench_generate.py "$@" "$LABLENS" "$MODEL"
