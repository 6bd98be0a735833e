//! Attention of a few new queries over the cached keys and values in one CPU pass (scores, causal
//! and padding mask, softmax, weighted values), for decoding: the general path's small matrix
//! products, mask tensor and copies cost more than the arithmetic at one query per head.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, bail};
use rayon::prelude::*;

/// Queries `[b, kv, n_rep · t, d]` (contiguous; the `n_rep` query heads of a key/value head
/// grouped, each with its `t` positions), keys and values `[b, kv, total, d]` (any strides with
/// the last dimension contiguous, such as a view of the cache). Query `i` sits at `offset + i`
/// and sees the keys up to itself, except its row's left padding `pads[b]`.
pub struct DecodeAttention<'a> {
    pub scale: f32,
    pub queries: usize,
    pub offset: usize,
    pub pads: &'a [usize],
}

/// A `[b, kv, n, d]` operand: its data and the strides of the first three dimensions.
struct Operand<'a> {
    data: &'a [f32],
    start: usize,
    strides: [usize; 3],
}

impl Operand<'_> {
    fn new<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<Operand<'a>> {
        let CpuStorage::F32(data) = storage else {
            bail!("decode-attention: {what} must be f32");
        };
        let s = layout.stride();
        if layout.dims().len() != 4 || s[3] != 1 {
            bail!(
                "decode-attention: {what} must be [b, heads, n, d] with contiguous rows, got {:?} strides {s:?}",
                layout.dims()
            );
        }
        Ok(Operand {
            data,
            start: layout.start_offset(),
            strides: [s[0], s[1], s[2]],
        })
    }

    fn row(&self, b: usize, h: usize, n: usize, d: usize) -> &[f32] {
        let at = self.start + b * self.strides[0] + h * self.strides[1] + n * self.strides[2];
        &self.data[at..at + d]
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums let the compiler keep them in one vector register.
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut tail = 0f32;
    for (x, y) in a8.remainder().iter().zip(b8.remainder()) {
        tail += x * y;
    }
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut total = 0f32;
    for v in acc {
        total += v;
    }
    total + tail
}

impl CustomOp3 for DecodeAttention<'_> {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            Operand::new(qs, ql, "queries")?,
            Operand::new(ks, kl, "keys")?,
            Operand::new(vs, vl, "values")?,
        );
        let &[b, kv, rows, d] = ql.dims() else {
            bail!("decode-attention: queries must be 4-dimensional");
        };
        let total = kl.dims()[2];
        if kl.dims() != [b, kv, total, d] || vl.dims() != kl.dims() {
            bail!(
                "decode-attention: keys {:?} and values {:?} do not fit queries {:?}",
                kl.dims(),
                vl.dims(),
                ql.dims()
            );
        }
        if self.queries == 0
            || !rows.is_multiple_of(self.queries)
            || self.offset + self.queries > total
        {
            bail!(
                "decode-attention: {} queries after {} cached positions do not fit {total} keys",
                self.queries,
                self.offset
            );
        }
        if !self.pads.is_empty() && self.pads.len() != b {
            bail!(
                "decode-attention: left padding given for {} rows of a batch of {b}",
                self.pads.len()
            );
        }
        let mut out = vec![0f32; b * kv * rows * d];
        #[cfg(target_arch = "x86_64")]
        let avx = is_x86_feature_detected!("avx");
        out.par_chunks_mut(d).enumerate().for_each(|(n, o)| {
            let (bi, h, r) = (n / (kv * rows), n / rows % kv, n % rows);
            let position = self.offset + r % self.queries;
            let pad = self.pads.get(bi).copied().unwrap_or(0);
            // Keys before the padding end are hidden, except that a padding query sees itself
            // (its softmax stays finite; its output is never used).
            let first = if position < pad { position } else { pad };
            let head = Head {
                query: q.row(bi, h, r, d),
                keys: (&k, bi, h),
                values: (&v, bi, h),
                scale: self.scale,
            };
            #[cfg(target_arch = "x86_64")]
            if avx {
                // SAFETY: AVX was detected at run time.
                return unsafe { head.attend_avx(first, position, o) };
            }
            head.attend(first, position, o);
        });
        Ok((CpuStorage::F32(out), Shape::from((b, kv, rows, d))))
    }
}

