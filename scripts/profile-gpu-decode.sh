#!/usr/bin/env bash
# Where a GPU decode step of one sequence spends its time, by kernel: Nsight Compute over two
# decode steps of `lablens generate` (SmolLM2, GGUF dequantized, bf16), the graph's kernels
# profiled one by one; prints the time of each kernel summed over those steps (at ncu's clocks,
# which it fixes, so read the shares rather than the totals).
#
#   scripts/profile-gpu-decode.sh [LABLENS]
#
# Needs ncu (Nsight Compute, /usr/local/cuda/bin) and the CUDA build (scripts/build-cuda.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
LABLENS=${1:-target/release/lablens}
MODEL=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
for dir in /usr/local/cuda-13.0 /usr/local/cuda; do
    [ -d "$dir" ] && export PATH="$dir/bin:$PATH" LD_LIBRARY_PATH="$dir/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
PROMPT="Patient admitted with community acquired pneumonia, treated with ceftriaxone and azithromycin, discharged on amoxicillin 500 mg three times daily for five days."
out=$(mktemp -d)
# Some 3,000 kernels of the prefill and the first steps are skipped; a step of SmolLM2 is about
# 370 kernels.
ncu --graph-profiling node --launch-skip 3000 --launch-count 740 --csv \
    --metrics gpu__time_duration.sum \
    "$LABLENS" generate --model "$MODEL" --dequantize --prompt "$PROMPT" --max-new-tokens 40 \
    --ignore-eos --device cuda:0 >"$out/ncu.csv"
python3 - "$out/ncu.csv" <<'PY'
import collections, csv, sys
rows = list(csv.reader(open(sys.argv[1])))
header = next(i for i, r in enumerate(rows) if r and r[0] == "ID")
names = rows[header]
total = collections.defaultdict(float)
count = collections.Counter()
for r in rows[header + 1:]:
    if len(r) != len(names):
        continue
    d = dict(zip(names, r))
    scale = {"ns": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3}.get(d["Metric Unit"], 1e-3)
    key = (d["Kernel Name"].split("(")[0], d["Grid Size"])
    total[key] += float(d["Metric Value"].replace(",", "")) * scale
    count[key] += 1
print(f"{'kernel':36} {'grid':>14} {'launches':>8} {'µs each':>9} {'µs in all':>10}")
for (name, grid), t in sorted(total.items(), key=lambda kv: -kv[1]):
    n = count[(name, grid)]
    print(f"{name:36} {grid:>14} {n:8d} {t / n:9.2f} {t:10.1f}")
print(f"{'all':36} {'':>14} {sum(count.values()):8d} {'':>9} {sum(total.values()):10.1f}")
PY
