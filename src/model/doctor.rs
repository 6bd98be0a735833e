//! `lablens doctor`: whether this build and this machine can run a model on the GPU, and if
//! not, why, in words a user can act on. It reads the driver's facts, multiplies in bf16, and
//! runs a short forward and backward pass of a model on the device and on the CPU.

use super::adapters::{LoraConfig, attach};
use super::gpu::{self, SystemFacts};
use super::llama::Llama;
use super::loading::{DeviceChoice, ModelSpec, Precision, load};
use crate::model::nn::Path;
use candle_core::{DType, Device, Tensor, Var};
use serde::Serialize;
use std::time::Instant;

/// One check: its name, whether it passed, what was measured, and what to do if it failed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub advice: Option<String>,
}

/// Everything `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub facts: SystemFacts,
    pub device: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// The text both devices score: a discharge sentence, long enough to cross every layer.
const PROBE_TEXT: &str = "Discharge summary: the patient was admitted with community-acquired \
pneumonia, treated with intravenous ceftriaxone and azithromycin, and discharged on oral \
amoxicillin 500 mg three times daily for five days. Follow up with the primary care physician \
in one week; return if fever, shortness of breath or chest pain come back.";

/// How far the device's loss and gradients may be from the CPU's f32: bf16 keeps 8 bits of
/// mantissa, and its rounding grows through the layers.
fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-3,
        _ => 5e-2,
    }
}

/// Runs every check on `choice` (auto: the first GPU) with the model `model` in `precision`.
pub fn examine(choice: &DeviceChoice, model: &std::path::Path, precision: Precision) -> Report {
    let facts = gpu::probe();
    let mut checks = vec![build_check(&facts)];
    let target = match choice {
        DeviceChoice::Auto if !facts.gpus.is_empty() => DeviceChoice::Cuda(0),
        DeviceChoice::Auto => DeviceChoice::Cpu,
        other => other.clone(),
    };
    checks.extend(driver_checks(&facts, &target));
    let opened = Instant::now();
    match target.device() {
        Err(e) => checks.push(failed("open the device", e.to_string(), &facts)),
        Ok(device) => {
            checks.push(Check {
                name: "open the device".into(),
                ok: true,
                detail: format!("{target} opened in {:.2} s", opened.elapsed().as_secs_f64()),
                advice: None,
            });
            if device.is_cuda() {
                checks.push(bf16_check(&device, &facts));
            }
            checks.push(model_check(&device, model, precision, &facts));
        }
    }
    Report {
        facts,
        device: target.to_string(),
        checks,
    }
}

fn build_check(facts: &SystemFacts) -> Check {
    if facts.cuda_build {
        let cap = facts.built_for.as_deref().unwrap_or("unknown");
        return Check {
            name: "CUDA build".into(),
            ok: true,
            detail: format!("built with CUDA, kernels for compute capability {cap}"),
            advice: None,
        };
    }
    Check {
        name: "CUDA build".into(),
        ok: true,
        detail: "this build runs on the CPU only".into(),
        advice: Some(
            "to use an NVIDIA GPU, build with scripts/build-cuda.sh (cargo feature `cuda`)".into(),
        ),
    }
}

