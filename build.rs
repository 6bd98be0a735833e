//! With the `cuda` feature, compiles the project's CUDA kernels (the training path's
//! src/model/nn/device_ops/train_kernels.cu and tile_products.cu, and the decoder's
//! src/model/decode/gpu_kernels.cu) to PTX for `CUDA_COMPUTE_CAP` (90 unless set) with the nvcc of `CUDA_HOME` (or the one on PATH);
//! scripts/build-cuda.sh sets both. The CPU build compiles nothing.

use std::path::PathBuf;
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
const HEADER: &str = "src/model/nn/device_ops/common.cuh";

fn main() {
    println!("cargo::rerun-if-changed={HEADER}");
    for (source, _) in KERNELS {
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
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", &format!("-arch=sm_{cap}"), "-o"])
            .arg(out_dir.join(ptx))
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
}
