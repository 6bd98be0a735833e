//! What the NVIDIA GPUs of this machine are, as the CUDA driver reports them: name, memory,
//! compute capability, the driver's versions, and the memory in use now. A build without the
//! `cuda` feature reports that it has none.

use serde::Serialize;

/// One GPU as the driver sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GpuFacts {
    pub index: usize,
    pub name: String,
    pub memory_total_mib: f64,
    pub memory_free_mib: f64,
    /// `(major, minor)`: 9.0 is an H100/H200, 8.0 an A100, 8.6 an RTX 30xx, 8.9 an RTX 40xx.
    pub compute_capability: (i32, i32),
}

impl GpuFacts {
    /// bf16 kernels need compute capability 8.0 (Ampere) or newer.
    pub fn has_bf16(&self) -> bool {
        self.compute_capability.0 >= 8
    }

    /// One line for a person: `NVIDIA H100 80GB HBM3, 81,559 MiB (80,971 free), compute 9.0`.
    pub fn summary(&self) -> String {
        format!(
            "{}, {} MiB ({} free), compute capability {}.{}",
            self.name,
            thousands(self.memory_total_mib),
            thousands(self.memory_free_mib),
            self.compute_capability.0,
            self.compute_capability.1
        )
    }
}

/// `81559.4` → `81,559`.
pub fn thousands(mib: f64) -> String {
    let digits = format!("{:.0}", mib.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What this build and this machine offer for running on a GPU.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SystemFacts {
    /// Built with the `cuda` feature.
    pub cuda_build: bool,
    /// The compute capability the build's kernels were compiled for (`CUDA_COMPUTE_CAP`).
    pub built_for: Option<String>,
    /// The NVIDIA kernel driver's version (`/proc/driver/nvidia/version`), e.g. `580.159.04`.
    pub driver_version: Option<String>,
    /// The newest CUDA version the driver supports, e.g. `13.0`.
    pub driver_cuda: Option<String>,
    pub gpus: Vec<GpuFacts>,
    /// Why the driver could not be asked, when it could not.
    pub error: Option<String>,
}

/// The compute capability the kernels were built for, as `scripts/build-cuda.sh` set it.
pub const BUILT_FOR: Option<&str> = option_env!("CUDA_COMPUTE_CAP");

/// Asks the driver; never fails (what could not be read is `None` or named in `error`).
pub fn probe() -> SystemFacts {
    let mut facts = SystemFacts {
        cuda_build: cfg!(feature = "cuda"),
        built_for: BUILT_FOR
            .filter(|_| cfg!(feature = "cuda"))
            .map(String::from),
        driver_version: kernel_driver_version(),
        driver_cuda: None,
        gpus: Vec::new(),
        error: None,
    };
    if let Err(e) = driver::fill(&mut facts) {
        facts.error = Some(e);
    }
    facts
}

/// The NVIDIA kernel module's version, from the line `NVRM version: ... Kernel Module  580.159.04 ...`.
fn kernel_driver_version() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    parse_driver_version(&text)
}

fn parse_driver_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version"))?;
    line.split_whitespace()
        .find(|w| w.split('.').count() >= 2 && w.split('.').all(|p| p.parse::<u32>().is_ok()))
        .map(String::from)
}

/// Makes a freshly opened GPU cheaper to run ops on: candle queues every op of a thread on one
/// stream, so the two events cudarc creates with every buffer (for syncing several streams)
/// are never waited on; they are switched off, which saves driver calls on every tensor.
pub fn prepare(device: &candle_core::Device) {
    driver::prepare(device);
}

/// `(used, total)` MiB of GPU `index` now (all processes), `None` without CUDA or a GPU.
pub fn memory_in_use(index: usize) -> Option<(f64, f64)> {
    driver::memory(index)
}

#[cfg(feature = "cuda")]
mod driver {
    use super::{GpuFacts, SystemFacts};
    use candle_core::cuda_backend::cudarc::driver::{CudaContext, result, sys};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    const MIB: f64 = 1024.0 * 1024.0;