/// The driver answered, has a GPU at the index asked for, supports CUDA 13.0, and the GPU can
/// run the kernels this build carries.
fn driver_checks(facts: &SystemFacts, target: &DeviceChoice) -> Vec<Check> {
    let DeviceChoice::Cuda(index) = *target else {
        return Vec::new();
    };
    if !facts.cuda_build {
        return vec![Check {
            name: "GPU".into(),
            ok: false,
            detail: format!("cuda:{index} asked for, but this build has no CUDA support"),
            advice: Some("build with scripts/build-cuda.sh, or use --device cpu".into()),
        }];
    }
    let mut checks = Vec::new();
    let driver = match (&facts.driver_version, &facts.driver_cuda) {
        (Some(v), Some(c)) => format!("NVIDIA driver {v}, CUDA {c}"),
        (None, Some(c)) => format!("CUDA driver for CUDA {c}"),
        _ => facts
            .error
            .clone()
            .unwrap_or_else(|| "no driver found".into()),
    };
    let new_enough = facts
        .driver_cuda
        .as_deref()
        .and_then(|c| c.split('.').next()?.parse::<u32>().ok())
        .is_some_and(|major| major >= 13);
    checks.push(Check {
        name: "driver".into(),
        ok: new_enough,
        detail: driver,
        advice: (!new_enough).then(|| {
            "this build's kernels need a driver for CUDA 13.0 or newer (NVIDIA 580 or newer): update the driver".into()
        }),
    });
    let Some(gpu) = facts.gpus.iter().find(|g| g.index == index) else {
        checks.push(Check {
            name: "GPU".into(),
            ok: false,
            detail: format!(
                "no cuda:{index}: the driver sees {} GPU(s)",
                facts.gpus.len()
            ),
            advice: Some("run nvidia-smi to list the GPUs, and pass one of their indices".into()),
        });
        return checks;
    };
    let runs_kernels = facts
        .built_for
        .as_deref()
        .and_then(|b| b.parse::<i32>().ok())
        .is_none_or(|b| gpu.compute_capability.0 * 10 + gpu.compute_capability.1 >= b);
    checks.push(Check {
        name: "GPU".into(),
        ok: runs_kernels,
        detail: format!("cuda:{index}: {}", gpu.summary()),
        advice: (!runs_kernels).then(|| {
            format!(
                "the kernels were built for compute capability {}; build for this GPU with scripts/build-cuda.sh {}{}",
                facts.built_for.as_deref().unwrap_or("?"),
                gpu.compute_capability.0,
                gpu.compute_capability.1
            )
        }),
    });
    checks
}

/// A bf16 product on the device against f32 on the CPU.
fn bf16_check(device: &Device, facts: &SystemFacts) -> Check {
    let run = || -> candle_core::Result<f64> {
        let a = Tensor::arange(0f32, 64.0 * 48.0, &Device::Cpu)?
            .reshape((64, 48))?
            .affine(1.0 / 1500.0, -1.0)?
            .sin()?;
        let b = a.t()?.contiguous()?.cos()?;
        let want = a.matmul(&b)?;
        let got = a
            .to_device(device)?
            .to_dtype(DType::BF16)?
            .matmul(&b.to_device(device)?.to_dtype(DType::BF16)?)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?;
        relative(&got, &want)
    };
    match run() {
        Ok(err) if err < 2e-2 => Check {
            name: "bf16".into(),
            ok: true,
            detail: format!("a bf16 product is within {err:.1e} of f32 on the CPU"),
            advice: None,
        },
        Ok(err) => Check {
            name: "bf16".into(),
            ok: false,
            detail: format!("a bf16 product is {err:.1e} from f32 on the CPU"),
            advice: Some("use --dtype f32 on this GPU".into()),
        },
        Err(e) => failed("bf16", e.to_string(), facts),
    }
}

/// `max |got − want| / max |want|`.
fn relative(got: &Tensor, want: &Tensor) -> candle_core::Result<f64> {
    let scale = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let diff = (got - want)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    Ok(f64::from(diff) / f64::from(scale.max(1e-12)))
}

/// What a forward and backward pass gives on one device: the loss, the norm of every
/// adapter's gradient, and the time of the first and of a second pass.
struct Pass {
    loss: f64,
    grad_norms: Vec<f64>,
    first_s: f64,
    second_s: f64,
}

fn pass_on(
    device: DeviceChoice,
    model: &std::path::Path,
    precision: Precision,
) -> Result<(Pass, String), String> {
    let spec = ModelSpec {
        device,
        precision,
        max_len: 512,
        ..ModelSpec::new(model)
    };
    let mut loaded = load(&spec).map_err(|e| e.to_string())?;
    let dtype = loaded.info.dtype.clone();
    let ids = loaded
        .tokenizer
        .encode(PROBE_TEXT, true)
        .map_err(|e| e.to_string())?;
    let vars = attach(&mut loaded.llama, &LoraConfig::default(), 7).map_err(|e| e.to_string())?;
    let once = |llama: &Llama| -> candle_core::Result<(f64, Vec<f64>)> {
        let (loss, grads) = loss_and_grads(llama, &ids, &vars)?;
        Ok((loss, grads))
    };
    let started = Instant::now();
    let (loss, grad_norms) = once(&loaded.llama).map_err(|e| e.to_string())?;
    let first_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    once(&loaded.llama).map_err(|e| e.to_string())?;
    let second_s = started.elapsed().as_secs_f64();
    Ok((
        Pass {
            loss,
            grad_norms,
            first_s,
            second_s,
        },
        dtype,
    ))
}

