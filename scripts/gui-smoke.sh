#!/usr/bin/env bash
# Starts the workbench on the demo project in a real window under Xvfb and checks that it draws:
# the window must appear, stay up for a few seconds, and `lablens screenshots` must render
# non-blank, legible frames of every panel at two window sizes.
set -euo pipefail
bin=${1:-target/release/lablens}
# The first display number no other X server holds (stale locks from killed servers included).
n=93
while [ -e /tmp/.X$n-lock ] || [ -e /tmp/.X11-unix/X$n ]; do n=$((n + 1)); done
display=:$n
Xvfb $display -screen 0 1600x1000x24 -nolisten tcp >/tmp/lablens-xvfb.log 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true; [ -n "${app:-}" ] && kill $app 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -S /tmp/.X11-unix/X$n ] && break; sleep 0.1; done
[ -S /tmp/.X11-unix/X$n ] || { echo "Xvfb did not start on $display:"; cat /tmp/lablens-xvfb.log; exit 1; }

home=$(mktemp -d)
DISPLAY=$display HOME=$home "$bin" >/tmp/lablens-gui.log 2>&1 &
app=$!
found=""
for _ in $(seq 100); do
  if DISPLAY=$display xdotool search --name "^Lab Lens$" >/dev/null 2>&1; then found=yes; break; fi
  kill -0 $app 2>/dev/null || { echo "the workbench exited early:"; cat /tmp/lablens-gui.log; exit 1; }
  sleep 0.2
done
[ -n "$found" ] || { echo "no 'Lab Lens' window appeared"; cat /tmp/lablens-gui.log; exit 1; }
sleep 3
kill -0 $app 2>/dev/null || { echo "the workbench died after opening:"; cat /tmp/lablens-gui.log; exit 1; }
echo "window 'Lab Lens' is up and running"
kill $app; wait $app 2>/dev/null || true
app=""

# Every panel at the default window size and at 1024x768: rendered, and legible (no text over
# other text, cut, or drawn as empty boxes; lablens screenshots lists what it finds).
for window in 1400x880 1024x768; do
  out=$(mktemp -d)
  DISPLAY=$display HOME=$home "$bin" screenshots --out "$out" --size $window
  for name in dataset-records model-sidebar dataset-validation dataset-distributions dataset-filtered-light \
      train-live train-runs-overlay train-playground compare compare-review bias explain; do
    [ -f "$out/$name.png" ] || { echo "lablens screenshots did not render $name.png at $window"; exit 1; }
  done
  for f in "$out"/*.png; do
    size=$(stat -c %s "$f")
    [ "$size" -gt 20000 ] || { echo "$f is too small to be a rendered panel ($size bytes)"; exit 1; }
    echo "rendered $(basename "$f") at $window ($size bytes)"
  done
  if [ -s "$out/layout-problems.txt" ]; then
    echo "layout problems at $window:"; cat "$out/layout-problems.txt"; exit 1
  fi
  echo "no layout problem at $window"
done
