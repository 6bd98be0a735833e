//! Fused CPU ops with their own backward, for the training path: where candle would build the
//! result from several ops, each keeping its output for the backward pass, these keep one.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, D, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// A CPU op's contiguous f32 input as a tensor of its own (a copy, outside the graph).
fn input_tensor(storage: &CpuStorage, layout: &Layout, op: &str) -> Result<Tensor> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} needs f32 input");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} needs contiguous input");
    };
    Tensor::from_slice(&data[start..end], layout.dims(), &Device::Cpu)
}

fn output_storage(y: &Tensor) -> Result<(CpuStorage, Shape)> {
    Ok((
        CpuStorage::F32(y.flatten_all()?.to_vec1()?),
        y.shape().clone(),
    ))
}

/// `[.., k] x [n, k]^T → [.., n]` as one 2-D product.
fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let k = dims.last().copied().unwrap_or(0);
    let mut out_dims = dims.to_vec();
    if let Some(last) = out_dims.last_mut() {
        *last = w.dim(0)?;
    }
    x.reshape(((), k))?.matmul(&w.t()?)?.reshape(out_dims)
}

/// `x W^T` for a frozen `W` `[out, in]`, whose backward computes the input's gradient only:
/// candle's matmul would also compute the weight's, a product as large as the forward one,
/// and keep it until the backward pass ends.
pub struct FrozenMatmul {
    pub w: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        output_storage(&matmul_t(
            &input_tensor(storage, layout, self.name())?,
            &self.w,
        )?)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // dL/dx = dL/dy · W: the same product against W^T.
        matmul_t(grad, &self.w.t()?.contiguous()?).map(Some)
    }
}

/// `x W^T + scale · (x A^T) B^T` for a frozen `W` and a LoRA pair A `[r, in]`, B `[out, r]`:
/// one output kept instead of four output-sized tensors, and no gradient for `W`.
pub struct LoraMatmul {
    pub w: Tensor,
    pub scale: f64,
}

impl CustomOp3 for LoraMatmul {
    fn name(&self) -> &'static str {
        "lora-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = input_tensor(s1, l1, self.name())?;
        let a = input_tensor(s2, l2, self.name())?;
        let b = input_tensor(s3, l3, self.name())?;
        let low = (matmul_t(&x, &a)? * self.scale)?;
        output_storage(&(matmul_t(&x, &self.w)? + matmul_t(&low, &b)?)?)
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Detached, so that the gradients carry no graph that would keep these alive.
        let (x, a, b) = (x.detach(), a.detach(), b.detach());
        let (a, b) = (&a, &b);
        let x2 = x.reshape(((), x.dim(D::Minus1)?))?;
        let g2 = grad.detach().reshape(((), grad.dim(D::Minus1)?))?;
        let gb = g2.matmul(b)?;
        let dx = (g2.matmul(&self.w)? + (gb.matmul(a)? * self.scale)?)?.reshape(x.dims())?;
        let da = (gb.t()?.matmul(&x2)? * self.scale)?;
        let db = (g2.t()?.matmul(&x2.matmul(&a.t()?)?)? * self.scale)?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}

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
        let (grad, res) = (&grad.detach(), &res.detach());
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

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    #[test]
    fn lora_matmul_matches_the_unfused_ops_and_their_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 6), &dev)?)?;
        let a = Var::from_tensor(&Tensor::randn(0f32, 0.5, (2, 6), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, (5, 2), &dev)?)?;
        let w = Tensor::randn(0f32, 1.0, (5, 6), &dev)?;
        let probe = Tensor::randn(0f32, 1.0, (2, 3, 5), &dev)?;
        let fused = x.as_tensor().apply_op3(
            a.as_tensor(),
            b.as_tensor(),
            LoraMatmul {
                w: w.clone(),
                scale: 1.5,
            },
        )?;
        let low = (x.as_tensor().broadcast_matmul(&a.as_tensor().t()?)? * 1.5)?;
        let unfused = (x.as_tensor().broadcast_matmul(&w.t()?)?
            + low.broadcast_matmul(&b.as_tensor().t()?)?)?;
        assert!(max_diff(&fused, &unfused)? < 1e-5);
        let g1 = (fused * &probe)?.sum_all()?.backward()?;
        let g2 = (unfused * &probe)?.sum_all()?.backward()?;
        for v in [&x, &a, &b] {
            let (p, q) = (g1.get(v.as_tensor()), g2.get(v.as_tensor()));
            let (Some(p), Some(q)) = (p, q) else {
                panic!("missing gradient");
            };
            assert!(max_diff(p, q)? < 1e-4, "{}", max_diff(p, q)?);
        }
        Ok(())
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