/// One query row against its head's keys and values.
struct Head<'a> {
    query: &'a [f32],
    keys: (&'a Operand<'a>, usize, usize),
    values: (&'a Operand<'a>, usize, usize),
    scale: f32,
}

impl Head<'_> {
    /// Softmax-weighted values of keys `first..=last` into `o`.
    #[inline(always)]
    fn attend(&self, first: usize, last: usize, o: &mut [f32]) {
        let d = o.len();
        let ((k, kb, kh), (v, vb, vh)) = (self.keys, self.values);
        // Plain loops, no closures: a closure would be compiled apart, without AVX.
        let mut scores = Vec::with_capacity(last + 1 - first);
        let mut max = f32::NEG_INFINITY;
        for j in first..=last {
            let s = dot(self.query, k.row(kb, kh, j, d)) * self.scale;
            max = max.max(s);
            scores.push(s);
        }
        let mut sum = 0f32;
        for (j, s) in (first..=last).zip(&scores) {
            let p = (s - max).exp();
            sum += p;
            for (o, x) in o.iter_mut().zip(v.row(vb, vh, j, d)) {
                *o += p * x;
            }
        }
        for x in o.iter_mut() {
            *x /= sum;
        }
    }

    /// [`Self::attend`] compiled for AVX: the same operations in the same order (no fused
    /// multiply-adds), eight lanes per instruction instead of four.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn attend_avx(&self, first: usize, last: usize, o: &mut [f32]) {
        self.attend(first, last, o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::llama::attention_mask;
    use candle_core::{D, Device, Tensor};

    /// The general path: scores, the additive mask of `llama::attention_mask`, softmax, values.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, op: &DecodeAttention) -> Result<Tensor> {
        let (b, kv, rows, _) = q.dims4()?;
        let total = k.dim(2)?;
        let n_rep = rows / op.queries;
        let scores = (q.matmul(&k.t()?)? * f64::from(op.scale))?;
        let scores = match attention_mask(b, op.queries, op.offset, op.pads, q.device())? {
            Some(mask) => scores
                .reshape((b, kv, n_rep, op.queries, total))?
                .broadcast_add(&mask)?
                .reshape((b, kv, rows, total))?,
            None => scores,
        };
        candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v.contiguous()?)
    }

    #[test]
    fn matches_masked_softmax_attention_over_a_cache_view() -> Result<()> {
        let dev = Device::Cpu;
        let (b, kv, n_rep, t, d, offset) = (2, 3, 2, 2, 20, 5);
        let total = offset + t;
        let q = Tensor::randn(0f32, 1.0, (b, kv, n_rep * t, d), &dev)?;
        // Views into longer buffers, as the cache hands them out.
        let k = Tensor::randn(0f32, 1.0, (b, kv, total + 4, d), &dev)?.narrow(2, 0, total)?;
        let v = Tensor::randn(0f32, 1.0, (b, kv, total + 4, d), &dev)?.narrow(2, 0, total)?;
        assert!(!k.is_contiguous());
        for pads in [vec![], vec![0, 3], vec![6, 0]] {
            let op = DecodeAttention {
                scale: 0.3,
                queries: t,
                offset,
                pads: &pads,
            };
            let fused = q.apply_op3_no_bwd(&k, &v, &op)?;
            let want = reference(&q, &k, &v, &op)?;
            let diff = (fused - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "pads {pads:?}: max diff {diff}");
        }
        Ok(())
    }

    #[test]
    fn refuses_queries_beyond_the_keys() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 1, 2, 4), candle_core::DType::F32, &dev)?;
        let k = Tensor::zeros((1, 1, 2, 4), candle_core::DType::F32, &dev)?;
        let op = DecodeAttention {
            scale: 1.0,
            queries: 2,
            offset: 1,
            pads: &[],
        };
        let err = q.apply_op3_no_bwd(&k, &k, &op).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("do not fit 2 keys")));
        Ok(())
    }
}