/// Mean next-token loss over `ids` on the training path, and the norm of each adapter
/// variable's gradient.
fn loss_and_grads(
    llama: &Llama,
    ids: &[u32],
    vars: &[(String, Var)],
) -> candle_core::Result<(f64, Vec<f64>)> {
    let device = llama.device();
    let n = ids.len();
    let input = Tensor::new(&ids[..n - 1], device)?.unsqueeze(0)?;
    let targets = Tensor::new(&ids[1..], device)?;
    let hidden = llama.hidden(&input, 0, None, Path::Train)?.squeeze(0)?;
    let logits = llama.logits(&hidden, Path::Train)?;
    let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
    let grads = loss.backward()?;
    let norms = vars
        .iter()
        .map(|(_, v)| match grads.get(v.as_tensor()) {
            Some(g) => Ok(f64::from(
                g.to_dtype(DType::F32)?
                    .sqr()?
                    .sum_all()?
                    .sqrt()?
                    .to_scalar::<f32>()?,
            )),
            None => Ok(0.0),
        })
        .collect::<candle_core::Result<_>>()?;
    Ok((f64::from(loss.to_scalar::<f32>()?), norms))
}

/// The model's loss and adapter gradients on `device` against f32 on the CPU.
fn model_check(
    device: &Device,
    model: &std::path::Path,
    precision: Precision,
    facts: &SystemFacts,
) -> Check {
    let choice = match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => DeviceChoice::Cuda(gpu_id),
        _ => DeviceChoice::Cpu,
    };
    let name = format!("forward and backward of {}", model.display());
    let (ours, dtype) = match pass_on(choice.clone(), model, precision) {
        Ok(p) => p,
        Err(e) => return failed(&name, e, facts),
    };
    let (cpu, _) = match pass_on(DeviceChoice::Cpu, model, Precision::F32) {
        Ok(p) => p,
        Err(e) => return failed(&name, format!("on the CPU: {e}"), facts),
    };
    let loss_gap = (ours.loss - cpu.loss).abs() / cpu.loss.abs().max(1e-12);
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let grad_gap = ours
        .grad_norms
        .iter()
        .zip(&cpu.grad_norms)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / cpu.grad_norms.iter().fold(1e-12_f64, |m, v| m.max(*v));
    let tol = tolerance(if dtype == "f32" {
        DType::F32
    } else {
        DType::BF16
    });
    let ok = loss_gap <= tol && grad_gap <= tol && ours.loss.is_finite();
    let detail = format!(
        "{choice} in {dtype}: loss {:.4} (CPU f32 {:.4}, {:.1e} apart), adapter gradients {:.1e} apart \
(norm {:.3e}); first pass {:.2} s, second {:.3} s",
        ours.loss,
        cpu.loss,
        loss_gap,
        grad_gap,
        norm(&ours.grad_norms),
        ours.first_s,
        ours.second_s
    );
    Check {
        name,
        ok,
        detail,
        advice: (!ok).then(|| {
            format!(
                "the device's numbers are further from the CPU's than {dtype} rounding explains ({tol:.0e}): try --dtype f32, and report this with the output of `lablens doctor --json`"
            )
        }),
    }
}

/// A check that failed with `error`, with advice for the failures users meet.
fn failed(name: &str, error: String, facts: &SystemFacts) -> Check {
    Check {
        name: name.into(),
        ok: false,
        advice: Some(diagnose(&error, facts)),
        detail: error,
    }
}

