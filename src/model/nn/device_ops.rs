//! Training-path ops for every device (a GPU, bf16 on the CPU): each runs its forward outside
//! the autograd graph with candle's ops and keeps only what its own backward needs. Built from
//! candle's composite ops instead, the graph would keep every intermediate until the backward
//! pass: the attention matrix several times over in f32, the f32 copies of each norm, the whole
//! vocabulary's log-softmax, and a gradient for every frozen weight. On a GPU the elementwise
//! chains (the attention softmax, the norm's, SwiGLU's and the loss's) are fused kernels
//! (`cuda`); the CPU keeps candle's composites.

use super::weight::BaseWeight;
use candle_core::{CpuStorage, CudaStorage, D, DType, Layout, Result, Shape, Storage, Tensor};
use std::sync::Mutex;

#[cfg(feature = "cuda")]
pub mod cuda;
mod frozen;
mod loss;

use frozen::{Frozen, rows_times};

#[cfg(test)]
use loss::LOSS_CHUNK_ROWS;
pub use loss::nll_at_labels;

/// How an op's inputs get their gradients, from the inputs, the output and its gradient
/// (all detached: nothing computed here joins the graph).
trait Backward: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn grads(&self, args: &[Tensor], out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

/// An op whose output was computed before it joined the graph: its forward hands that output
/// over (once), its backward is `B`'s.
struct Recorded<B> {
    out: Mutex<Option<Tensor>>,
    backward: B,
}

impl<B: Backward> Recorded<B> {
    fn new(out: Tensor, backward: B) -> Self {
        Recorded {
            out: Mutex::new(Some(out)),
            backward,
        }
    }

    /// The recorded output's storage, as a contiguous buffer starting at its first element.
    fn take(&self) -> Result<(Storage, Shape)> {
        let out = self
            .out
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{}: lock poisoned", self.name())))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: ran twice", self.name())))?;
        let out = if out.is_contiguous() && out.layout().start_offset() == 0 {
            out
        } else {
            out.force_contiguous()?
        };
        let (storage, layout) = out.storage_and_layout();
        Ok((storage.try_clone(layout)?, out.shape().clone()))
    }

    fn cpu(&self) -> Result<(CpuStorage, Shape)> {
        match self.take()? {
            (Storage::Cpu(s), shape) => Ok((s, shape)),
            _ => candle_core::bail!("{}: output is not on the CPU", self.name()),
        }
    }

    fn cuda(&self) -> Result<(CudaStorage, Shape)> {
        match self.take()? {
            (Storage::Cuda(s), shape) => Ok((s, shape)),
            _ => candle_core::bail!("{}: output is not on the GPU", self.name()),
        }
    }

    fn name(&self) -> &'static str {
        self.backward.name()
    }

    fn grads<const N: usize>(
        &self,
        args: [&Tensor; N],
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; N]> {
        let args: Vec<Tensor> = args.iter().map(|a| a.detach()).collect();
        let grads = self.backward.grads(&args, &out.detach(), &grad.detach())?;
        grads.try_into().map_err(|g: Vec<Option<Tensor>>| {
            candle_core::Error::Msg(format!(
                "{}: {} gradients for {N} inputs",
                self.name(),
                g.len()
            ))
        })
    }
}

impl<B: Backward> candle_core::CustomOp1 for Recorded<B> {
    fn name(&self) -> &'static str {
        Recorded::name(self)
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
        self.cuda()
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let [g] = self.grads([arg], res, grad)?;
        Ok(g)
    }
}

impl<B: Backward> candle_core::CustomOp2 for Recorded<B> {
    fn name(&self) -> &'static str {
        Recorded::name(self)
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [ga, gb] = self.grads([a, b], res, grad)?;
        Ok((ga, gb))
    }
}

impl<B: Backward> candle_core::CustomOp3 for Recorded<B> {
    fn name(&self) -> &'static str {
        Recorded::name(self)
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu()
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.cuda()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [ga, gb, gc] = self.grads([a, b, c], res, grad)?;
        Ok((ga, gb, gc))
    }
}

