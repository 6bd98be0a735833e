//! Fused CPU ops with their own backward, for the training path: where candle would build the
//! result from several ops, each keeping its output for the backward pass, these keep one.

use super::linear::BaseWeight;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, D, Device, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

/// A CPU op's contiguous f32 input.
fn input_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} needs f32 input");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} needs contiguous input");
    };
    Ok(&data[start..end])
}

/// A CPU op's contiguous f32 input as a tensor of its own (a copy, outside the graph).
fn input_tensor(storage: &CpuStorage, layout: &Layout, op: &str) -> Result<Tensor> {
    Tensor::from_slice(
        input_slice(storage, layout, op)?,
        layout.dims(),
        &Device::Cpu,
    )
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
/// and keep it until the backward pass ends. A quantized `W` is dequantized for each product
/// and never kept dense.
pub struct FrozenMatmul {
    pub w: BaseWeight,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.w.to_dense(&Device::Cpu)?;
        output_storage(&matmul_t(&input_tensor(storage, layout, self.name())?, &w)?)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // dL/dx = dL/dy · W: the same product against W^T.
        let w = self.w.to_dense(&Device::Cpu)?;
        matmul_t(&grad.detach(), &w.t()?.contiguous()?).map(Some)
    }
}

/// `x W^T + scale · (x A^T) B^T` for a frozen `W` and a LoRA pair A `[r, in]`, B `[out, r]`:
/// one output kept instead of four output-sized tensors, and no gradient for `W`.
pub struct LoraMatmul {
    pub w: BaseWeight,
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
        let w = self.w.to_dense(&Device::Cpu)?;
        output_storage(&(matmul_t(&x, &w)? + matmul_t(&low, &b)?)?)
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
        let w = self.w.to_dense(&Device::Cpu)?;
        let dx = (g2.matmul(&w)? + (gb.matmul(a)? * self.scale)?)?.reshape(x.dims())?;
        let da = (gb.t()?.matmul(&x2)? * self.scale)?;
        let db = (g2.t()?.matmul(&x2.matmul(&a.t()?)?)? * self.scale)?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}

/// RMSNorm `x / sqrt(mean(x²) + eps) · w` over the last dimension, for a frozen `w`.
pub struct RmsNorm {
    pub weight: Vec<f32>,
    pub eps: f32,
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = input_slice(storage, layout, self.name())?;
        let n = self.weight.len();
        if n == 0 || layout.dims().last() != Some(&n) {
            candle_core::bail!("rms-norm: input {:?} does not end in {n}", layout.dims());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .for_each(|(o, x)| {
                let r = 1.0 / (x.iter().map(|v| v * v).sum::<f32>() / n as f32 + self.eps).sqrt();
                for ((o, v), w) in o.iter_mut().zip(x).zip(&self.weight) {
                    *o = v * r * w;
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // With r = 1/sqrt(mean(x²)+eps) and h = g·w: dx = h·r − x·r³·mean(x·h).
        let (x, grad) = (x.detach(), grad.detach());
        let w = Tensor::from_slice(&self.weight, self.weight.len(), x.device())?;
        let h = grad.broadcast_mul(&w)?;
        let r = (x.sqr()?.mean_keepdim(D::Minus1)? + f64::from(self.eps))?
            .sqrt()?
            .recip()?;
        let m = (&x * &h)?.mean_keepdim(D::Minus1)?;
        let dx = (h.broadcast_mul(&r)? - x.broadcast_mul(&(r.powf(3.0)? * m)?)?)?;
        Ok(Some(dx))
    }
}

/// Rotary position embedding (the half-split layout) of `[b, heads, t, d]`, with the tables
/// `[t, d / 2]` of its positions; the backward rotates the gradient back.
pub struct Rotary {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl CustomOp1 for Rotary {
    fn name(&self) -> &'static str {
        "rotary"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = input_tensor(storage, layout, self.name())?;
        output_storage(&candle_nn::rotary_emb::rope(&x, &self.cos, &self.sin)?)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.detach().contiguous()?;
        candle_nn::rotary_emb::rope(&g, &self.cos, &self.sin.neg()?).map(Some)
    }
}

/// SwiGLU's `silu(gate) · up`.
pub struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let gate = input_slice(s1, l1, self.name())?;
        let up = input_slice(s2, l2, self.name())?;
        if l1.dims() != l2.dims() {
            candle_core::bail!("swiglu: gate {:?} and up {:?} differ", l1.dims(), l2.dims());
        }
        let mut out = vec![0f32; gate.len()];
        out.par_chunks_mut(4096)
            .zip(gate.par_chunks(4096).zip(up.par_chunks(4096)))
            .for_each(|(o, (g, u))| {
                for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
                    *o = g / (1.0 + (-g).exp()) * u;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gate, up, grad) = (gate.detach(), up.detach(), grad.detach());
        let sig = (gate.neg()?.exp()? + 1.0)?.recip()?;
        let silu = (&gate * &sig)?;
        // d silu / d gate = σ · (1 + gate · (1 − σ)).
        let dsilu = (&sig * ((&gate * (1.0 - &sig)?)? + 1.0)?)?;
        let d_gate = ((&grad * &up)? * dsilu)?;
        let d_up = (&grad * silu)?;
        Ok((Some(d_gate), Some(d_up)))
    }
}

/// The negative log-likelihood of `labels[i]` under the logits of row `i` (`[n, vocab]` →
/// `[n]`), without keeping the log-softmax of the whole vocabulary.
pub struct NllAtLabels {
    pub labels: Vec<u32>,
}

impl CustomOp1 for NllAtLabels {
    fn name(&self) -> &'static str {
        "nll-at-labels"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let logits = input_slice(storage, layout, self.name())?;
        let (rows, vocab) = layout.shape().dims2()?;
        if rows != self.labels.len() || self.labels.iter().any(|l| *l as usize >= vocab) {
            candle_core::bail!(
                "nll-at-labels: {} labels for {rows} rows of {vocab}",
                self.labels.len()
            );
        }
        let out: Vec<f32> = logits
            .par_chunks(vocab)
            .zip(self.labels.par_iter())
            .map(|(row, &label)| log_sum_exp(row) - row[label as usize])
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(rows)))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // d nll_i / d logits_i = softmax(logits_i) − onehot(label_i).
        let probs = candle_nn::ops::softmax_last_dim(&logits.detach())?;
        let (rows, vocab) = probs.dims2()?;
        let mut d = probs.flatten_all()?.to_vec1::<f32>()?;
        for (i, &label) in self.labels.iter().enumerate() {
            d[i * vocab + label as usize] -= 1.0;
        }
        let d = Tensor::from_vec(d, (rows, vocab), logits.device())?;
        d.broadcast_mul(&grad.detach().unsqueeze(1)?).map(Some)
    }
}

