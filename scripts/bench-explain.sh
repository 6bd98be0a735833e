#!/usr/bin/env bash
# Speed of `lablens explain` with SmolLM2-135M-Instruct (Q4_1 GGUF) on a 300-word discharge note
# of the demo data (dis-000517): LIME with 256 samples (the time, and the batched scoring's
# tokens/s), the same 256 perturbed sequences scored one at a time by `lablens score` (their
# tokens/s and the ratio, which must be at least 0.8), and gradient x input saliency.
# SAMPLES, BATCH and SCORE_N (how many of the sequences `lablens score` gets; default all)
# change the settings. Needs target/release/lablens (cargo build --release) and the model
# (scripts/fetch-smollm2.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

SAMPLES=${SAMPLES:-256}
BATCH=${BATCH:-8}
MODEL=${MODEL:-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
RECORD=${RECORD:-dis-000517}
LABLENS=${LABLENS:-target/release/lablens}
if [ ! -x "$LABLENS" ]; then
    echo "build first: cargo build --release" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp projects/demo/project.ron "$work/"
sed -i "s#\.\./\.\./sample_data#$PWD/sample_data#" "$work/project.ron"
sed -i "s#source: Tiny#source: Path(\"$(realpath "$MODEL")\")#" "$work/project.ron"

echo "LIME, $SAMPLES samples, batches of $BATCH" >&2
start=$(date +%s.%N)
"$LABLENS" explain --project "$work" --base --record "$RECORD" --samples "$SAMPLES" \
    --batch "$BATCH" --max-new-tokens 128 --write-samples "$work/samples.jsonl" --json \
    >"$work/lime.json"
lime_wall=$(echo "$(date +%s.%N) - $start" | bc)
head -n "${SCORE_N:-$SAMPLES}" "$work/samples.jsonl" >"$work/score.jsonl"
echo "lablens score on $(wc -l <"$work/score.jsonl") of the same sequences" >&2
"$LABLENS" score --model "$MODEL" --data "$work/score.jsonl" --json >"$work/score.json" 2>/dev/null
echo "saliency" >&2
"$LABLENS" explain --project "$work" --base --record "$RECORD" --method saliency \
    --max-new-tokens 128 --json >"$work/saliency.json"

python3 - "$work" "$lime_wall" <<'PY'
import json, sys
work, lime_wall = sys.argv[1], float(sys.argv[2])
lime = json.load(open(f"{work}/lime.json"))
score = json.load(open(f"{work}/score.json"))["timing"]
sal = json.load(open(f"{work}/saliency.json"))["saliency"]
l, s = lime["lime"], lime["lime"]["scoring"]
words = len(lime["input"].split())
print(f"note: {lime['record']}, {words} words; output {len(lime['output'].split())} words ({lime['output_source']})")
print(f"LIME {l['samples']} samples: {l['elapsed_s']:.1f} s in the method, {lime_wall:.1f} s for the whole command (model load and greedy output included)")
print(f"  batched scoring: {s['sequences']} sequences, {s['tokens']} tokens in {s['seconds']:.1f} s = {s['tokens_per_s']:.0f} tokens/s")
print(f"  lablens score:   {score['sequence_tokens']} tokens in {score['scoring_s']:.1f} s = {score['tokens_per_s']:.0f} tokens/s")
ratio = s["tokens_per_s"] / score["tokens_per_s"]
print(f"  batched / lablens score = {ratio:.2f} ({'meets' if ratio >= 0.8 else 'misses'} the 0.8 floor)")
print(f"  surrogate: weighted R^2 {l['r2']:.3f}, intercept {l['intercept']:.2f}")
print(f"saliency: {sal['seconds']:.2f} s ({'under' if sal['seconds'] < 10 else 'over'} 10 s), {len(sal['tokens'])} input tokens")
PY
