#!/usr/bin/env bash
# Load test of `lablens serve` on the demo project (the embedded tiny model, or MODEL=PATH: another
# model, e.g. models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf): starts the server on
# a free local port, then 1, 8 and 32 concurrent clients each send 8 greedy chat completions of
# 64 new tokens (scripts/bench_serve.py, Python's standard library only); prints requests/s,
# P50/P95 latency, tokens/s and the errors for each, and stops the server with SIGTERM.
# CONCURRENCY=1,8,32 REQUESTS=8 MAX_TOKENS=64 change the load; MAX_BATCH (default 8) and
# MAX_CONCURRENCY (default 32) the server's; LABLENS=PATH another binary than
# target/release/lablens (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

LABLENS=${LABLENS:-target/release/lablens}
if [ ! -x "$LABLENS" ]; then
    echo "build first: cargo build --release" >&2
    exit 2
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$LABLENS" serve --project projects/demo ${MODEL:+--model "$MODEL"} --port "$port" \
    --max-batch "${MAX_BATCH:-8}" --max-concurrency "${MAX_CONCURRENCY:-32}" 2>"$log" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 $server 2>/dev/null; then cat "$log" >&2; exit 1; fi
    sleep 0.1
done
python3 scripts/bench_serve.py "http://127.0.0.1:$port" --concurrency "${CONCURRENCY:-1,8,32}" \
    --requests "${REQUESTS:-8}" --max-tokens "${MAX_TOKENS:-64}"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^lablens_(generated_tokens_total|generation_tokens_per_second) '