    /// Contexts kept once opened: releasing a device's last hold on its primary context
    /// destroys it, and the next query would create it again (a tenth of a second).
    fn context(index: usize) -> Option<Arc<CudaContext>> {
        static OPEN: OnceLock<Mutex<HashMap<usize, Arc<CudaContext>>>> = OnceLock::new();
        let mut open = OPEN.get_or_init(Default::default).lock().ok()?;
        if let Some(c) = open.get(&index) {
            return Some(c.clone());
        }
        let c = CudaContext::new(index).ok()?;
        open.insert(index, c.clone());
        Some(c)
    }

    pub fn fill(facts: &mut SystemFacts) -> Result<(), String> {
        result::init().map_err(|e| format!("the CUDA driver did not start: {e}"))?;
        let mut version = 0;
        // SAFETY: cuDriverGetVersion writes one int; the driver is initialised.
        let status = unsafe { sys::cuDriverGetVersion(&mut version) };
        if status == sys::CUresult::CUDA_SUCCESS {
            facts.driver_cuda = Some(format!("{}.{}", version / 1000, (version % 1000) / 10));
        }
        let count = result::device::get_count().map_err(|e| format!("no GPU found: {e}"))?;
        for index in 0..count.max(0) as usize {
            let ctx = context(index).ok_or_else(|| format!("GPU {index} could not be opened"))?;
            let name = ctx.name().map_err(|e| e.to_string())?;
            let (free, total) = ctx.mem_get_info().map_err(|e| e.to_string())?;
            let compute_capability = ctx.compute_capability().map_err(|e| e.to_string())?;
            facts.gpus.push(GpuFacts {
                index,
                name,
                memory_total_mib: total as f64 / MIB,
                memory_free_mib: free as f64 / MIB,
                compute_capability,
            });
        }
        Ok(())
    }

    pub fn memory(index: usize) -> Option<(f64, f64)> {
        let (free, total) = context(index)?.mem_get_info().ok()?;
        Some(((total - free) as f64 / MIB, total as f64 / MIB))
    }

    pub fn prepare(device: &candle_core::Device) {
        if let Ok(d) = device.as_cuda_device() {
            // SAFETY: the events only synchronize several streams of one context; candle uses
            // one stream per thread and creates no other (cudarc counts none), so no event
            // tracked until now was ever waited on, and none is needed from now on.
            unsafe { d.cuda_stream().context().disable_event_tracking() };
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod driver {
    use super::SystemFacts;

    pub fn fill(_: &mut SystemFacts) -> Result<(), String> {
        Err("this build has no CUDA support".into())
    }

    pub fn memory(_: usize) -> Option<(f64, f64)> {
        None
    }

    pub fn prepare(_: &candle_core::Device) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_version_is_read_from_the_kernel_module_line() {
        let text = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22-I3-AF03-09-1)  Thu Oct  2 19:01:09 UTC 2025\nGCC version:  gcc version 12.3.0\n";
        assert_eq!(parse_driver_version(text).as_deref(), Some("580.159.04"));
        assert_eq!(parse_driver_version("GCC version: 12.3.0"), None);
    }

    #[test]
    fn memory_reads_with_thousands_separators() {
        assert_eq!(thousands(81559.4), "81,559");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        let gpu = GpuFacts {
            index: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            memory_total_mib: 81559.0,
            memory_free_mib: 80971.0,
            compute_capability: (9, 0),
        };
        assert_eq!(
            gpu.summary(),
            "NVIDIA H100 80GB HBM3, 81,559 MiB (80,971 free), compute capability 9.0"
        );
        assert!(gpu.has_bf16());
    }

    /// With `LABLENS_TEST_DEVICE=cuda:N`, GPU N's memory in use is read (the status line's).
    #[test]
    fn memory_in_use_is_read_on_the_test_gpu() {
        let choice = std::env::var("LABLENS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
        match choice.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(index) => {
                let (used, total) = memory_in_use(index).expect("memory of the test GPU");
                assert!(used > 0.0 && used < total, "{used} of {total} MiB");
            }
            None => assert_eq!(memory_in_use(0).is_some(), cfg!(feature = "cuda")),
        }
    }

    #[test]
    fn a_build_without_cuda_says_so() {
        let facts = probe();
        assert_eq!(facts.cuda_build, cfg!(feature = "cuda"));
        if !facts.cuda_build {
            assert!(facts.gpus.is_empty());
            assert_eq!(facts.built_for, None);
            assert!(facts.error.unwrap().contains("no CUDA support"));
        }
    }
}
