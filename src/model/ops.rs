//! Fused CPU ops with their own backward, for the training path: where candle would build the
//! result from several ops, each keeping its output for the backward pass, these keep one.

use candle_core::{CpuStorage, CustomOp1, D, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `softmax(scale · x + causal mask)` over the last dimension of attention scores
/// `[.., rows, keys]`, where row `r` is the query at position `offset + r % queries` (query
/// heads grouped under their key/value head repeat the queries) and sees keys up to it.
pub struct CausalSoftmax {
    pub scale: f64,
    pub queries: usize,
    pub offset: usize,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("causal-softmax needs f32 input");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("causal-softmax needs contiguous input");
        };
        let keys = layout.dims().last().copied().unwrap_or(0);
        if keys == 0 || self.queries == 0 || self.offset + self.queries > keys {
            candle_core::bail!(
                "causal-softmax: {} queries after {} cached positions do not fit {keys} keys",
                self.queries,
                self.offset
            );
        }
        let scale = self.scale as f32;
        let mut out = vec![0f32; end - start];
        out.par_chunks_mut(keys)
            .zip(data[start..end].par_chunks(keys))
            .enumerate()
            .for_each(|(row, (o, x))| {
                let visible = self.offset + row % self.queries + 1;
                let max = x[..visible]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, v| m.max(v * scale));
                let mut sum = 0f32;
                for (o, v) in o[..visible].iter_mut().zip(x) {
                    *o = (v * scale - max).exp();
                    sum += *o;
                }
                o[..visible].iter_mut().for_each(|v| *v /= sum);
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // d/dx of softmax(s·x): s · p ⊙ (g − Σ g ⊙ p); masked entries have p = 0.
        let dot = (grad * res)?.sum_keepdim(D::Minus1)?;
        let dx = (grad.broadcast_sub(&dot)? * res)?;
        (dx * self.scale).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The unfused computation: scale, additive causal mask, softmax.
    fn reference(x: &Tensor, op: &CausalSoftmax) -> Result<Tensor> {
        let (rows, keys) = x.dims2()?;
        let mask: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let visible = op.offset + r % op.queries + 1;
                (0..keys).map(move |j| if j < visible { 0.0 } else { f32::NEG_INFINITY })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (rows, keys), x.device())?;
        candle_nn::ops::softmax(&(x * op.scale)?.add(&mask)?, D::Minus1)
    }

    #[test]
    fn forward_and_gradient_match_the_unfused_ops() -> Result<()> {
        let dev = Device::Cpu;
        let op = || CausalSoftmax {
            scale: 0.35,
            queries: 3,
            offset: 2,
        };
        // Two query groups of 3 rows, 5 keys (2 cached + 3 new).
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (6, 5), &dev)?)?;
        let w = Tensor::randn(0f32, 1.0, (6, 5), &dev)?;
        let fused = x.as_tensor().apply_op1(op())?;
        let unfused = reference(x.as_tensor(), &op())?;
        let diff = (&fused - &unfused)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "forward differs by {diff}");
        assert_eq!(fused.to_vec2::<f32>()?[0][3..], [0.0, 0.0]);
        let g_fused = (fused * &w)?.sum_all()?.backward()?;
        let g_unfused = (unfused * &w)?.sum_all()?.backward()?;
        let (a, b) = (
            g_fused.get(x.as_tensor()).expect("fused gradient"),
            g_unfused.get(x.as_tensor()).expect("unfused gradient"),
        );
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "gradient differs by {diff}");
        Ok(())
    }
}
