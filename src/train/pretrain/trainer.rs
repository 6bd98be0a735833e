//! Training a decoder from scratch: every weight a seeded variable named as in a Hugging Face
//! checkpoint, the decoder built over those variables, and steps of the project's AdamW with
//! warm-up, cosine decay and gradient clipping on random windows of a token stream.

use crate::data::rng::SeededRng;
use crate::model::config::LlamaConfig;
use crate::model::llama::Llama;
use crate::model::loading::weights::{MemorySource, WeightsError, build_llama};
use crate::model::nn::Path;
use crate::train::optim::{AdamSettings, AdamW, Schedule, clip_gradients};
use candle_core::{DType, Device, Result, Tensor, Var};
use std::collections::HashMap;

/// The size of a decoder to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyShape {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    /// Longest sequence the model is declared for (`max_position_embeddings`).
    pub context: usize,
}

impl Default for TinyShape {
    fn default() -> Self {
        TinyShape {
            hidden: 192,
            layers: 4,
            heads: 6,
            kv_heads: 2,
            intermediate: 512,
            context: 1024,
        }
    }
}

impl TinyShape {
    /// A Llama config of this shape with tied embeddings.
    pub fn config(&self, vocab_size: usize, bos: Option<u32>, eos: Option<u32>) -> LlamaConfig {
        LlamaConfig {
            architectures: vec!["LlamaForCausalLM".into()],
            vocab_size,
            hidden_size: self.hidden,
            intermediate_size: self.intermediate,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: Some(self.kv_heads),
            head_dim: Some(self.hidden / self.heads),
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: self.context,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: bos,
            eos_token_id: eos.map(serde_json::Value::from),
        }
    }
}

/// Every tensor of a tied-embedding checkpoint of `cfg`, by Hugging Face name, with its shape.
pub fn parameter_shapes(cfg: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, hd, kv) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.head_dim(),
        cfg.kv_heads(),
    );
    let q_out = cfg.num_attention_heads * hd;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (name, dims) in [
            ("self_attn.q_proj.weight", vec![q_out, h]),
            ("self_attn.k_proj.weight", vec![kv * hd, h]),
            ("self_attn.v_proj.weight", vec![kv * hd, h]),
            ("self_attn.o_proj.weight", vec![h, q_out]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
        ] {
            out.push((format!("{p}.{name}"), dims));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    out
}

/// Norm weights start at one; matrices are normal with std 0.02, and the projections that
/// write into the residual stream are scaled down by `sqrt(2 · layers)` (GPT-2) so the stream's
/// variance does not grow with depth.
pub fn init_weights(cfg: &LlamaConfig, seed: u64, device: &Device) -> Result<Vec<(String, Var)>> {
    let mut rng = SeededRng::new(seed);
    let residual_std = 0.02 / (2.0 * cfg.num_hidden_layers as f64).sqrt();
    parameter_shapes(cfg)
        .into_iter()
        .map(|(name, dims)| {
            let tensor = if dims.len() == 1 {
                Tensor::ones(dims, DType::F32, device)?
            } else {
                let std = if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
                    residual_std
                } else {
                    0.02
                };
                let n = dims.iter().product();
                let values: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
                Tensor::from_vec(values, dims, device)?
            };
            Ok((name, Var::from_tensor(&tensor)?))
        })
        .collect()
}

/// The decoder over the variables themselves, so gradients of its outputs reach them and
/// optimizer updates show in its next forward pass.
pub fn model_over(
    vars: &[(String, Var)],
    cfg: &LlamaConfig,
    device: &Device,
) -> std::result::Result<Llama, WeightsError> {
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let mut src = MemorySource {
        path: "variables in training".into(),
        tensors,
    };
    build_llama(&mut src, cfg, cfg.max_position_embeddings, device)
}

/// `batch_size` windows of `seq_len + 1` tokens at random offsets of `stream` (shorter when the
/// stream is), as ids `[batch, len]`.
pub fn sample_windows(
    stream: &[u32],
    batch_size: usize,
    seq_len: usize,
    rng: &mut SeededRng,
    device: &Device,
) -> Result<Tensor> {
    let len = (seq_len + 1).min(stream.len());
    let starts = stream.len() - len + 1;
    let mut ids = Vec::with_capacity(batch_size * len);
    for _ in 0..batch_size {
        let s = rng.below(starts);
        ids.extend_from_slice(&stream[s..s + len]);
    }
    Tensor::from_vec(ids, (batch_size, len), device)
}

