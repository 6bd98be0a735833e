//! Fused CPU ops with their own backward, for the training path: where candle would build the
//! result from several ops, each keeping its output for the backward pass, these keep one.

use super::dropout;
use super::matmul::{Mat, product, product_into};
use super::weight::BaseWeight;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor,
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

/// A CPU tensor's contiguous f32 data, read in place while `guard` lives.
fn tensor_slice<'a>(
    guard: &'a candle_core::StorageRef<'_>,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let Storage::Cpu(storage) = &**guard else {
        candle_core::bail!("{op} runs on the CPU");
    };
    input_slice(storage, layout, op)
}

/// Binds `$name` to the contiguous f32 data of each CPU tensor, read in place.
macro_rules! slices {
    ($op:expr; $($name:ident = $tensor:expr),+ $(,)?) => {
        $(let $name = $tensor.storage_and_layout();)+
        $(let $name = tensor_slice(&$name.0, $name.1, $op)?;)+
    };
}

/// Rows of a `[.., k]` input, checking that its last dimension is `k`.
fn rows_of(layout: &Layout, k: usize, op: &str) -> Result<usize> {
    match layout.dims().last() {
        Some(&last) if last == k && k > 0 => Ok(layout.shape().elem_count() / k),
        _ => candle_core::bail!("{op}: input {:?} does not end in {k}", layout.dims()),
    }
}

