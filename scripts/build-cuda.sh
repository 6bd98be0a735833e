#!/usr/bin/env bash
# Builds lablens with the `cuda` feature on a machine that has no CUDA toolkit and no GPU.
#
#   scripts/build-cuda.sh [COMPUTE_CAP] [--tests]
#                          COMPUTE_CAP: 90 (H100/H200, the default), 80 (A100), 86 (RTX 30xx), 89 (RTX 40xx/L40)
#                          --tests: also the test binaries that follow LABLENS_TEST_DEVICE (the library's unit
#                          tests and tests/smollm2_parity.rs), their paths printed last
#
# 1. nvcc, headers and the cuBLAS/cuRAND/NVRTC libraries come from PyPI, pinned to the CUDA 13.0
#    line, into .cuda/ (git-ignored, about 1.2 GB). PTX from a newer nvcc than the driver's CUDA
#    fails to load there (CUDA_ERROR_UNSUPPORTED_PTX_VERSION): the GPU machine runs driver 580,
#    CUDA 13.0, so keep these pins in step with the driver you run on.
# 2. The wheels carry versioned libraries only: the unversioned links the linker wants are made.
# 3. candle links the driver library (cudarc's dynamic-linking), which is not on PyPI: a stub
#    libcuda.so with every cu* entry point of cudarc's bindings satisfies the linker; the real one
#    is loaded where the binary runs.
# 4. cargo build --release --features cuda. The binary is target/release/lablens (or under
#    $CARGO_TARGET_DIR); on the GPU machine run it with the CUDA 13.0 libraries on
#    LD_LIBRARY_PATH (/usr/local/cuda-13.0/targets/x86_64-linux/lib there).
set -euo pipefail
cd "$(dirname "$0")/.."

CAP=90
TESTS=false
for arg in "$@"; do
    case "$arg" in
        --tests) TESTS=true ;;
        *) CAP="$arg" ;;
    esac
done
case "$CAP" in
    80 | 86 | 89 | 90) ;;
    *)
        echo "compute capability $CAP: expected 80, 86, 89 or 90" >&2
        exit 2
        ;;
esac

TOOLKIT="$PWD/.cuda"
CU="$TOOLKIT/nvidia/cu13"
if [ ! -x "$CU/bin/nvcc" ] || [ ! -x "$CU/nvvm/bin/cicc" ]; then
    echo "installing the CUDA 13.0 compiler and libraries from PyPI into .cuda/" >&2
    python3 -m pip install --quiet --target "$TOOLKIT" \
        "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*" \
        "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cublas==13.0.*" \
        "nvidia-curand" "nvidia-cuda-nvrtc==13.0.*"
fi
if [ ! -x "$CU/bin/nvcc" ]; then
    echo "no nvcc in $CU/bin after the install: see the pip output above" >&2
    exit 1
fi

# Unversioned names for the linker.
for lib in libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
    if [ ! -e "$CU/lib/$lib" ]; then
        echo "$CU/lib/$lib is missing: remove .cuda/ and run again" >&2
        exit 1
    fi
    ln -sf "$lib" "$CU/lib/${lib%.*}"
done

# The driver stub, from the cudarc version that Cargo.lock pins.
CUDARC="$(cargo metadata --format-version 1 --features cuda |
    python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
BINDINGS="$(dirname "$CUDARC")/src/driver/sys/mod.rs"
if [ ! -f "$BINDINGS" ]; then
    echo "cudarc's driver bindings are not at $BINDINGS" >&2
    exit 1
fi
mkdir -p "$CU/lib/stubs"
grep -oE '\bfn cu[A-Za-z0-9_]+' "$BINDINGS" | awk '{print $2}' | sort -u |
    sed 's/.*/void &(void) {}/' >"$CU/lib/stubs/libcuda-stub.c"
STUBS=$(wc -l <"$CU/lib/stubs/libcuda-stub.c")
if [ "$STUBS" -lt 100 ]; then
    echo "found only $STUBS driver functions in $BINDINGS: its layout changed" >&2
    exit 1
fi
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CU/lib/stubs/libcuda.so" "$CU/lib/stubs/libcuda-stub.c"
# The name the binary asks for, so that it also runs on the CPU here with the stub on LD_LIBRARY_PATH.
ln -sf libcuda.so "$CU/lib/stubs/libcuda.so.1"
echo "driver stub: $STUBS entry points" >&2

export PATH="$CU/bin:$PATH" CUDA_HOME="$CU" CUDA_PATH="$CU" CUDA_ROOT="$CU" CUDA_COMPUTE_CAP="$CAP"
export LIBRARY_PATH="$CU/lib:$CU/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
cargo build --release --features cuda --bin lablens
echo "built ${CARGO_TARGET_DIR:-target}/release/lablens with CUDA for compute capability $CAP" >&2
if $TESTS; then
    cargo test --release --features cuda --no-run --lib --test smollm2_parity --message-format json |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])'
fi
