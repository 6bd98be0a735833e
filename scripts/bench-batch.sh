#!/usr/bin/env bash
# Batched decoding on the CPU: SmolLM2-135M-Instruct Q4_1, 2 threads, greedy, the first 16
# discharge records of sample_data as chat prompts. For 1, 4, 8 and 16 sequences decoding
# together it prints the aggregate decode tokens/s (128 new tokens each; the steps that only
# decode, as `generate --json` times them; median of REPS runs) and the ratio to one sequence,
# then `lablens eval` records/min with batches of 8 against one at a time (scripts/bench-eval.sh).
# Needs target/release/lablens (cargo build --release). REPS=N repeats (default 3); SKIP_EVAL=1
# leaves the eval comparison out.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
LABLENS=${LABLENS:-target/release/lablens}
REPS=${REPS:-3}
if [ ! -x "$LABLENS" ]; then
    echo "build first: cargo build --release" >&2
    exit 2
fi
if [ ! -f "$MODEL" ]; then
    scripts/fetch-smollm2.sh >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -16 "${DATA:-sample_data/discharge.jsonl}" >"$work/records.jsonl"

# rate C: tokens/s of the decode steps (those that prefill no prompt) with the first C records
# together, 128 new tokens each.
rate() {
    head -"$1" "$work/records.jsonl" >"$work/some.jsonl"
    RAYON_NUM_THREADS=2 "$LABLENS" generate --model "$MODEL" --data "$work/some.jsonl" \
        --batch-size "$1" --greedy --max-new-tokens 128 --ignore-eos --json 2>/dev/null |
        python3 -c 'import json, sys; t = json.load(sys.stdin)["timing"]; print(t["decoded_tokens"] / t["decode_s"])'
}

results=""
for c in 1 4 8 16; do
    runs=""
    for _ in $(seq "$REPS"); do
        runs="$runs,$(rate "$c")"
    done
    results="$results $c=$runs"
    echo "measured $c sequence(s)" >&2
done

python3 - $results <<'PY'
import statistics, sys
rows = []
for arg in sys.argv[1:]:
    c, runs = arg.split("=")
    rows.append((int(c), statistics.median(float(r) for r in runs.split(",") if r)))
one = rows[0][1]
print(f"{'sequences':>9} {'decode tokens/s':>16} {'vs one':>7}")
for c, rate in rows:
    print(f"{c:>9} {rate:>16.1f} {rate / one:>6.2f}x")
eight = dict(rows)[8] / one
print(f"8 sequences / 1 = {eight:.2f}x (goal 4x, at least 2.5x)")
PY

if [ -z "${SKIP_EVAL:-}" ]; then
    MODEL="$MODEL" N=16 LABLENS="$LABLENS" scripts/bench-eval.sh
fi
