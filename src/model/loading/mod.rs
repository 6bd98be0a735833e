//! Loading a model for use: the decoder, its tokenizer and its chat template, from a Hugging Face
//! folder or a GGUF file, on the device chosen at run time.

pub mod weights;
use crate::model::config::LlamaConfig;
use crate::model::llama::Llama;
use crate::model::loading::weights::{
    GgufSource, MemorySource, TensorSource, WeightsError, build_llama,
};
use crate::model::tokenizer::Tokenizer;
use crate::model::tokenizer::chat::ChatTemplate;
use candle_core::{DType, Device};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where to run: `auto` picks a GPU when the build has CUDA and one is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    pub fn parse(text: &str) -> Result<DeviceChoice, ModelError> {
        match text.trim() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    ModelError::Usage(format!(
                        "--device: expected auto, cpu or cuda:N, got {other:?}"
                    ))
                }),
        }
    }

    /// The device: `auto` is the first GPU when this build has CUDA and it opens, else the CPU.
    pub fn device(&self) -> Result<Device, ModelError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto if candle_core::utils::cuda_is_available() => {
                let device = Device::new_cuda(0).unwrap_or(Device::Cpu);
                crate::model::gpu::prepare(&device);
                Ok(device)
            }
            DeviceChoice::Auto => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) if !candle_core::utils::cuda_is_available() => {
                Err(ModelError::Usage(format!(
                    "--device cuda:{n}: this build has no CUDA support; build one with scripts/build-cuda.sh (cargo feature `cuda`), or use --device cpu"
                )))
            }
            DeviceChoice::Cuda(n) => {
                let device = Device::new_cuda(*n).map_err(|e| {
                    ModelError::Usage(format!(
                        "--device cuda:{n}: the GPU could not be opened ({e}); check that the NVIDIA driver is loaded and the index exists (nvidia-smi), or use --device cpu"
                    ))
                })?;
                crate::model::gpu::prepare(&device);
                Ok(device)
            }
        }
    }
}

/// The numbers the weights and activations are kept in: `auto` is bf16 on a GPU, f32 on the CPU.
/// Adapters train in f32 whatever the model's precision (mixed precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Auto,
    F32,
    Bf16,
}

impl Precision {
    pub fn parse(text: &str) -> Result<Precision, ModelError> {
        match text.trim() {
            "auto" => Ok(Precision::Auto),
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(ModelError::Usage(format!(
                "--dtype: expected auto, f32 or bf16, got {other:?}"
            ))),
        }
    }

    pub fn dtype(self, device: &Device) -> DType {
        match self {
            Precision::Auto if device.is_cuda() => DType::BF16,
            Precision::Auto | Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

/// Spelled as `parse` reads it.
impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// Spelled as `parse` reads it: `auto`, `cpu`, `cuda:N`.
impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The name that stands for the embedded model in a [`ModelSpec`] path.
pub const TINY: &str = "tiny";

/// Where the embedded model lives, relative to the crate or the working directory.
pub const TINY_FOLDER: &str = "assets/models/tiny-clinical";

/// The embedded model's folder: beside the crate's sources when they are there (a build
/// tree), else under the working directory.
pub fn tiny_model_folder() -> PathBuf {
    let beside_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join(TINY_FOLDER);
    if beside_crate.is_dir() {
        beside_crate
    } else {
        PathBuf::from(TINY_FOLDER)
    }
}

/// What to load.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// A Hugging Face folder, a `.gguf` file, or [`TINY`] for the embedded model (unless a file
    /// or folder of that name exists).
    pub path: PathBuf,
    /// Load GGUF weights as f32 instead of keeping them quantized.
    pub dequantize: bool,
    pub device: DeviceChoice,
    pub precision: Precision,
    /// Longest sequence the RoPE tables cover (capped by the model's own context).
    pub max_len: usize,
}

impl ModelSpec {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            dequantize: false,
            device: DeviceChoice::Auto,
            precision: Precision::Auto,
            max_len: 4096,
        }
    }

    /// Whether `other` loads the same weights the same way (the same source, device and
    /// precision, and for a GGUF file the same choice to dequantize); the RoPE tables' length
    /// may differ.
    pub fn same_weights(&self, other: &ModelSpec) -> bool {
        self.path == other.path
            && (self.dequantize == other.dequantize || !is_gguf(&self.path))
            && self.device == other.device
            && self.precision == other.precision
    }
}

/// A `.gguf` file name, the one kind of model source that `dequantize` applies to.
pub fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// A description for the UI and reports.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub architecture: String,
    pub parameters: usize,
    pub layers: usize,
    pub hidden_size: usize,
    pub vocab_size: usize,
    pub context: usize,
    pub weights: String,
    pub device: String,
    /// `f32` or `bf16`: what the activations (and dense weights) are computed in.
    pub dtype: String,
}