/// `x W^T` for a frozen `W` `[out, in]`: the backward computes the input's gradient only
/// (candle's matmul would also compute, and keep, one for the weight). The rows are multiplied
/// as one matrix, not one batch row at a time.
pub fn frozen_matmul(x: &Tensor, w: &BaseWeight) -> Result<Tensor> {
    let y = Frozen::layer(w, x)?.times_transposed(&x.detach())?;
    x.apply_op1(Recorded::new(y, FrozenBackward { w: w.clone() }))
}

struct FrozenBackward {
    w: BaseWeight,
}

impl Backward for FrozenBackward {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn grads(&self, _: &[Tensor], _: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(Frozen::layer(&self.w, grad)?.times(grad)?)])
    }
}

/// `x W^T + scale · (x' A^T) B^T` for a frozen `W` `[out, in]` and a LoRA pair A `[r, in]`, B
/// `[out, r]` (f32, trained), with `x' = x · mask` under dropout: one graph node instead of the
/// half dozen of the composite, no gradient for `W`, and the products in `x`'s precision.
/// Keeps `x` (and the mask).
pub fn lora_matmul(
    x: &Tensor,
    w: &BaseWeight,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    mask: Option<Tensor>,
) -> Result<Tensor> {
    let xd = x.detach();
    let adapter_in = match &mask {
        Some(m) => (&xd * m)?,
        None => xd.clone(),
    };
    let (a16, b16) = (a.to_dtype(x.dtype())?, b.to_dtype(x.dtype())?);
    let low = (rows_times(&adapter_in, &a16.t()?)? * scale)?;
    let y = (Frozen::layer(w, x)?.times_transposed(&xd)? + rows_times(&low, &b16.t()?)?)?;
    let backward = LoraBackward {
        w: w.clone(),
        scale,
        mask,
    };
    x.apply_op3(a, b, Recorded::new(y, backward))
}

struct LoraBackward {
    w: BaseWeight,
    scale: f64,
    mask: Option<Tensor>,
}

impl Backward for LoraBackward {
    fn name(&self) -> &'static str {
        "lora-matmul"
    }

    /// With `low = scale · x' A^T`: `dB = gᵀ low`, `d_low = scale · g B`, `dA = d_lowᵀ x'`,
    /// `dx = g W + (d_low A) · mask`.
    fn grads(&self, args: &[Tensor], _: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (x, a, b) = (&args[0], &args[1], &args[2]);
        let dtype = x.dtype();
        let (a16, b16) = (a.to_dtype(dtype)?, b.to_dtype(dtype)?);
        let adapter_in = match &self.mask {
            Some(m) => (x * m)?,
            None => x.clone(),
        };
        let (in_dim, out_dim, rank) = (a.dim(1)?, b.dim(0)?, a.dim(0)?);
        let rows_in = adapter_in.reshape(((), in_dim))?;
        let g = grad.reshape(((), out_dim))?;
        let low = (rows_in.matmul(&a16.t()?)? * self.scale)?;
        let d_low = (g.matmul(&b16)? * self.scale)?;
        let db = g.t()?.matmul(&low)?.to_dtype(b.dtype())?;
        let da = d_low.t()?.matmul(&rows_in)?.to_dtype(a.dtype())?;
        let mut d_adapter_in = d_low.matmul(&a16)?;
        if let Some(m) = &self.mask {
            d_adapter_in = (d_adapter_in * m.reshape(((), in_dim))?)?;
        }
        let dx = (Frozen::layer(&self.w, grad)?.times(&g)? + d_adapter_in)?.reshape(x.shape())?;
        debug_assert_eq!(low.dim(1)?, rank);
        Ok(vec![Some(dx), Some(da), Some(db)])
    }
}

/// RMSNorm `x / sqrt(mean(x²) + eps) · w` over the last dimension, for a frozen `w`, in f32
/// inside (candle's fused kernel); keeps only `x`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let x = x.contiguous()?;
    let y = candle_nn::ops::rms_norm(&x.detach(), weight, eps as f32)?;
    x.apply_op1(Recorded::new(
        y,
        RmsNormBackward {
            weight: weight.to_dtype(DType::F32)?,
            eps,
        },
    ))
}