/// Mean cross-entropy of predicting each token of `windows` `[b, t + 1]` from those before it.
pub fn next_token_loss(model: &Llama, windows: &Tensor) -> Result<Tensor> {
    let (b, len) = windows.dims2()?;
    let t = len - 1;
    let input = windows.narrow(1, 0, t)?;
    let targets = windows.narrow(1, 1, t)?.flatten_all()?;
    let logits = model.logits(&model.hidden(&input, 0, None, Path::Train)?, Path::Train)?;
    candle_nn::loss::cross_entropy(&logits.reshape((b * t, ()))?, &targets)
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    pub grad_norm: f32,
    pub lr: f64,
}

/// The project's AdamW over the variables: weight decay on matrices only (decaying norm gains
/// toward zero would fight the normalisation), gradients clipped to a global norm.
pub struct Trainer {
    decayed: AdamW,
    plain: AdamW,
    schedule: Schedule,
    clip_norm: f64,
}

/// Pretraining's betas: a shorter memory of the squared gradients than fine-tuning's, as for
/// training from scratch.
const BETAS: (f64, f64) = (0.9, 0.95);

impl Trainer {
    pub fn new(
        vars: &[(String, Var)],
        schedule: Schedule,
        weight_decay: f64,
        clip_norm: f64,
    ) -> Result<Trainer> {
        let settings = |weight_decay| AdamSettings {
            betas: BETAS,
            eps: 1e-8,
            weight_decay,
        };
        let (matrices, gains): (Vec<_>, Vec<_>) =
            vars.iter().cloned().partition(|(_, v)| v.rank() > 1);
        Ok(Trainer {
            decayed: AdamW::new(matrices, settings(weight_decay))?,
            plain: AdamW::new(gains, settings(0.0))?,
            schedule,
            clip_norm,
        })
    }

    /// One optimizer step (1-based `step`) on the loss of `windows`.
    pub fn step(&mut self, model: &Llama, windows: &Tensor, step: usize) -> Result<StepStats> {
        let loss = next_token_loss(model, windows)?;
        let store = loss.backward()?;
        let mut grads = [
            self.decayed.gradients(&store)?,
            self.plain.gradients(&store)?,
        ];
        let grad_norm = clip_gradients(&mut grads, self.clip_norm)? as f32;
        let lr = self.schedule.rate(step);
        self.decayed.step(&grads[0], lr)?;
        self.plain.step(&grads[1], lr)?;
        Ok(StepStats {
            loss: loss.to_scalar::<f32>()?,
            grad_norm,
            lr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::ScheduleKind;

    fn small() -> LlamaConfig {
        TinyShape {
            hidden: 32,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 64,
            context: 64,
        }
        .config(50, Some(0), Some(2))
    }

    #[test]
    fn gradients_reach_every_weight_of_the_model_over_the_variables() -> Result<()> {
        let cfg = small();
        let vars = init_weights(&cfg, 1, &Device::Cpu)?;
        assert_eq!(vars.len(), 2 + 9 * cfg.num_hidden_layers);
        let model = model_over(&vars, &cfg, &Device::Cpu).map_err(candle_core::Error::wrap)?;
        assert_eq!(
            model.parameter_count(),
            vars.iter().map(|(_, v)| v.elem_count()).sum::<usize>()
        );
        let windows = sample_windows(
            &(0..200).map(|i| (i * 7 % 50) as u32).collect::<Vec<_>>(),
            3,
            16,
            &mut SeededRng::new(2),
            &Device::Cpu,
        )?;
        assert_eq!(windows.dims2()?, (3, 17));
        let grads = next_token_loss(&model, &windows)?.backward()?;
        crate::model::llama::tests::assert_every_var_has_a_gradient(&grads, &vars)
    }

    #[test]
    fn one_step_lowers_the_loss_on_its_batch() -> Result<()> {
        let cfg = small();
        let vars = init_weights(&cfg, 3, &Device::Cpu)?;
        let model = model_over(&vars, &cfg, &Device::Cpu).map_err(candle_core::Error::wrap)?;
        let stream: Vec<u32> = (0..64).map(|i| (i % 10) as u32 + 5).collect();
        let windows = sample_windows(&stream, 4, 32, &mut SeededRng::new(4), &Device::Cpu)?;
        let schedule = Schedule {
            kind: ScheduleKind::Cosine,
            peak: 1e-2,
            warmup: 0,
            total: 10,
            floor: 1e-3,
        };
        let mut trainer = Trainer::new(&vars, schedule, 0.01, 1.0)?;
        let before = trainer.step(&model, &windows, 1)?;
        let after = next_token_loss(&model, &windows)?.to_scalar::<f32>()?;
        // An untrained model is close to uniform over the vocabulary.
        assert!((before.loss - (50f32).ln()).abs() < 0.1, "{}", before.loss);
        assert!(after < before.loss - 0.05, "{} -> {after}", before.loss);
        assert!(before.grad_norm > 0.0);
        Ok(())
    }
}
