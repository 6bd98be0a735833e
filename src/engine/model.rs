//! The model the engine holds: loading it on the engine thread and describing it as plain data,
//! so that front ends can show it without touching candle.

use super::{Event, JobContext};
use crate::job::JobError;
use crate::model::gpu::{self, GpuFacts};
use crate::model::loading::{self, DeviceChoice, LoadedModel, ModelSpec, is_gguf};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a loaded model's weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSourceKind {
    /// The tiny model that ships with the program.
    Embedded,
    /// A Hugging Face folder (`config.json`, safetensors, `tokenizer.json`).
    HfFolder,
    /// A GGUF file whose weights stay quantized and frozen.
    GgufQuantized,
    /// A GGUF file loaded as f32.
    GgufDequantized,
}

impl ModelSourceKind {
    pub fn label(self) -> &'static str {
        match self {
            ModelSourceKind::Embedded => "embedded",
            ModelSourceKind::HfFolder => "Hugging Face folder",
            ModelSourceKind::GgufQuantized => "GGUF, quantized",
            ModelSourceKind::GgufDequantized => "GGUF, dequantized",
        }
    }
}

/// A loaded model as the front ends show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The folder or file name without its extension (`tiny-clinical`).
    pub name: String,
    /// The folder or file the model was read from.
    pub path: PathBuf,
    pub source: ModelSourceKind,
    /// The family in lower case: `llama`, `mistral`, `qwen2`.
    pub architecture: String,
    /// Parameters of the base model, adapters not counted.
    pub parameters: usize,
    pub layers: usize,
    pub hidden_size: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab_size: usize,
    /// The longest sequence the loaded model covers.
    pub context: usize,
    /// How the linear layers are stored: `f32`, or `Q4_1 (frozen)` for quantized weights.
    pub quantization: String,
    pub device: String,
    /// What the activations are computed in: `f32` or `bf16`.
    pub dtype: String,
    pub load_time: Duration,
    /// The model brought its own chat template (else a built-in one is used).
    pub chat_template_found: bool,
    /// The GPU the model is on, as the driver described it when the model loaded.
    pub gpu: Option<LoadedOnGpu>,
}

/// The GPU a model loaded on, and the driver that runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedOnGpu {
    pub facts: GpuFacts,
    /// `580.159.04 (CUDA 13.0)`.
    pub driver: String,
}

impl LoadedOnGpu {
    /// The GPU `device` names (`cuda:N`), if it is one the driver lists.
    fn of(device: &str) -> Option<LoadedOnGpu> {
        let index: usize = device.strip_prefix("cuda:")?.parse().ok()?;
        let system = gpu::probe();
        let facts = system.gpus.into_iter().find(|g| g.index == index)?;
        let unknown = || "unknown".to_string();
        Some(LoadedOnGpu {
            facts,
            driver: format!(
                "{} (CUDA {})",
                system.driver_version.unwrap_or_else(unknown),
                system.driver_cuda.unwrap_or_else(unknown)
            ),
        })
    }
}

/// The devices a model can be loaded on in this build: every GPU the driver lists when the
/// build has CUDA (the first one if the driver could not be asked), none otherwise.
pub fn device_choices() -> Vec<DeviceChoice> {
    let mut choices = vec![DeviceChoice::Auto, DeviceChoice::Cpu];
    if candle_core::utils::cuda_is_available() {
        let gpus = gpu::probe().gpus;
        if gpus.is_empty() {
            choices.push(DeviceChoice::Cuda(0));
        }
        choices.extend(gpus.iter().map(|g| DeviceChoice::Cuda(g.index)));
    }
    choices
}

/// Loads `spec` and installs it in `slot`; on failure the model already there stays.
pub(super) fn load_model(
    ctx: &JobContext,
    slot: &mut Option<LoadedModel>,
    spec: &ModelSpec,
) -> Result<Event, JobError> {
    ctx.check()?;
    ctx.progress("reading weights", 0, 1);
    let started = Instant::now();
    let model = loading::load(spec).map_err(|e| JobError::Model(e.to_string()))?;
    let info = describe(&model, spec, started.elapsed());
    ctx.progress("ready", 1, 1);
    *slot = Some(model);
    Ok(Event::ModelLoaded { job: ctx.job, info })
}

fn describe(model: &LoadedModel, spec: &ModelSpec, load_time: Duration) -> ModelInfo {
    let cfg = &model.llama.cfg;
    let path = model.info.path.clone();
    ModelInfo {
        name: path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
        source: source_kind(&path, spec.dequantize),
        architecture: family(&model.info.architecture),
        parameters: model.info.parameters,
        layers: model.info.layers,
        hidden_size: model.info.hidden_size,
        heads: cfg.num_attention_heads,
        kv_heads: cfg.kv_heads(),
        vocab_size: model.info.vocab_size,
        context: model.info.context,
        quantization: quantization(model),
        device: model.info.device.clone(),
        dtype: model.info.dtype.clone(),
        load_time,
        chat_template_found: !model.template.is_built_in(),
        gpu: LoadedOnGpu::of(&model.info.device),
        path,
    }
}

fn source_kind(path: &Path, dequantize: bool) -> ModelSourceKind {
    match (is_gguf(path), dequantize) {
        (true, false) => ModelSourceKind::GgufQuantized,
        (true, true) => ModelSourceKind::GgufDequantized,
        (false, _) if path == loading::tiny_model_folder() => ModelSourceKind::Embedded,
        (false, _) => ModelSourceKind::HfFolder,
    }
}

/// `LlamaForCausalLM` → `llama`.
fn family(architecture: &str) -> String {
    architecture
        .strip_suffix("ForCausalLM")
        .unwrap_or(architecture)
        .to_lowercase()
}

/// The storage formats of the linear layers, the one holding the most weights first; quantized
/// weights are marked frozen because only adapters train over them.
fn quantization(model: &LoadedModel) -> String {
    let mut weights_by_format: BTreeMap<String, usize> = BTreeMap::new();
    for (_, layer) in model.llama.linears() {
        let (out, inp) = layer.base.dims().unwrap_or((0, 0));
        *weights_by_format.entry(layer.base.format()).or_default() += out * inp;
    }
    let mut formats: Vec<(String, usize)> = weights_by_format.into_iter().collect();
    formats.sort_by_key(|(_, weights)| std::cmp::Reverse(*weights));
    let names: Vec<&str> = formats.iter().map(|(f, _)| f.as_str()).collect();
    let dense = names.iter().all(|f| matches!(*f, "f32" | "f16" | "bf16"));
    if dense {
        names.join(" + ")
    } else {
        format!("{} (frozen)", names.join(" + "))
    }
}