/// `dims` with the last dimension replaced by `n`.
fn with_last(dims: &[usize], n: usize) -> Shape {
    let mut dims = dims.to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Shape::from(dims)
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
        let (out, k) = self.w.dims()?;
        let rows = rows_of(layout, k, self.name())?;
        let x = input_slice(storage, layout, self.name())?;
        let dense = self.w.to_dense(&Device::Cpu)?;
        slices!(self.name(); w = dense);
        let y = product(Mat::new(x, rows, k)?, Mat::new(w, out, k)?.t(), 1.0)?;
        Ok((CpuStorage::F32(y), with_last(layout.dims(), out)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // dL/dx = dL/dy · W.
        let (out, k) = self.w.dims()?;
        let (grad, dense) = (grad.contiguous()?, self.w.to_dense(&Device::Cpu)?);
        let rows = arg.elem_count() / k;
        slices!(self.name(); g = grad, w = dense);
        let dx = product(Mat::new(g, rows, out)?, Mat::new(w, out, k)?, 1.0)?;
        Tensor::from_vec(dx, arg.dims(), &Device::Cpu).map(Some)
    }
}

/// `x W^T + scale · (x A^T) B^T` for a frozen `W` and a LoRA pair A `[r, in]`, B `[out, r]`:
/// one output kept instead of four output-sized tensors, and no gradient for `W`.
pub struct LoraMatmul {
    pub w: BaseWeight,
    pub scale: f64,
    /// Dropout on the adapter's input: probability and mask key (see `model::dropout`).
    pub dropout: Option<(f32, u64)>,
}

impl LoraMatmul {
    /// The adapter's input: `x`, or `x` under the dropout mask.
    fn adapter_input<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        match self.dropout {
            Some((p, key)) => dropout::apply(x, key, p).into(),
            None => x.into(),
        }
    }
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
        let (out, k) = self.w.dims()?;
        let (rank, rows) = (l2.dims()[0], rows_of(l1, k, self.name())?);
        let xd = input_slice(s1, l1, self.name())?;
        let x = Mat::new(xd, rows, k)?;
        let a = Mat::new(input_slice(s2, l2, self.name())?, rank, k)?;
        let b = Mat::new(input_slice(s3, l3, self.name())?, out, rank)?;
        let dense = self.w.to_dense(&Device::Cpu)?;
        slices!(self.name(); w = dense);
        let dropped = self.adapter_input(xd);
        let low = product(Mat::new(&dropped, rows, k)?, a.t(), self.scale as f32)?;
        let mut y = product(x, Mat::new(w, out, k)?.t(), 1.0)?;
        product_into(&mut y, true, Mat::new(&low, rows, rank)?, b.t(), 1.0)?;
        Ok((CpuStorage::F32(y), with_last(l1.dims(), out)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out, k) = self.w.dims()?;
        let rank = a.dim(0)?;
        let rows = x.elem_count() / k;
        let scale = self.scale as f32;
        let (grad, dense) = (grad.contiguous()?, self.w.to_dense(&Device::Cpu)?);
        slices!(self.name(); xd = x, ad = a, bd = b, gd = grad, wd = dense);
        let (am, bm) = (Mat::new(ad, rank, k)?, Mat::new(bd, out, rank)?);
        let g = Mat::new(gd, rows, out)?;
        let gb = product(g, bm, 1.0)?;
        let gb = Mat::new(&gb, rows, rank)?;
        // With the adapter's input x' = m ⊙ x (m the dropout factors, 1 without dropout):
        // dx = g W + m ⊙ scale (g B) A; dA = scale (g B)^T x'; dB = scale g^T (x' A^T).
        let mut dx = product(g, Mat::new(wd, out, k)?, 1.0)?;
        match self.dropout {
            Some((p, key)) => {
                let low = product(gb, am, scale)?;
                for (i, (d, l)) in dx.iter_mut().zip(low).enumerate() {
                    *d += l * dropout::factor(key, i, p);
                }
            }
            None => product_into(&mut dx, true, gb, am, scale)?,
        }
        let dropped = self.adapter_input(xd);
        let xm = Mat::new(&dropped, rows, k)?;
        let da = product(gb.t(), xm, scale)?;
        let xa = product(xm, am.t(), 1.0)?;
        let db = product(g.t(), Mat::new(&xa, rows, rank)?, scale)?;
        let dev = &Device::Cpu;
        Ok((
            Some(Tensor::from_vec(dx, x.dims(), dev)?),
            Some(Tensor::from_vec(da, a.dims(), dev)?),
            Some(Tensor::from_vec(db, b.dims(), dev)?),
        ))
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
        let n = self.weight.len();
        let grad = grad.contiguous()?;
        slices!(self.name(); xd = x, gd = grad);
        let mut dx = vec![0f32; xd.len()];
        dx.par_chunks_mut(n)
            .zip(xd.par_chunks(n).zip(gd.par_chunks(n)))
            .for_each(|(d, (x, g))| {
                let r = 1.0 / (x.iter().map(|v| v * v).sum::<f32>() / n as f32 + self.eps).sqrt();
                let m = x
                    .iter()
                    .zip(g)
                    .zip(&self.weight)
                    .map(|((x, g), w)| x * g * w)
                    .sum::<f32>()
                    / n as f32;
                let c = r * r * r * m;
                for (((d, x), g), w) in d.iter_mut().zip(x).zip(g).zip(&self.weight) {
                    *d = g * w * r - x * c;
                }
            });
        Tensor::from_vec(dx, x.dims(), &Device::Cpu).map(Some)
    }
}

