//! The project's one optimizer, for LoRA fine-tuning and for pretraining alike: AdamW exactly as
//! `torch.optim.AdamW` computes it (decoupled weight decay, bias correction), gradient clipping
//! as `clip_grad_norm_`, the learning-rate schedule, and the optimizer state as named tensors for
//! checkpoints.

use super::config::{ScheduleKind, TrainConfig};
use candle_core::{Result, Tensor, Var};
use std::collections::HashMap;

#[cfg(feature = "cuda")]
use crate::model::nn::device_ops;

/// A learning-rate schedule over `total` steps: linear warm-up from zero to `peak` over
/// `warmup` steps, then constant, or a linear or cosine decay from `peak` to `floor`; the steps
/// count from 1 and decay as transformers' schedules do.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
    pub floor: f64,
}

impl Schedule {
    /// The schedule of a fine-tuning run of `total` steps: decaying to zero.
    pub fn of(cfg: &TrainConfig, total: usize) -> Schedule {
        Schedule {
            kind: cfg.schedule,
            peak: cfg.lr,
            warmup: cfg.warmup_steps,
            total,
            floor: 0.0,
        }
    }

    /// The rate of step `step`.
    pub fn rate(&self, step: usize) -> f64 {
        if step <= self.warmup {
            return self.peak * step as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup - 1) as f64 / span).clamp(0.0, 1.0);
        let range = self.peak - self.floor;
        match self.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Linear => self.floor + range * (1.0 - progress),
            ScheduleKind::Cosine => {
                self.floor + range * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Scales the gradients so that their global L2 norm (over every tensor of `grads`) is at most
/// `max_norm` (0: no limit), as `torch.nn.utils.clip_grad_norm_` does; returns the norm before
/// clipping. The squares are summed in f64 where the gradients live, and read back once each.
pub fn clip_gradients(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let mut total = 0.0;
    for g in grads.iter() {
        total += g
            .to_dtype(candle_core::DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && coef < 1.0 {
        for g in grads.iter_mut() {
            *g = (&*g * coef)?;
        }
    }
    Ok(norm)
}

/// AdamW's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamSettings {
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamSettings {
    /// Those of a fine-tuning run.
    pub fn of(cfg: &TrainConfig) -> AdamSettings {
        AdamSettings {
            betas: cfg.betas,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        }
    }
}

/// AdamW over every adapter matrix at once: the moments, the gradients and the update live in one
/// flat vector (the parameters in order, each flattened), so that a step is a dozen whole-vector
/// ops instead of a dozen per matrix (on a GPU each op is a kernel launch, and an adapter on
/// every layer has hundreds of matrices). On a GPU the flattening and the step are one kernel
/// each, which read and write the matrices through a table of their addresses.
pub struct AdamW {
    params: Vec<(String, Var)>,
    /// Where each parameter sits in the flat vectors: `(start, len)`.
    spans: Vec<(usize, usize)>,
    m: Tensor,
    v: Tensor,
    /// Steps taken, for the bias correction.
    steps: usize,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, settings: AdamSettings) -> Result<AdamW> {
        let mut spans = Vec::with_capacity(params.len());
        let mut total = 0;
        for (_, p) in &params {
            spans.push((total, p.elem_count()));
            total += p.elem_count();
        }
        let device = params
            .first()
            .map(|(_, p)| p.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let zeros = Tensor::zeros(total, candle_core::DType::F32, &device)?;
        Ok(AdamW {
            m: zeros.clone(),
            v: zeros,
            spans,
            params,
            steps: 0,
            betas: settings.betas,
            eps: settings.eps,
            weight_decay: settings.weight_decay,
        })
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// `tensors` (one per parameter, in order, each of its parameter's size) as one flat f32
    /// vector.
    pub fn flatten(&self, tensors: &[Tensor]) -> Result<Tensor> {
        if tensors.len() != self.params.len() {
            candle_core::bail!(
                "{} tensors for {} parameters",
                tensors.len(),
                self.params.len()
            );
        }
        let flat: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.flatten_all()?.to_dtype(candle_core::DType::F32))
            .collect::<Result<_>>()?;
        Tensor::cat(&flat, 0)
    }

    /// The flat gradient of every parameter from a backward pass (zeros where one got none).
    pub fn gradients(&self, store: &candle_core::backprop::GradStore) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if self.m.device().is_cuda() {
            let grads: Vec<Option<&Tensor>> = self
                .params
                .iter()
                .map(|(_, p)| store.get(p.as_tensor()))
                .collect();
            return device_ops::cuda::flatten_parts(&grads, &self.spans, &self.m);
        }
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| match store.get(p.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => p.as_tensor().zeros_like(),
            })
            .collect::<Result<_>>()?;
        self.flatten(&grads)
    }

    /// The flat vector's part for parameter `i`, in the parameter's shape.
    fn part(&self, flat: &Tensor, i: usize) -> Result<Tensor> {
        let (start, len) = self.spans[i];
        flat.narrow(0, start, len)?
            .reshape(self.params[i].1.shape())
    }

    /// One update with the flat gradient `grads` (see [`AdamW::gradients`]) at rate `lr`.
    pub fn step(&mut self, grads: &Tensor, lr: f64) -> Result<()> {
        self.steps += 1;
        let (b1, b2) = self.betas;
        let c1 = 1.0 - b1.powi(self.steps as i32);
        let c2 = 1.0 - b2.powi(self.steps as i32);
        #[cfg(feature = "cuda")]
        if self.m.device().is_cuda() {
            let params: Vec<&Tensor> = self.params.iter().map(|(_, p)| p.as_tensor()).collect();
            let step = device_ops::cuda::AdamStep {
                b1: b1 as f32,
                b2: b2 as f32,
                eps: self.eps as f32,
                decay: (1.0 - lr * self.weight_decay) as f32,
                step_size: (lr / c1) as f32,
                sqrt_c2: c2.sqrt() as f32,
            };
            let moments = (&self.m, &self.v);
            (self.m, self.v) =
                device_ops::cuda::adamw_parts(&params, &self.spans, grads, moments, step)?;
            return Ok(());
        }
        let params: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.as_tensor().clone())
            .collect();
        let decayed = (self.flatten(&params)? * (1.0 - lr * self.weight_decay))?;
        self.m = ((&self.m * b1)? + (grads * (1.0 - b1))?)?;
        self.v = ((&self.v * b2)? + (grads.sqr()? * (1.0 - b2))?)?;
        let denom = ((self.v.sqrt()? / c2.sqrt())? + self.eps)?;
        let updated = (decayed - ((&self.m / denom)? * (lr / c1))?)?;
        for (i, (_, p)) in self.params.iter().enumerate() {
            p.set(&self.part(&updated, i)?.to_dtype(p.dtype())?)?;
        }
        Ok(())
    }

    /// The moments and the step count, by name, for a checkpoint.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.params.len() + 1);
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("{name}.exp_avg"), self.part(&self.m, i)?));
            out.push((format!("{name}.exp_avg_sq"), self.part(&self.v, i)?));
        }
        out.push((
            "steps".into(),
            Tensor::new(&[self.steps as u32], self.m.device())?,
        ));
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
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for (name, p) in &self.params {
            m.push(get(format!("{name}.exp_avg"), p.as_tensor())?);
            v.push(get(format!("{name}.exp_avg_sq"), p.as_tensor())?);
        }
        self.m = self.flatten(&m)?;
        self.v = self.flatten(&v)?;
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
        let rates: Vec<f64> = (1..=6).map(|s| Schedule::of(&cfg, 6).rate(s)).collect();
        assert_eq!(rates, [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]);
        let cos = TrainConfig {
            schedule: ScheduleKind::Cosine,
            ..cfg.clone()
        };
        assert!((Schedule::of(&cos, 6).rate(5) - 0.5).abs() < 1e-12);
        let constant = TrainConfig {
            schedule: ScheduleKind::Constant,
            ..cfg
        };
        assert_eq!(Schedule::of(&constant, 6).rate(6), 1.0);
        // Pretraining's: warm-up, then cosine decay to a tenth of the peak, held after the end.
        let pretraining = Schedule {
            kind: ScheduleKind::Cosine,
            peak: 1.0,
            warmup: 10,
            total: 110,
            floor: 0.1,
        };
        assert!((pretraining.rate(5) - 0.5).abs() < 1e-12);
        assert!((pretraining.rate(10) - 1.0).abs() < 1e-12);
        assert!((pretraining.rate(61) - 0.55).abs() < 1e-12);
        assert!((pretraining.rate(111) - 0.1).abs() < 1e-12);
        assert!((pretraining.rate(500) - 0.1).abs() < 1e-12);
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
        let mut opt = AdamW::new(vec![("p".into(), p.clone())], AdamSettings::of(&cfg))?;
        let g = opt.flatten(&[Tensor::new(&[0.5f32, 0.25], &Device::Cpu)?])?;
        opt.step(&g, 0.1)?;
        let got = p.as_tensor().to_vec1::<f32>()?;
        let want = [1.0 * 0.95 - 0.1, -2.0 * 0.95 - 0.1];
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
            "{got:?}"
        );
        // A second optimizer restored from the first's state takes the same next step.
        let q = Var::new(&got[..], &Device::Cpu)?;
        let mut restored = AdamW::new(vec![("p".into(), q.clone())], AdamSettings::of(&cfg))?;
        restored.load_state(&opt.state()?.into_iter().collect())?;
        let g = Tensor::new(&[-0.1f32, 0.3], &Device::Cpu)?;
        opt.step(&g, 0.1)?;
        restored.step(&g, 0.1)?;
        assert_eq!(
            p.as_tensor().to_vec1::<f32>()?,
            q.as_tensor().to_vec1::<f32>()?
        );
        Ok(())
    }

    /// `LABLENS_TEST_DEVICE` (a GPU there: its one-launch flatten and step), the CPU when unset.
    fn test_device() -> Device {
        let choice = std::env::var("LABLENS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
        crate::model::loading::DeviceChoice::parse(&choice)
            .and_then(|c| c.device())
            .unwrap_or_else(|e| panic!("LABLENS_TEST_DEVICE={choice}: {e}"))
    }

    /// Two steps over matrices of several shapes, one of which gets no gradient, agree with the
    /// CPU's: parameters and moments.
    #[test]
    fn steps_on_the_test_device_match_the_cpu() -> Result<()> {
        let cfg = TrainConfig {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
            ..TrainConfig::default()
        };
        let shapes: [&[usize]; 4] = [&[3, 5], &[7], &[2, 2, 2], &[300, 17]];
        let run = |device: &Device| -> Result<Vec<Vec<f32>>> {
            let params: Vec<(String, Var)> = shapes
                .iter()
                .enumerate()
                .map(|(i, shape)| {
                    let n: usize = shape.iter().product();
                    let values: Vec<f32> = (0..n)
                        .map(|j| ((i * 31 + j * 7) % 23) as f32 / 23.0 - 0.5)
                        .collect();
                    Ok((
                        format!("p{i}"),
                        Var::from_tensor(&Tensor::from_vec(values, *shape, device)?)?,
                    ))
                })
                .collect::<Result<_>>()?;
            let mut opt = AdamW::new(params.clone(), AdamSettings::of(&cfg))?;
            for step in 1..=2 {
                // No gradient for p1: it only decays.
                let loss = ((params[0].1.as_tensor().sqr()?.sum_all()? * step as f64)?
                    + params[2].1.as_tensor().powf(3.0)?.sum_all()?
                    + params[3].1.as_tensor().sin()?.sum_all()?)?;
                let grads = opt.gradients(&loss.backward()?)?;
                opt.step(&grads, 0.05)?;
            }
            let mut out: Vec<Vec<f32>> = params
                .iter()
                .map(|(_, p)| p.as_tensor().flatten_all()?.to_vec1::<f32>())
                .collect::<Result<_>>()?;
            for (_, t) in opt.state()? {
                if t.dtype() == candle_core::DType::F32 {
                    out.push(t.flatten_all()?.to_vec1::<f32>()?);
                }
            }
            Ok(out)
        };
        let (got, want) = (run(&test_device())?, run(&Device::Cpu)?);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            let worst = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "differs by {worst}");
        }
        assert!(got[1].iter().zip(&want[1]).all(|(a, b)| a == b));
        Ok(())
    }

    #[test]
    fn clipping_scales_to_the_limit_and_reports_the_norm_before() -> Result<()> {
        let mut grads = [Tensor::new(&[3f32, 0.0, 4.0], &Device::Cpu)?];
        let norm = clip_gradients(&mut grads, 1.0)?;
        assert!((norm - 5.0).abs() < 1e-9);
        let after = grads[0].to_vec1::<f32>()?[0];
        assert!((after - 0.6).abs() < 1e-6, "{after}");
        let mut unclipped = [Tensor::new(&[0.3f32], &Device::Cpu)?];
        clip_gradients(&mut unclipped, 1.0)?;
        assert_eq!(unclipped[0].to_vec1::<f32>()?, [0.3]);
        // The norm is global over every tensor given, and all of them scale by it.
        let mut two = [
            Tensor::new(&[3f32], &Device::Cpu)?,
            Tensor::new(&[4f32], &Device::Cpu)?,
        ];
        assert!((clip_gradients(&mut two, 1.0)? - 5.0).abs() < 1e-9);
        assert!((two[1].to_vec1::<f32>()?[0] - 0.8).abs() < 1e-6);
        Ok(())
    }
}
