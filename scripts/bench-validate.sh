#!/usr/bin/env bash
# Times `lablens validate` against pandas read_json(lines=True) plus the same checks in Python,
# on a 100k-record synthetic discharge JSONL; best of 3 each, then a side-by-side table.
# Needs target/release/lablens (cargo build --release) and pandas (python3 -m pip install pandas).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
DATA=${DATA:-target/bench/discharge-$N.jsonl}
LABLENS=target/release/lablens

if [ ! -x "$LABLENS" ]; then
    echo "build first: cargo build --release" >&2
    exit 2
fi
if ! python3 -c "import pandas" 2>/dev/null; then
    echo "pandas is needed: python3 -m pip install pandas" >&2
    exit 2
fi

mkdir -p "$(dirname "$DATA")"
if [ ! -f "$DATA" ]; then
    echo "writing $N records to $DATA" >&2
    "$LABLENS" gen-data --task discharge --n "$N" --seed 1 --out "$DATA" >/dev/null
fi

echo "timing lablens validate (best of 3)" >&2
rust=$(python3 scripts/bench_validate.py --command "$LABLENS" validate "$DATA" --json)
echo "timing pandas and the same checks in Python (best of 3)" >&2
python=$(python3 scripts/bench_validate.py "$DATA")

records=$(wc -l <"$DATA" | tr -d ' ')
size=$(du -h "$DATA" | cut -f1)
printf '\n%s: %s records, %s\n\n' "$DATA" "$records" "$size"
printf '%-44s %10s\n' "load + validate" "seconds"
printf '%-44s %10s\n' "--------------------------------------------" "----------"
printf '%-44s %10s\n' "lablens validate --json" "$rust"
printf '%-44s %10s\n' "pandas read_json(lines=True) + checks" "$python"
awk -v r="$rust" -v p="$python" 'BEGIN { printf "%-44s %9.1fx\n", "speed-up", p / r }'
