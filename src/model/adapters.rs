//! LoRA settings and adapters: which linear layers carry one, how they are initialised (A
//! Kaiming-uniform, B zero, as PEFT does), and scale alpha / r.

use super::llama::Llama;
use super::nn::dropout::DropoutRounds;
use super::nn::linear::LoraWeights;
use super::nn::weight::BaseWeight;
use crate::data::rng::SeededRng;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const ALL_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// A partial block in a config file takes the defaults for the fields it leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 32.0,
            dropout: 0.0,
            target_modules: ALL_TARGETS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.r as f64
    }

    /// Whether the module at `path` (e.g. `model.layers.3.self_attn.q_proj`) is targeted.
    pub fn targets(&self, path: &str) -> bool {
        let last = path.rsplit('.').next().unwrap_or(path);
        self.target_modules.iter().any(|t| t == last)
    }
}

/// Attaches fresh adapters to every targeted layer; returns the trainable variables in a fixed
/// order (layer by layer, A before B).
pub fn attach(
    model: &mut Llama,
    cfg: &LoraConfig,
    seed: u64,
) -> candle_core::Result<Vec<(String, Var)>> {
    let mut rng = SeededRng::new(seed);
    let device = model.device().clone();
    let mut vars = Vec::new();
    for (path, layer) in model.linears_mut() {
        if !cfg.targets(&path) {
            continue;
        }
        let (out, inp) = layer.base.dims()?;
        // kaiming_uniform_(a=sqrt(5)) bounds A by 1/sqrt(fan_in).
        let bound = 1.0 / (inp as f64).sqrt();
        let a: Vec<f32> = (0..cfg.r * inp)
            .map(|_| ((rng.f64() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (cfg.r, inp), &device)?)?;
        let b = Var::zeros((out, cfg.r), candle_core::DType::F32, &device)?;
        vars.push((format!("{path}.lora_A.weight"), a.clone()));
        vars.push((format!("{path}.lora_B.weight"), b.clone()));
        layer.lora = Some(LoraWeights {
            a,
            b,
            scale: cfg.scale(),
            dropout: None,
        });
    }
    Ok(vars)
}

/// Gives every adapter of `model` a dropout of probability `p`; with `p` 0, removes it.
pub fn enable_dropout(model: &mut Llama, p: f64) -> DropoutRounds {
    let rounds = DropoutRounds::new();
    for (path, layer) in model.linears_mut() {
        if let Some(lora) = layer.lora.as_mut() {
            lora.dropout = (p > 0.0).then(|| rounds.layer(&path, p as f32));
        }
    }
    rounds
}

/// Takes every adapter off: the base model again.
pub fn remove(model: &mut Llama) {
    for (_, layer) in model.linears_mut() {
        layer.lora = None;
    }
}

/// Every layer's adapter as a model has it (none where it has none), to be put back on the same
/// model with [`Adapters::attach`]: a server switches between adapters it loaded once, without
/// reading their files again.
#[derive(Clone)]
pub struct Adapters(Vec<Option<LoraWeights>>);

impl Adapters {
    pub fn of(model: &Llama) -> Adapters {
        Adapters(
            model
                .linears()
                .into_iter()
                .map(|(_, l)| l.lora.clone())
                .collect(),
        )
    }

    /// Puts these adapters on `model` (the one they were taken from), switched on, in place
    /// of any it has.
    pub fn attach(&self, model: &mut Llama) {
        for ((_, layer), lora) in model.linears_mut().into_iter().zip(&self.0) {
            layer.lora = lora.clone();
            layer.lora_enabled = true;
        }
    }
}

/// Switches every adapter on or off (base versus tuned outputs).
pub fn set_enabled(model: &mut Llama, enabled: bool) {
    for (_, layer) in model.linears_mut() {
        layer.lora_enabled = enabled;
    }
}

/// Folds every enabled adapter into its base weight, `W + scale · B A` (PEFT's `merge_and_unload`),
/// and drops the adapters: the model computes what it computed with them, without the low-rank
/// products. A quantized base is dequantized for it and stays dense, in the model's precision.
/// Adapters that are switched off are left as they are. Returns how many layers were merged.
pub fn merge(model: &mut Llama) -> candle_core::Result<usize> {
    let dtype = model.dtype();
    let mut merged = 0;
    for (_, layer) in model.linears_mut() {
        if !layer.lora_enabled {
            continue;
        }
        let Some(l) = layer.lora.take() else {
            continue;
        };
        let base = layer.base.to_dense(l.a.device())?.to_dtype(DType::F32)?;
        let delta = (l.b.as_tensor().matmul(l.a.as_tensor())? * l.scale)?;
        layer.base = BaseWeight::Dense((base + delta)?.to_dtype(dtype)?);
        merged += 1;
    }
    Ok(merged)
}

/// `adapter_config.json` as PEFT writes and reads it (the fields Lab Lens uses; PEFT fills the
/// rest with its defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeftConfig {
    pub peft_type: String,
    #[serde(default)]
    pub task_type: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    pub target_modules: TargetModules,
    #[serde(default)]
    pub bias: Option<String>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub inference_mode: bool,
    /// Per-module rank and alpha overrides; Lab Lens loads adapters without them.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub rank_pattern: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub alpha_pattern: serde_json::Map<String, serde_json::Value>,
}

