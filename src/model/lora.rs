//! LoRA settings and adapters: which linear layers carry one, how they are initialised (A
//! Kaiming-uniform, B zero, as PEFT does), and scale alpha / r.

use super::linear::LoraWeights;
use super::llama::Llama;
use crate::data::rng::SeededRng;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

pub const ALL_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
pub fn attach(model: &mut Llama, cfg: &LoraConfig, seed: u64) -> Result<Vec<(String, Var)>> {
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
        });
    }
    Ok(vars)
}

/// Switches every adapter on or off (base versus tuned outputs).
pub fn set_enabled(model: &mut Llama, enabled: bool) {
    for (_, layer) in model.linears_mut() {
        layer.lora_enabled = enabled;
    }
}
