#!/usr/bin/env bash
# Frame build time of the Train panel with 100,000 logged steps: p50 and p95 over 500 frames,
# headless (no renderer), with and without tessellation.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --lib bench_frame_build_time_with_100k_steps -- --ignored --nocapture --test-threads=1 2>&1 \
    | grep -E "Train panel|frame " | sed -E "s/^test .* \.\.\. //"
