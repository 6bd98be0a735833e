//! With the `cuda` feature, compiles the project's CUDA kernels (the training path's
//! src/model/nn/device_ops/train_kernels.cu and tile_products.cu, and the decoder's
//! src/model/decode/gpu_kernels.cu) to PTX for `CUDA_COMPUTE_CAP` (90 unless set) with the nvcc of `CUDA_HOME` (or the one on PATH);
//! scripts/build-cuda.sh sets both. For 90, tile_products_sm90.cu is also compiled for Hopper's
//! own instructions (`sm_90a`, which only Hopper GPUs load); for other capabilities its PTX file
//! is empty. The CPU build compiles nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Each kernel source and the PTX file it becomes in `OUT_DIR`.
const KERNELS: [(&str, &str); 3] = [
    (
        "src/model/nn/device_ops/train_kernels.cu",
        "train_kernels.ptx",
    ),
    (
        "src/model/nn/device_ops/tile_products.cu",
        "tile_products.ptx",
    ),
    ("src/model/decode/gpu_kernels.cu", "decode_kernels.ptx"),
];
/// Kernels for Hopper alone (`sm_90a`), and the PTX file each becomes.
const HOPPER_KERNELS: [(&str, &str); 1] = [(
    "src/model/nn/device_ops/tile_products_sm90.cu",
    "tile_products_sm90.ptx",
)];
const HEADERS: [&str; 2] = [
    "src/model/nn/device_ops/common.cuh",
    "src/model/nn/device_ops/tile_blocks.cuh",
];

fn main() {
    for source in HEADERS {
        println!("cargo::rerun-if-changed={source}");
    }
    for (source, _) in KERNELS.iter().chain(&HOPPER_KERNELS) {
        println!("cargo::rerun-if-changed={source}");
    }
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = std::env::var_os("CUDA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("nvcc"))
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (source, ptx) in KERNELS {
        compile(&nvcc, &format!("sm_{cap}"), source, &out_dir.join(ptx));
    }
    for (source, ptx) in HOPPER_KERNELS {
        if cap == "90" {
            compile(&nvcc, "sm_90a", source, &out_dir.join(ptx));
        } else {
            std::fs::write(out_dir.join(ptx), "").expect("OUT_DIR is writable");
        }
    }
}

/// `nvcc --ptx` of `source` for `arch` into `ptx`.
fn compile(nvcc: &Path, arch: &str, source: &str, ptx: &Path) {
    let status = Command::new(nvcc)
        .args(["--ptx", "-O3", &format!("-arch={arch}"), "-o"])
        .arg(ptx)
        .arg(source)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "{}: cannot run ({e}); build with scripts/build-cuda.sh",
                nvcc.display()
            )
        });
    assert!(
        status.success(),
        "{} failed on {source} ({status})",
        nvcc.display()
    );
}
