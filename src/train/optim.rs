//! AdamW over the LoRA matrices exactly as `torch.optim.AdamW` computes it (decoupled weight
//! decay, bias correction), gradient clipping as `clip_grad_norm_`, the learning-rate schedule,
//! and the optimizer state as named tensors for checkpoints.

use super::config::{ScheduleKind, TrainConfig};
use candle_core::{Result, Tensor, Var};
use std::collections::HashMap;

/// The learning rate of step `step` (1-based) out of `total`: linear warm-up from zero, then
/// constant, linear decay or cosine decay towards zero.
pub fn learning_rate(cfg: &TrainConfig, step: usize, total: usize) -> f64 {
    let warmup = cfg.warmup_steps;
    if step <= warmup {
        return cfg.lr * step as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup - 1) as f64 / span).clamp(0.0, 1.0);
    match cfg.schedule {
        ScheduleKind::Constant => cfg.lr,
        ScheduleKind::Linear => cfg.lr * (1.0 - progress),
        ScheduleKind::Cosine => cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

/// Scales the gradients so that their global L2 norm is at most `max_norm` (0: no limit), as
/// `torch.nn.utils.clip_grad_norm_` does; returns the norm before clipping.
pub fn clip_gradients(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    // Summed where the gradients live: one read back per step, not one per matrix (on a GPU
    // each read waits for the device).
    let mut total: Option<Tensor> = None;
    for g in grads.iter() {
        let square = g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?;
        total = Some(match total {
            Some(t) => (t + square)?,
            None => square,
        });
    }
    let total = total.map_or(Ok(0.0), |t| t.to_scalar::<f64>())?;
    let norm = total.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && coef < 1.0 {
        for g in grads.iter_mut() {
            *g = (&*g * coef)?;
        }
    }
    Ok(norm)
}

pub struct AdamW {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken, for the bias correction.
    steps: usize,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, cfg: &TrainConfig) -> Result<AdamW> {
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        Ok(AdamW {
            m: params
                .iter()
                .map(|(_, p)| zeros(p))
                .collect::<Result<_>>()?,
            v: params
                .iter()
                .map(|(_, p)| zeros(p))
                .collect::<Result<_>>()?,
            params,
            steps: 0,
            betas: cfg.betas,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        })
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One update with `grads` (in the order of the parameters) at rate `lr`.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<()> {
        self.steps += 1;
        let (b1, b2) = self.betas;
        let c1 = 1.0 - b1.powi(self.steps as i32);
        let c2 = 1.0 - b2.powi(self.steps as i32);
        for (i, ((_, p), g)) in self.params.iter().zip(grads).enumerate() {
            let decayed = (p.as_tensor() * (1.0 - lr * self.weight_decay))?;
            self.m[i] = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((self.v[i].sqrt()? / c2.sqrt())? + self.eps)?;
            let update = ((&self.m[i] / denom)? * (lr / c1))?;
            p.set(&(decayed - update)?)?;
        }
        Ok(())
    }

    /// The moments and the step count, by name, for a checkpoint.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.params.len() + 1);
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("{name}.exp_avg"), self.m[i].clone()));
            out.push((format!("{name}.exp_avg_sq"), self.v[i].clone()));
        }
        let device = self
            .m
            .first()
            .map(Tensor::device)
            .cloned()
            .unwrap_or(candle_core::Device::Cpu);
        out.push(("steps".into(), Tensor::new(&[self.steps as u32], &device)?));
        Ok(out)
    }

    /// Restores what [`AdamW::state`] saved; every moment must be there with its shape.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let get = |key: String, like: &Tensor| -> Result<Tensor> {
            let t = state
                .get(&key)
                .ok_or_else(|| candle_core::Error::Msg(format!("optimizer state lacks {key}")))?;
            if t.dims() != like.dims() {
                candle_core::bail!(
                    "optimizer state {key} has shape {:?}, expected {:?}",
                    t.dims(),
                    like.dims()
                );
            }
            t.to_device(like.device())
        };
        for (i, (name, p)) in self.params.iter().enumerate() {
            self.m[i] = get(format!("{name}.exp_avg"), p.as_tensor())?;
            self.v[i] = get(format!("{name}.exp_avg_sq"), p.as_tensor())?;
        }
        let steps = state
            .get("steps")
            .ok_or_else(|| candle_core::Error::Msg("optimizer state lacks steps".into()))?;
        self.steps = steps.to_vec1::<u32>()?.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedules_warm_up_then_decay() {
        let cfg = TrainConfig {
            lr: 1.0,
            warmup_steps: 2,
            schedule: ScheduleKind::Linear,
            ..TrainConfig::default()
        };
        let rates: Vec<f64> = (1..=6).map(|s| learning_rate(&cfg, s, 6)).collect();
        assert_eq!(rates, [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]);
        let cos = TrainConfig {
            schedule: ScheduleKind::Cosine,
            ..cfg.clone()
        };
        assert!((learning_rate(&cos, 5, 6) - 0.5).abs() < 1e-12);
        let constant = TrainConfig {
            schedule: ScheduleKind::Constant,
            ..cfg
        };
        assert_eq!(learning_rate(&constant, 6, 6), 1.0);
    }

    #[test]
    fn adamw_matches_torch_on_a_hand_computed_step() -> Result<()> {
        // torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5) with
        // p = [1, -2], grad = [0.5, 0.25]: the first step moves each weight by lr (the
        // bias-corrected m / sqrt(v) is the sign of the gradient) after decaying it by lr · wd.
        let cfg = TrainConfig {
            betas: (0.9, 0.99),
            eps: 1e-8,
            weight_decay: 0.5,
            ..TrainConfig::default()
        };
        let p = Var::new(&[1f32, -2.0], &Device::Cpu)?;
        let mut opt = AdamW::new(vec![("p".into(), p.clone())], &cfg)?;
        opt.step(&[Tensor::new(&[0.5f32, 0.25], &Device::Cpu)?], 0.1)?;
        let got = p.as_tensor().to_vec1::<f32>()?;
        let want = [1.0 * 0.95 - 0.1, -2.0 * 0.95 - 0.1];
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
            "{got:?}"
        );
        // A second optimizer restored from the first's state takes the same next step.
        let q = Var::new(&got[..], &Device::Cpu)?;
        let mut restored = AdamW::new(vec![("p".into(), q.clone())], &cfg)?;
        restored.load_state(&opt.state()?.into_iter().collect())?;
        let g = Tensor::new(&[-0.1f32, 0.3], &Device::Cpu)?;
        opt.step(std::slice::from_ref(&g), 0.1)?;
        restored.step(&[g], 0.1)?;
        assert_eq!(
            p.as_tensor().to_vec1::<f32>()?,
            q.as_tensor().to_vec1::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn clipping_scales_to_the_limit_and_reports_the_norm_before() -> Result<()> {
        let mut grads = vec![
            Tensor::new(&[3f32, 0.0], &Device::Cpu)?,
            Tensor::new(&[4f32], &Device::Cpu)?,
        ];
        let norm = clip_gradients(&mut grads, 1.0)?;
        assert!((norm - 5.0).abs() < 1e-9);
        let after = grads[0].to_vec1::<f32>()?[0];
        assert!((after - 0.6).abs() < 1e-6, "{after}");
        let mut unclipped = vec![Tensor::new(&[0.3f32], &Device::Cpu)?];
        clip_gradients(&mut unclipped, 1.0)?;
        assert_eq!(unclipped[0].to_vec1::<f32>()?, [0.3]);
        Ok(())
    }
}