/// PEFT accepts a list of module names or one regular expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    Pattern(String),
}

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// PEFT's prefix in front of the base model's own module paths.
const PEFT_PREFIX: &str = "base_model.model.";

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: tensor {key}: {message}")]
    Tensor {
        path: PathBuf,
        key: String,
        message: String,
    },
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> AdapterError {
    AdapterError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl PeftConfig {
    fn from_lora(cfg: &LoraConfig, base: &str) -> PeftConfig {
        PeftConfig {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            r: cfg.r,
            lora_alpha: cfg.alpha,
            lora_dropout: cfg.dropout,
            target_modules: TargetModules::List(cfg.target_modules.clone()),
            bias: Some("none".into()),
            base_model_name_or_path: Some(base.to_string()),
            use_rslora: false,
            use_dora: false,
            fan_in_fan_out: false,
            inference_mode: true,
            rank_pattern: Default::default(),
            alpha_pattern: Default::default(),
        }
    }

    /// The settings as a `LoraConfig` (module names only; PEFT's regex form has none).
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig {
            r: self.r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            target_modules: match &self.target_modules {
                TargetModules::List(l) => l.clone(),
                TargetModules::Pattern(_) => Vec::new(),
            },
        }
    }

    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }
}

/// Writes the model's adapters in the PEFT layout into `dir` (both files atomically).
pub fn save_peft(
    model: &Llama,
    cfg: &LoraConfig,
    base: &str,
    dir: &Path,
) -> Result<(), AdapterError> {
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (path, layer) in model.linears() {
        if let Some(l) = &layer.lora {
            tensors.push((
                format!("{PEFT_PREFIX}{path}.lora_A.weight"),
                l.a.as_tensor().clone(),
            ));
            tensors.push((
                format!("{PEFT_PREFIX}{path}.lora_B.weight"),
                l.b.as_tensor().clone(),
            ));
        }
    }
    if tensors.is_empty() {
        return Err(file_err(dir, "the model has no adapter to save"));
    }
    let weights_path = dir.join(ADAPTER_WEIGHTS);
    let bytes = safetensors_bytes(&tensors).map_err(|e| file_err(&weights_path, e))?;
    crate::store::write_atomic(&weights_path, &bytes).map_err(|e| file_err(&weights_path, e))?;
    let config_path = dir.join(ADAPTER_CONFIG);
    let text = serde_json::to_string_pretty(&PeftConfig::from_lora(cfg, base))
        .map_err(|e| file_err(&config_path, e))?;
    crate::store::write_atomic(&config_path, text.as_bytes()).map_err(|e| file_err(&config_path, e))
}

pub(crate) fn safetensors_bytes(
    tensors: &[(String, Tensor)],
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let views: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    safetensors::tensor::serialize(views, None)
}

/// Loads a PEFT adapter from `dir` onto `model`, replacing any adapter it had; returns the
/// trainable variables (so a loaded adapter can be trained further) and the adapter's config.
pub fn load_peft(
    model: &mut Llama,
    dir: &Path,
) -> Result<(PeftConfig, Vec<(String, Var)>), AdapterError> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&config_path).map_err(|e| file_err(&config_path, e))?;
    let cfg: PeftConfig = serde_json::from_str(&text)
        .map_err(|e| file_err(&config_path, format!("line {}: {e}", e.line())))?;
    if cfg.peft_type != "LORA" {
        return Err(file_err(
            &config_path,
            format!("peft_type {:?} is not LORA", cfg.peft_type),
        ));
    }
    if cfg.use_dora || cfg.fan_in_fan_out {
        return Err(file_err(
            &config_path,
            "DoRA and fan_in_fan_out adapters are not supported",
        ));
    }
    let weights_path = dir.join(ADAPTER_WEIGHTS);
    let device = model.device().clone();
    let mut tensors = candle_core::safetensors::load(&weights_path, &device).map_err(|e| {
        file_err(
            &weights_path,
            format!("not a readable safetensors file: {e}"),
        )
    })?;
    let scale = cfg.scale();
    let mut vars = Vec::new();
    for (path, layer) in model.linears_mut() {
        layer.lora = None;
        let key_a = format!("{PEFT_PREFIX}{path}.lora_A.weight");
        let key_b = format!("{PEFT_PREFIX}{path}.lora_B.weight");
        let (Some(a), Some(b)) = (tensors.remove(&key_a), tensors.remove(&key_b)) else {
            continue;
        };
        let (out, inp) = layer.base.dims().map_err(|e| file_err(&weights_path, e))?;
        let tensor_err = |key: &str, message: String| AdapterError::Tensor {
            path: weights_path.clone(),
            key: key.to_string(),
            message,
        };
        if a.dims() != [cfg.r, inp] {
            return Err(tensor_err(
                &key_a,
                format!("shape {:?}, the model needs [{}, {inp}]", a.dims(), cfg.r),
            ));
        }
        if b.dims() != [out, cfg.r] {
            return Err(tensor_err(
                &key_b,
                format!("shape {:?}, the model needs [{out}, {}]", b.dims(), cfg.r),
            ));
        }
        let to_var = |t: Tensor, key: &str| {
            t.to_dtype(candle_core::DType::F32)
                .and_then(|t| Var::from_tensor(&t))
                .map_err(|e| tensor_err(key, e.to_string()))
        };
        let (a, b) = (to_var(a, &key_a)?, to_var(b, &key_b)?);
        vars.push((key_a.trim_start_matches(PEFT_PREFIX).to_string(), a.clone()));
        vars.push((key_b.trim_start_matches(PEFT_PREFIX).to_string(), b.clone()));
        layer.lora = Some(LoraWeights {
            a,
            b,
            scale,
            dropout: None,
        });
        layer.lora_enabled = true;
    }
    if let Some(key) = tensors.keys().min() {
        return Err(AdapterError::Tensor {
            path: weights_path,
            key: key.clone(),
            message: "does not match any linear layer of this model".into(),
        });
    }
    if vars.is_empty() {
        return Err(file_err(&weights_path, "holds no LoRA weights"));
    }
    Ok((cfg, vars))
}