/// Rotary position embedding (the half-split layout) of `[b, heads, t, d]`, with the tables
/// `[t, d / 2]` of its positions; the backward rotates the gradient back.
pub struct Rotary {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rotary {
    /// Rotates every `d`-vector of `x` (`[b, heads, t, d]`, read through `layout`'s strides,
    /// the last one 1) by its position's angles; `sign` −1 rotates back.
    fn rotate(&self, x: &[f32], layout: &Layout, sign: f32) -> Result<Vec<f32>> {
        let name = "rotary";
        let Ok([b, heads, t, d]) = <[usize; 4]>::try_from(layout.dims()) else {
            candle_core::bail!("{name}: input {:?} is not [b, heads, t, d]", layout.dims());
        };
        let half = d / 2;
        let stride = layout.stride();
        if d % 2 == 1 || stride[3] != 1 || self.cos.dims() != [t, half] {
            candle_core::bail!(
                "{name}: input {:?} (strides {stride:?}) against angle tables {:?}",
                layout.dims(),
                self.cos.dims()
            );
        }
        let start = layout.start_offset();
        slices!(name; cos = self.cos, sin = self.sin);
        let mut out = vec![0f32; b * heads * t * d];
        out.par_chunks_mut(t * d).enumerate().for_each(|(bh, o)| {
            let base = start + (bh / heads) * stride[0] + (bh % heads) * stride[1];
            for (p, o) in o.chunks_mut(d).enumerate() {
                let v = &x[base + p * stride[2]..][..d];
                let (c, s) = (&cos[p * half..][..half], &sin[p * half..][..half]);
                for i in 0..half {
                    let (x1, x2, s) = (v[i], v[i + half], sign * s[i]);
                    o[i] = x1 * c[i] - x2 * s;
                    o[i + half] = x2 * c[i] + x1 * s;
                }
            }
        });
        Ok(out)
    }
}

impl CustomOp1 for Rotary {
    fn name(&self) -> &'static str {
        "rotary"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("rotary needs f32 input");
        };
        let out = self.rotate(data, layout, 1.0)?;
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let (guard, layout) = grad.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(data)) = &*guard else {
            candle_core::bail!("rotary needs f32 input on the CPU");
        };
        let dx = self.rotate(data, layout, -1.0)?;
        Tensor::from_vec(dx, grad.dims(), &Device::Cpu).map(Some)
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
        let grad = grad.contiguous()?;
        slices!(self.name(); gd = gate, ud = up, cd = grad);
        let (mut d_gate, mut d_up) = (vec![0f32; gd.len()], vec![0f32; gd.len()]);
        d_gate
            .par_chunks_mut(4096)
            .zip(d_up.par_chunks_mut(4096))
            .zip(
                gd.par_chunks(4096)
                    .zip(ud.par_chunks(4096))
                    .zip(cd.par_chunks(4096)),
            )
            .for_each(|((dg, du), ((g, u), c))| {
                for ((((dg, du), g), u), c) in dg.iter_mut().zip(du).zip(g).zip(u).zip(c) {
                    let sig = 1.0 / (1.0 + (-g).exp());
                    // d silu / d gate = σ · (1 + gate · (1 − σ)).
                    *dg = c * u * sig * (1.0 + g * (1.0 - sig));
                    *du = c * g * sig;
                }
            });
        let dev = &Device::Cpu;
        Ok((
            Some(Tensor::from_vec(d_gate, gate.dims(), dev)?),
            Some(Tensor::from_vec(d_up, up.dims(), dev)?),
        ))
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
        // d nll_i / d logits_i = (softmax(logits_i) − onehot(label_i)) · grad_i.
        let grad = grad.contiguous()?;
        let (rows, vocab) = logits.dims2()?;
        slices!(self.name(); ld = logits, gd = grad);
        let mut d = vec![0f32; ld.len()];
        d.par_chunks_mut(vocab)
            .zip(ld.par_chunks(vocab))
            .zip(gd.par_iter().zip(self.labels.par_iter()))
            .for_each(|((d, row), (g, &label))| {
                let lse = log_sum_exp(row);
                for (d, v) in d.iter_mut().zip(row) {
                    *d = (v - lse).exp() * g;
                }
                d[label as usize] -= g;
            });
        Tensor::from_vec(d, (rows, vocab), &Device::Cpu).map(Some)
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
        let keys = res.dims().last().copied().unwrap_or(0);
        let grad = grad.contiguous()?;
        slices!(self.name(); pd = res, gd = grad);
        let scale = self.scale as f32;
        let mut dx = vec![0f32; pd.len()];
        dx.par_chunks_mut(keys)
            .zip(pd.par_chunks(keys).zip(gd.par_chunks(keys)))
            .enumerate()
            .for_each(|(row, (d, (p, g)))| {
                let visible = self.offset + row % self.queries + 1;
                let dot: f32 = p[..visible].iter().zip(g).map(|(p, g)| p * g).sum();
                for ((d, p), g) in d[..visible].iter_mut().zip(p).zip(g) {
                    *d = scale * p * (g - dot);
                }
            });
        Tensor::from_vec(dx, res.dims(), &Device::Cpu).map(Some)
    }
}

#[cfg(test)]
mod tests;