/// The exponentials are summed in f64: over a 50k vocabulary an f32 running sum drops the
/// small terms and reads about 1e-4 low in the loss.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let sum: f64 = row.iter().map(|v| f64::from((v - max).exp())).sum();
    max + sum.ln() as f32
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
        let data = input_slice(storage, layout, self.name())?;
        let keys = layout.dims().last().copied().unwrap_or(0);
        if keys == 0 || self.queries == 0 || self.offset + self.queries > keys {
            candle_core::bail!(
                "causal-softmax: {} queries after {} cached positions do not fit {keys} keys",
                self.queries,
                self.offset
            );
        }
        let scale = self.scale as f32;
        let mut out = vec![0f32; data.len()];
        out.par_chunks_mut(keys)
            .zip(data.par_chunks(keys))
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
                w: BaseWeight::Dense(w.clone()),
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

    /// Forward values and the gradients against a random probe agree between two computations.
    fn assert_same(
        inputs: &[&Var],
        fused: impl Fn() -> Result<Tensor>,
        unfused: impl Fn() -> Result<Tensor>,
    ) -> Result<()> {
        let (f, u) = (fused()?, unfused()?);
        assert!(
            max_diff(&f, &u)? < 1e-5,
            "forward differs by {}",
            max_diff(&f, &u)?
        );
        let probe = Tensor::randn(0f32, 1.0, f.shape(), f.device())?;
        let g1 = (f * &probe)?.sum_all()?.backward()?;
        let g2 = (u * &probe)?.sum_all()?.backward()?;
        for v in inputs {
            let (Some(p), Some(q)) = (g1.get(v.as_tensor()), g2.get(v.as_tensor())) else {
                panic!("missing gradient");
            };
            assert!(
                max_diff(p, q)? < 1e-4,
                "gradient differs by {}",
                max_diff(p, q)?
            );
        }
        Ok(())
    }

    #[test]
    fn rms_norm_rotary_swiglu_and_nll_match_the_unfused_ops() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4, 8), &dev)?)?;
        let w: Vec<f32> = (0..8).map(|i| 0.5 + i as f32 / 8.0).collect();
        let wt = Tensor::from_slice(&w, 8, &dev)?;
        assert_same(
            &[&x],
            || {
                x.as_tensor().apply_op1(RmsNorm {
                    weight: w.clone(),
                    eps: 1e-5,
                })
            },
            || {
                let ms = (x.as_tensor().sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?;
                x.as_tensor().broadcast_div(&ms.sqrt()?)?.broadcast_mul(&wt)
            },
        )?;
        let cos = Tensor::randn(0f32, 1.0, (4, 4), &dev)?;
        let sin = Tensor::randn(0f32, 1.0, (4, 4), &dev)?;
        assert_same(
            &[&x],
            || {
                x.as_tensor().apply_op1(Rotary {
                    cos: cos.clone(),
                    sin: sin.clone(),
                })
            },
            || candle_nn::rotary_emb::rope_slow(x.as_tensor(), &cos, &sin),
        )?;
        let up = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4, 8), &dev)?)?;
        assert_same(
            &[&x, &up],
            || x.as_tensor().apply_op2(up.as_tensor(), SwiGlu),
            || x.as_tensor().silu()? * up.as_tensor(),
        )?;
        let logits = Var::from_tensor(&Tensor::randn(0f32, 3.0, (5, 11), &dev)?)?;
        let labels = vec![0u32, 10, 3, 3, 7];
        let ids = Tensor::new(labels.as_slice(), &dev)?.unsqueeze(1)?;
        assert_same(
            &[&logits],
            || {
                logits.as_tensor().apply_op1(NllAtLabels {
                    labels: labels.clone(),
                })
            },
            || {
                candle_nn::ops::log_softmax(logits.as_tensor(), D::Minus1)?
                    .gather(&ids, 1)?
                    .squeeze(1)?
                    .neg()
            },
        )
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
