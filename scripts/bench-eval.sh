#!/usr/bin/env bash
# Generation throughput of `lablens eval`: the same records of the demo project's test split,
# generated in batches of 8 against one at a time (greedy, 128 new tokens), in one run. Prints
# records per minute (generation and scoring, model loading excluded), the ratio, and whether
# both produced the same predictions. MODEL=PATH.gguf evaluates another model than the embedded
# one; N sets the number of records (default 32).
# Needs target/release/lablens (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-32}
LABLENS=target/release/lablens
if [ ! -x "$LABLENS" ]; then
    echo "build first: cargo build --release" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp projects/demo/project.ron "$work/"
sed -i "s#\.\./\.\./sample_data#$PWD/sample_data#" "$work/project.ron"
if [ -n "${MODEL:-}" ]; then
    sed -i "s#source: Tiny#source: Path(\"$(realpath "$MODEL")\")#" "$work/project.ron"
fi

run() {
    "$LABLENS" eval --project "$work" --base --limit "$N" --max-new-tokens 128 --batch "$1" --json \
        2>/dev/null
    mv "$work/base/predictions.jsonl" "$work/predictions-$1.jsonl"
}
echo "evaluating $N records in batches of 8" >&2
batched=$(run 8)
echo "evaluating $N records one at a time" >&2
single=$(run 1)

python3 - "$work" "$batched" "$single" <<'PY'
import json, sys
work, batched, single = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def preds(batch):
    with open(f"{work}/predictions-{batch}.jsonl") as f:
        return [json.loads(l)["prediction"] for l in f]
same = sum(a == b for a, b in zip(preds(8), preds(1)))
print(f"{'mode':<22} {'records':>8} {'records/min':>12}")
print(f"{'batches of 8':<22} {batched['n']:>8} {batched['records_per_minute']:>12.1f}")
print(f"{'one at a time':<22} {single['n']:>8} {single['records_per_minute']:>12.1f}")
print(f"batched / one at a time = {batched['records_per_minute'] / single['records_per_minute']:.2f}x")
print(f"identical predictions: {same}/{batched['n']}")
PY
