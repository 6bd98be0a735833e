#!/usr/bin/env bash
# All four ROUGE variants with stemming on N (default 10,000) pairs of discharge-length texts:
# lablens (one thread, the hidden `lablens bench-rouge`) against Google's rouge-score, in the same
# run; checks that the mean F1 of each variant agrees and prints the speed-up.
# Needs a release build (cargo build --release) and rouge-score (python3 -m pip install rouge-score).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
TARGET=${CARGO_TARGET_DIR:-target}
LABLENS=$TARGET/release/lablens
DIR=$TARGET/bench
RECORDS=$DIR/discharge-rouge-$N.jsonl
PAIRS=$DIR/rouge-pairs-$N.jsonl

if [ ! -x "$LABLENS" ]; then
    echo "build first: cargo build --release" >&2
    exit 2
fi
if ! python3 -c "import rouge_score" 2>/dev/null; then
    echo "rouge-score is needed: python3 -m pip install rouge-score" >&2
    exit 2
fi

mkdir -p "$DIR"
if [ ! -f "$PAIRS" ]; then
    echo "writing $N pairs to $PAIRS" >&2
    "$LABLENS" gen-data --task discharge --n "$N" --seed 11 --out "$RECORDS" >/dev/null 2>&1
    python3 scripts/bench_rouge.py --make "$RECORDS" "$PAIRS"
fi

echo "timing lablens bench-rouge" >&2
rust=$("$LABLENS" bench-rouge --pairs "$PAIRS")
echo "timing rouge-score (this takes a few minutes)" >&2
python=$(python3 scripts/bench_rouge.py "$PAIRS")

python3 - "$rust" "$python" "$PAIRS" <<'PY'
import json, sys
rust, python, pairs = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
words = [len(json.loads(l)["reference"].split()) for l in open(pairs)]
print(f"\n{pairs}: {rust['pairs']} pairs, references {sum(words) / len(words):.0f} words on average\n")
print(f"{'ROUGE-1/2/L/Lsum, stemmed, one thread':<40} {'seconds':>10} {'pairs/s':>10}")
for name, r in [("lablens bench-rouge", rust), ("rouge-score 0.1.2", python)]:
    print(f"{name:<40} {r['seconds']:>10.3f} {r['pairs'] / r['seconds']:>10.0f}")
print(f"{'speed-up':<40} {python['seconds'] / rust['seconds']:>9.1f}x")
# On a shared machine wall time flatters whichever side waited more; rouge-score's CPU time
# against lablens' wall time (at least its CPU time) is the conservative ratio.
print(f"rouge-score CPU time {python['cpu_seconds']:.1f} s: speed-up by CPU time at least "
      f"{python['cpu_seconds'] / rust['seconds']:.1f}x")
worst = max(abs(rust["mean_fmeasure"][k] - python["mean_fmeasure"][k]) for k in rust["mean_fmeasure"])
print(f"largest difference of a mean F1: {worst:.2e}")
sys.exit(0 if worst < 1e-9 else 1)
PY
