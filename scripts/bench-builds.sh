#!/usr/bin/env bash
# Two builds of lablens side by side, for a change that must not make the product slower: the Lab Lens
# side of scripts/bench-generate.sh (greedy decoding, SmolLM2-135M Q4_1), scripts/bench-train.sh (LoRA
# training, SmolLM2 dequantized) and scripts/bench-rouge.sh (the four stemmed ROUGE variants), each with
# OLD and NEW in the same run. Prints tokens/s (pairs/s for ROUGE) of both and the ratio new/old, and
# fails when the builds compute something different (other greedy ids, losses, ROUGE means).
#
#   scripts/bench-builds.sh OLD [NEW]    NEW defaults to target/release/lablens
#
# OLD is a binary of the earlier tree, e.g. built in a worktree:
#   git worktree add /tmp/old REV && (cd /tmp/old && cargo build --release) && scripts/bench-builds.sh /tmp/old/target/release/lablens
# Needs python3 only (the measuring helpers of the bench scripts, none of their reference engines).
set -euo pipefail
cd "$(dirname "$0")/.."

OLD=${1:?usage: scripts/bench-builds.sh OLD [NEW]}
NEW=${2:-target/release/lablens}
MODEL=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
N=${N:-10000}
PAIRS=target/bench/rouge-pairs-$N.jsonl

for binary in "$OLD" "$NEW"; do
    if [ ! -x "$binary" ]; then
        echo "no lablens binary at $binary" >&2
        exit 2
    fi
done
if [ ! -f "$MODEL" ]; then
    scripts/fetch-smollm2.sh >&2
fi
if [ ! -f "$PAIRS" ]; then
    mkdir -p target/bench
    "$NEW" gen-data --task discharge --n "$N" --seed 11 --out "target/bench/discharge-rouge-$N.jsonl" >/dev/null 2>&1
    python3 scripts/bench_rouge.py --make "target/bench/discharge-rouge-$N.jsonl" "$PAIRS"
fi

status=0
python3 scripts/bench_generate.py --builds "$OLD" "$NEW" "$MODEL" || status=1
python3 scripts/bench_train.py --builds "$OLD" "$NEW" "$MODEL" || status=1

echo "timing bench-rouge with both builds, alternating, three rounds" >&2
rounds=()
for _ in 1 2 3; do
    rounds+=("$("$OLD" bench-rouge --pairs "$PAIRS")" "$("$NEW" bench-rouge --pairs "$PAIRS")")
done
python3 - "${rounds[@]}" <<'PY' || status=1
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
old, new = runs[0::2], runs[1::2]
rate = lambda rs: statistics.median(r["pairs"] / r["seconds"] for r in rs)
print(f"\nROUGE-1/2/L/Lsum, stemmed, one thread, {new[0]['pairs']} pairs, median of {len(new)} rounds")
print(f"{'build':<8} {'pairs/s':>10}")
for name, rs in (("old", old), ("new", new)):
    print(f"{name:<8} {rate(rs):>10.0f}")
print(f"{'new/old':<8} {rate(new) / rate(old):>9.3f}x")
same = all(r["mean_fmeasure"] == old[0]["mean_fmeasure"] for r in runs)
print(f"mean F1 of every variant the same: {same}")
sys.exit(0 if same else 1)
PY
exit $status
