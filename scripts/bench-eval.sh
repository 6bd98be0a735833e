#!/usr/bin/env bash
# Generation throughput of `lablens eval` on the demo project's test split (greedy, 128 new
# tokens), two ways in one run; prints records per minute (generation and scoring, model loading
# excluded), the ratio, and how many predictions are the same.
#   default: the same records generated in batches of 8 against one at a time, on the CPU;
#   DEVICE=cuda:N: the GPU against the CPU, each as it is fastest: batches of GPU_BATCH (default
#     16) on the GPU with the weights dequantized (bf16), one at a time on the CPU with the
#     weights as stored.
# MODEL=PATH.gguf evaluates another model than the embedded one; N sets the number of records
# (default 32); LABLENS=PATH another binary than target/release/lablens (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-32}
LABLENS=${LABLENS:-target/release/lablens}
if [ ! -x "$LABLENS" ]; then
    echo "build first: cargo build --release" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# project NAME DEVICE DEQUANTIZE: the demo project in $work/NAME.
project() {
    mkdir -p "$work/$1"
    cp projects/demo/project.ron "$work/$1/"
    local ron="$work/$1/project.ron"
    sed -i "s#\.\./\.\./sample_data#$PWD/sample_data#; s#device: \"auto\"#device: \"$2\"#" "$ron"
    sed -i "s#dequantize: false#dequantize: $3#" "$ron"
    if [ -n "${MODEL:-}" ]; then
        sed -i "s#source: Tiny#source: Path(\"$(realpath "$MODEL")\")#" "$ron"
    fi
}

# run NAME BATCH: eval's --json summary; the predictions kept as $work/NAME.jsonl.
run() {
    "$LABLENS" eval --project "$work/$1" --base --limit "$N" --max-new-tokens 128 --batch "$2" \
        --json 2>/dev/null
    mv "$work/$1/base/predictions.jsonl" "$work/$1.jsonl"
}

if [ -n "${DEVICE:-}" ]; then
    batch=${GPU_BATCH:-16}
    project gpu "$DEVICE" true
    project cpu cpu false
    echo "evaluating $N records on $DEVICE in batches of $batch" >&2
    first=$(run gpu "$batch")
    echo "evaluating $N records on the CPU one at a time" >&2
    second=$(run cpu 1)
    labels="$DEVICE, batches of $batch|cpu, one at a time"
    names="gpu cpu"
else
    project cpu cpu false
    cp -r "$work/cpu" "$work/single"
    echo "evaluating $N records in batches of 8" >&2
    first=$(run cpu 8)
    echo "evaluating $N records one at a time" >&2
    second=$(run single 1)
    labels="batches of 8|one at a time"
    names="cpu single"
fi

python3 - "$work" "$first" "$second" "$labels" $names <<'PY'
import json, sys
work, first, second, labels, a, b = sys.argv[1:7]
first, second = json.loads(first), json.loads(second)
la, lb = labels.split("|")
def preds(name):
    with open(f"{work}/{name}.jsonl") as f:
        return [json.loads(l)["prediction"] for l in f]
same = sum(x == y for x, y in zip(preds(a), preds(b)))
print(f"{'mode':<28} {'records':>8} {'records/min':>12}")
print(f"{la:<28} {first['n']:>8} {first['records_per_minute']:>12.1f}")
print(f"{lb:<28} {second['n']:>8} {second['records_per_minute']:>12.1f}")
print(f"{la} / {lb} = {first['records_per_minute'] / second['records_per_minute']:.2f}x")
print(f"identical predictions: {same}/{first['n']}")
PY