struct RmsNormBackward {
    weight: Tensor,
    eps: f64,
}

impl Backward for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    /// With `r = 1 / rms(x)`, `x̂ = x · r` and `h = grad · w`: `dx = r · (h − x̂ · mean(h · x̂))`.
    fn grads(&self, args: &[Tensor], _: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if grad.device().is_cuda() {
            let dx = cuda::rms_norm_backward(&args[0], grad, &self.weight, self.eps)?;
            return Ok(vec![Some(dx)]);
        }
        let x = args[0].to_dtype(DType::F32)?;
        let r = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        let normed = x.broadcast_mul(&r)?;
        let h = grad.to_dtype(DType::F32)?.broadcast_mul(&self.weight)?;
        let along = (&h * &normed)?.mean_keepdim(D::Minus1)?;
        let dx = h.sub(&normed.broadcast_mul(&along)?)?.broadcast_mul(&r)?;
        Ok(vec![Some(dx.to_dtype(args[0].dtype())?)])
    }
}

/// Rotary position embedding (the half-split layout) of `[b, heads, t, d]` with the tables
/// `[t, d / 2]` of its positions; the backward rotates the gradient back.
pub fn rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let (cos, sin) = (cos.contiguous()?, sin.contiguous()?);
    let y = candle_nn::rotary_emb::rope(&x.detach(), &cos, &sin)?;
    x.apply_op1(Recorded::new(
        y,
        RotaryBackward {
            cos,
            sin_back: sin.neg()?,
        },
    ))
}

struct RotaryBackward {
    cos: Tensor,
    /// The rotation back is the rotation by the opposite angles.
    sin_back: Tensor,
}

impl Backward for RotaryBackward {
    fn name(&self) -> &'static str {
        "rotary"
    }

    fn grads(&self, _: &[Tensor], _: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = candle_nn::rotary_emb::rope(&grad.contiguous()?, &self.cos, &self.sin_back)?;
        Ok(vec![Some(g)])
    }
}

/// SwiGLU's `silu(gate) · up`; keeps `gate` and `up` only.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let y = silu_times(&gate.detach(), &up.detach())?;
    gate.apply_op2(up, Recorded::new(y, SwiGluBackward))
}

fn silu_times(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if gate.device().is_cuda() {
        return cuda::swiglu(gate, up);
    }
    gate.silu()? * up
}

struct SwiGluBackward;

impl Backward for SwiGluBackward {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    /// `d silu / d gate = σ · (1 + gate · (1 − σ))`, computed in f32.
    fn grads(&self, args: &[Tensor], _: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if grad.device().is_cuda() {
            let (d_gate, d_up) = cuda::swiglu_backward(&args[0], &args[1], grad)?;
            return Ok(vec![Some(d_gate), Some(d_up)]);
        }
        let dtype = args[0].dtype();
        let (g, u) = (args[0].to_dtype(DType::F32)?, args[1].to_dtype(DType::F32)?);
        let c = grad.to_dtype(DType::F32)?;
        let sig = candle_nn::ops::sigmoid(&g)?;
        let d_silu = (&sig * ((&g * (1.0 - &sig)?)? + 1.0)?)?;
        let d_gate = (&c * &u)?.mul(&d_silu)?;
        let d_up = (&c * (&g * &sig)?)?;
        Ok(vec![
            Some(d_gate.to_dtype(dtype)?),
            Some(d_up.to_dtype(dtype)?),
        ])
    }
}

/// What the attention of a batch must not see.
#[derive(Clone, Copy)]
pub struct AttentionShape<'a> {
    /// Query heads per key/value head.
    pub n_rep: usize,
    /// New positions per row.
    pub queries: usize,
    pub scale: f64,
    /// Additive mask `[b | 1, 1, 1, queries, keys]` (causal and padding), f32.
    pub mask: Option<&'a Tensor>,
}