pub struct LoadedModel {
    pub llama: Llama,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub info: ModelInfo,
    /// What it was loaded from.
    pub spec: ModelSpec,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{0}")]
    Compute(String),
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Compute(e.to_string())
    }
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Loads the model `spec` names.
pub fn load(spec: &ModelSpec) -> Result<LoadedModel, ModelError> {
    let device = spec.device.device()?;
    let tiny;
    let path = if spec.path.as_os_str() == TINY && !spec.path.exists() {
        tiny = tiny_model_folder();
        &tiny
    } else {
        &spec.path
    };
    if !path.exists() {
        return Err(file_error(path, "no such file or folder"));
    }
    let (llama, tokenizer, template, weights) = if path.is_file() && is_gguf(path) {
        load_gguf(path, spec, &device)?
    } else if path.is_dir() {
        load_hf_folder(path, spec, &device)?
    } else {
        return Err(file_error(
            path,
            "expected a .gguf file or a Hugging Face model folder",
        ));
    };
    let info = describe(path, &llama, weights, &device);
    Ok(LoadedModel {
        llama,
        tokenizer,
        template,
        info,
        spec: spec.clone(),
    })
}

type Parts = (Llama, Tokenizer, ChatTemplate, String);

fn load_gguf(path: &Path, spec: &ModelSpec, device: &Device) -> Result<Parts, ModelError> {
    let (mut src, cfg) = GgufSource::open(path, spec.dequantize)?;
    let tokenizer =
        Tokenizer::from_gguf_metadata(src.metadata(), path).map_err(|e| file_error(path, e))?;
    let template = ChatTemplate::from_gguf_metadata(src.metadata(), path, &tokenizer)
        .map_err(|e| file_error(path, e))?
        .unwrap_or_else(|| ChatTemplate::built_in_for(&tokenizer));
    let llama = build(&mut src, &cfg, spec, device)?;
    let weights = if spec.dequantize {
        "dequantized GGUF"
    } else {
        "quantized GGUF, frozen"
    };
    Ok((llama, tokenizer, template, weights.to_string()))
}

fn load_hf_folder(path: &Path, spec: &ModelSpec, device: &Device) -> Result<Parts, ModelError> {
    let cfg =
        LlamaConfig::from_json_file(&path.join("config.json")).map_err(|e| file_error(path, e))?;
    let tokenizer =
        Tokenizer::from_file(&path.join("tokenizer.json")).map_err(|e| file_error(path, e))?;
    let template = ChatTemplate::from_hf_folder(path, &tokenizer)
        .map_err(|e| file_error(path, e))?
        .unwrap_or_else(|| ChatTemplate::built_in_for(&tokenizer));
    let files = safetensors_files(path)?;
    let mut src = MemorySource::from_safetensors(&files, path)?;
    let llama = build(&mut src, &cfg, spec, device)?;
    Ok((llama, tokenizer, template, "safetensors".to_string()))
}

/// The decoder with RoPE tables as long as the spec asks, within the model's own context.
fn build(
    src: &mut dyn TensorSource,
    cfg: &LlamaConfig,
    spec: &ModelSpec,
    device: &Device,
) -> Result<Llama, ModelError> {
    let max_len = spec.max_len.min(cfg.max_position_embeddings);
    let llama = build_llama(src, cfg, max_len, device)?;
    Ok(llama.to_dtype(spec.precision.dtype(device))?)
}

/// `model.safetensors`, or the shards a `model.safetensors.index.json` lists.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index)
        .map_err(|_| file_error(dir, "no model.safetensors or model.safetensors.index.json"))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_error(&index, e))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| file_error(&index, "no weight_map object"))?;
    let mut files: Vec<PathBuf> = map
        .values()
        .filter_map(|v| v.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

fn describe(path: &Path, llama: &Llama, weights: String, device: &Device) -> ModelInfo {
    let c = &llama.cfg;
    ModelInfo {
        path: path.to_path_buf(),
        architecture: c
            .architectures
            .first()
            .cloned()
            .unwrap_or_else(|| "LlamaForCausalLM".into()),
        parameters: llama.parameter_count(),
        layers: c.num_hidden_layers,
        hidden_size: c.hidden_size,
        vocab_size: c.vocab_size,
        context: llama.rope.max_len(),
        weights,
        device: match device {
            Device::Cpu => "cpu".into(),
            Device::Cuda(_) => match device.location() {
                candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
                other => format!("{other:?}"),
            },
            other => format!("{other:?}"),
        },
        dtype: llama.dtype().as_str().to_string(),
    }
}