/// Plain words for a CUDA failure.
pub fn diagnose(error: &str, facts: &SystemFacts) -> String {
    let has = |s: &str| error.contains(s);
    if has("UNSUPPORTED_PTX_VERSION") {
        format!(
            "this build's GPU kernels come from a newer CUDA than the driver supports{}: update the NVIDIA driver (580 or newer for CUDA 13.0), or build with the CUDA version of your driver",
            facts
                .driver_cuda
                .as_deref()
                .map(|c| format!(" (the driver supports CUDA {c})"))
                .unwrap_or_default()
        )
    } else if has("OUT_OF_MEMORY") || has("out of memory") {
        "the GPU ran out of memory: close other programs that use it (nvidia-smi lists them), or use a smaller model, --dtype bf16, a shorter max_seq_len or a smaller micro_batch".into()
    } else if has("NO_BINARY_FOR_GPU") || has("INVALID_PTX") || has("NOT_FOUND") {
        format!(
            "the kernels were built for another GPU generation (compute capability {}): build for this one with scripts/build-cuda.sh CAP",
            facts.built_for.as_deref().unwrap_or("unknown")
        )
    } else if has("NO_DEVICE") || has("INVALID_DEVICE") {
        "no usable NVIDIA GPU at that index: run nvidia-smi to list them".into()
    } else if has("no CUDA support") {
        "this build runs on the CPU only: build with scripts/build-cuda.sh to use the GPU".into()
    } else if has("NOT_INITIALIZED") || has("driver") {
        "the NVIDIA driver did not answer: check that it is installed and loaded (nvidia-smi)"
            .into()
    } else {
        "run `lablens doctor --json` and include its output when you report this".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> SystemFacts {
        SystemFacts {
            cuda_build: true,
            built_for: Some("90".into()),
            driver_version: Some("560.35.03".into()),
            driver_cuda: Some("12.6".into()),
            gpus: vec![gpu::GpuFacts {
                index: 0,
                name: "NVIDIA GeForce RTX 4080".into(),
                memory_total_mib: 16376.0,
                memory_free_mib: 15000.0,
                compute_capability: (8, 9),
            }],
            error: None,
        }
    }

    #[test]
    fn the_usual_failures_get_plain_advice() {
        let f = facts();
        let ptx = diagnose("DriverError(CUDA_ERROR_UNSUPPORTED_PTX_VERSION, \"x\")", &f);
        assert!(
            ptx.contains("newer CUDA than the driver") && ptx.contains("12.6"),
            "{ptx}"
        );
        let oom = diagnose("CUDA_ERROR_OUT_OF_MEMORY", &f);
        assert!(oom.contains("ran out of memory"), "{oom}");
        let cpu = diagnose("--device cuda:0: this build has no CUDA support", &f);
        assert!(cpu.contains("scripts/build-cuda.sh"), "{cpu}");
        let arch = diagnose("CUDA_ERROR_NO_BINARY_FOR_GPU", &f);
        assert!(arch.contains("compute capability 90"), "{arch}");
    }

    #[test]
    fn an_old_driver_and_an_older_gpu_than_the_kernels_fail_with_advice() {
        let checks = driver_checks(&facts(), &DeviceChoice::Cuda(0));
        let driver = &checks[0];
        assert!(!driver.ok && driver.advice.as_ref().unwrap().contains("CUDA 13.0"));
        let gpu = &checks[1];
        assert!(!gpu.ok, "{gpu:?}");
        assert!(gpu.advice.as_ref().unwrap().contains("build-cuda.sh 89"));
        let missing = driver_checks(&facts(), &DeviceChoice::Cuda(3));
        assert!(missing[1].detail.contains("no cuda:3"));
    }

    /// On the CPU the check still runs the model both ways (f32 against f32: the same numbers).
    #[test]
    fn the_embedded_model_passes_on_the_cpu() {
        let report = examine(
            &DeviceChoice::Cpu,
            std::path::Path::new(crate::model::loading::TINY),
            Precision::F32,
        );
        assert!(report.ok(), "{:#?}", report.checks);
        let model = report.checks.last().unwrap();
        assert!(
            model.detail.starts_with("cpu in f32: loss"),
            "{}",
            model.detail
        );
    }

    /// bf16 on the CPU runs the GPU's code path: its loss is near the f32 one, not equal.
    #[test]
    fn bf16_on_the_cpu_is_within_bf16_rounding() {
        let report = examine(
            &DeviceChoice::Cpu,
            std::path::Path::new(crate::model::loading::TINY),
            Precision::Bf16,
        );
        assert!(report.ok(), "{:#?}", report.checks);
        assert!(report.checks.last().unwrap().detail.contains("in bf16"));
    }
}