/// `softmax(scale · q kᵀ + mask) v` for queries grouped under their key/value head
/// (`q` `[b, kv, n_rep · t, d]`, `k` and `v` `[b, kv, keys, d]`), the softmax in f32. Keeps
/// q, k, v and the output: the backward recomputes the attention matrix instead of keeping it.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, shape: AttentionShape) -> Result<Tensor> {
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let mask = shape.mask.cloned();
    let probs = attention_probs(&q.detach(), &k.detach(), mask.as_ref(), shape)?;
    let y = probs.to_dtype(v.dtype())?.matmul(&v.detach())?;
    q.apply_op3(
        &k,
        &v,
        Recorded::new(
            y,
            AttentionBackward {
                n_rep: shape.n_rep,
                queries: shape.queries,
                scale: shape.scale,
                mask,
            },
        ),
    )
}

/// The attention matrix `softmax(scale · q kᵀ + mask)`: f32 on the CPU, `q`'s dtype from the
/// GPU's fused kernel (which computes it in f32).
fn attention_probs(
    q: &Tensor,
    k: &Tensor,
    mask: Option<&Tensor>,
    shape: AttentionShape,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() {
        return cuda::attention_softmax(&q.matmul(&k.t()?)?, mask, shape.scale, shape.queries);
    }
    let scores = (q.matmul(&k.t()?)?.to_dtype(DType::F32)? * shape.scale)?;
    let scores = match mask {
        Some(m) => {
            let (b, kv, rows, keys) = scores.dims4()?;
            scores
                .reshape((b, kv, shape.n_rep, shape.queries, keys))?
                .broadcast_add(m)?
                .reshape((b, kv, rows, keys))?
        }
        None => scores,
    };
    candle_nn::ops::softmax_last_dim(&scores)
}

struct AttentionBackward {
    n_rep: usize,
    queries: usize,
    scale: f64,
    mask: Option<Tensor>,
}

impl Backward for AttentionBackward {
    fn name(&self) -> &'static str {
        "attention"
    }

    /// With `P` the attention matrix and `O = P v`: `dv = Pᵀ dO`, `dS = P ∘ (dO vᵀ − rowsum(dO ∘ O))`
    /// (the softmax's backward), `dq = scale · dS k`, `dk = scale · dSᵀ q`.
    fn grads(&self, args: &[Tensor], out: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let (q, k, v) = (&args[0], &args[1], &args[2]);
        let dtype = q.dtype();
        let shape = AttentionShape {
            n_rep: self.n_rep,
            queries: self.queries,
            scale: self.scale,
            mask: self.mask.as_ref(),
        };
        let probs = attention_probs(q, k, self.mask.as_ref(), shape)?;
        let grad = grad.contiguous()?;
        let dv = probs.to_dtype(dtype)?.t()?.matmul(&grad)?;
        let dp = grad.matmul(&v.t()?)?;
        let ds = scores_grad(&probs, &dp, &grad, out, self.scale)?.to_dtype(dtype)?;
        let dq = ds.matmul(k)?;
        let dk = ds.t()?.matmul(q)?;
        Ok(vec![Some(dq), Some(dk), Some(dv)])
    }
}

/// The attention scores' gradient `scale · P ∘ (dP − rowsum(dO ∘ O))` from the attention matrix
/// `P`, its gradient `dP = dO vᵀ`, and the output `O` with its gradient `dO` (on a GPU the row
/// sum is taken as `rowsum(P ∘ dP)`, the same quantity).
fn scores_grad(
    probs: &Tensor,
    dp: &Tensor,
    grad: &Tensor,
    out: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if probs.device().is_cuda() {
        return cuda::attention_softmax_backward(probs, dp, scale);
    }
    let along = (grad.to_dtype(DType::F32)? * out.to_dtype(DType::F32)?)?.sum_keepdim(D::Minus1)?;
    (probs * dp.to_dtype(DType::F32)?.broadcast_sub(&along)?)? * scale
}

#[cfg(test)]
mod tests;
