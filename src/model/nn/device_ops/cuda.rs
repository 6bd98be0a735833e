//! The training path's fused GPU kernels (train_kernels.cu, compiled to PTX by build.rs): the
//! attention softmax and its backward, RMSNorm's backward, SwiGLU and its backward, the loss's
//! per-row log-sum-exp and its backward, and the optimizer's flatten and AdamW step over every
//! adapter matrix at once. Each replaces a chain of candle's ops (casts, broadcasts, reductions,
//! or one copy per matrix) by one pass that computes in f32 and rounds once. bf16 and f32,
//! contiguous inputs; the callers keep candle's composites for the CPU.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, WrapErr, kernel_name};
use candle_core::{
    CpuStorage, CudaDevice, CudaStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result,
    Shape, Tensor, WithDType, bail,
};
use half::bf16;

pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/train_kernels.ptx"));
pub(crate) const MODULE: &str = "lablens_train_kernels";
/// Rows (one warp each) per block of the row kernels.
const ROWS_PER_BLOCK: u32 = 4;
/// Threads per block of the loss kernels (train_kernels.cu's LOSS_BLOCK).
const LOSS_BLOCK: u32 = 256;

/// A kernel input's elements from its first, which must be contiguous.
fn view<'a, T: CudaDType>(s: &'a CudaStorage, l: &Layout, op: &str) -> Result<CudaView<'a, T>> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(s.as_cuda_slice::<T>()?.slice(start..end)),
        None => bail!("{op}: input is not contiguous"),
    }
}

/// The device address of a tensor's first element (bf16, f32 or u32, contiguous, on a GPU), for
/// kernels that take raw pointers; valid while the tensor lives.
pub fn device_pointer(t: &Tensor, op: &str) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cuda(cs) = &*storage else {
        bail!("{op}: a tensor is not on the GPU");
    };
    if !layout.is_contiguous() {
        bail!("{op}: a tensor is not contiguous");
    }
    let stream = cs.device.cuda_stream();
    let base = match t.dtype() {
        DType::BF16 => cs.as_cuda_slice::<bf16>()?.device_ptr(&stream).0,
        DType::F32 => cs.as_cuda_slice::<f32>()?.device_ptr(&stream).0,
        DType::U32 => cs.as_cuda_slice::<u32>()?.device_ptr(&stream).0,
        other => bail!("{op}: a {other:?} tensor (bf16, f32 or u32 expected)"),
    };
    Ok(base + (layout.start_offset() * t.dtype().size_in_bytes()) as u64)
}

/// A count as the kernels' u32.
fn count(n: usize, op: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("{op}: {n} is too large")))
}

/// `[rows, last]` of a shape.
fn rows_and_last(l: &Layout, op: &str) -> Result<(u32, u32)> {
    let last = l.dims().last().copied().unwrap_or(1);
    let rows = l.shape().elem_count() / last.max(1);
    Ok((count(rows, op)?, count(last, op)?))
}

fn rows_config(rows: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(ROWS_PER_BLOCK), 1, 1),
        block_dim: (32, ROWS_PER_BLOCK, 1),
        shared_mem_bytes: 0,
    }
}

trait Float: CudaDType + DeviceRepr + WithDType {}
impl Float for bf16 {}
impl Float for f32 {}

/// A kernel input: its storage and layout.
type Arg<'a> = (&'a CudaStorage, &'a Layout);

/// An op run by one of this module's kernels, for the dtype `T` of its first input.
trait GpuOp {
    const NAME: &'static str;
    fn run<T: Float>(&self, args: &[Arg]) -> Result<(CudaStorage, Shape)>;
}

/// `op.run::<T>` for the first input's dtype, bf16 or f32.
fn dispatch<O: GpuOp>(op: &O, args: &[Arg]) -> Result<(CudaStorage, Shape)> {
    match args[0].0.dtype() {
        DType::BF16 => op.run::<bf16>(args),
        DType::F32 => op.run::<f32>(args),
        other => bail!("{}: {other:?} on a GPU (bf16 or f32 expected)", O::NAME),
    }
}

/// candle's `CustomOp1`/`2`/`3` for a [`GpuOp`]: the CPU forward refuses, the GPU forward
/// dispatches on the dtype.
macro_rules! custom_op {
    ($op:ty: 1) => {
        impl CustomOp1 for $op {
            fn name(&self) -> &'static str {
                <$op as GpuOp>::NAME
            }

            fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
                bail!("{}: a GPU kernel, called on the CPU", <$op as GpuOp>::NAME)
            }

            fn cuda_fwd(&self, a: &CudaStorage, al: &Layout) -> Result<(CudaStorage, Shape)> {
                dispatch(self, &[(a, al)])
            }
        }
    };
    ($op:ty: 2) => {
        impl CustomOp2 for $op {
            fn name(&self) -> &'static str {
                <$op as GpuOp>::NAME
            }

            fn cpu_fwd(
                &self,
                _: &CpuStorage,
                _: &Layout,
                _: &CpuStorage,
                _: &Layout,
            ) -> Result<(CpuStorage, Shape)> {
                bail!("{}: a GPU kernel, called on the CPU", <$op as GpuOp>::NAME)
            }

            fn cuda_fwd(
                &self,
                a: &CudaStorage,
                al: &Layout,
                b: &CudaStorage,
                bl: &Layout,
            ) -> Result<(CudaStorage, Shape)> {
                dispatch(self, &[(a, al), (b, bl)])
            }
        }
    };
    ($op:ty: 3) => {
        impl CustomOp3 for $op {
            fn name(&self) -> &'static str {
                <$op as GpuOp>::NAME
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
                bail!("{}: a GPU kernel, called on the CPU", <$op as GpuOp>::NAME)
            }

            fn cuda_fwd(
                &self,
                a: &CudaStorage,
                al: &Layout,
                b: &CudaStorage,
                bl: &Layout,
                c: &CudaStorage,
                cl: &Layout,
            ) -> Result<(CudaStorage, Shape)> {
                dispatch(self, &[(a, al), (b, bl), (c, cl)])
            }
        }
    };
}

/// A kernel's output buffer as candle storage of `shape`.
fn output<T: Float>(
    out: CudaSlice<T>,
    dev: &CudaDevice,
    shape: impl Into<Shape>,
) -> Result<(CudaStorage, Shape)> {
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), shape.into()))
}

/// `softmax(scale · scores + mask)` over the last dimension of attention scores `[b, kv, n_rep ·
/// queries, keys]` (bf16 or f32, in that dtype), with the additive f32 mask `[b | 1, 1, 1,
/// queries, keys]`.
pub fn attention_softmax(
    scores: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
    queries: usize,
) -> Result<Tensor> {
    let scores = scores.contiguous()?;
    let (b, _, rows, _) = scores.dims4()?;
    if queries == 0 || rows % queries != 0 {
        bail!("attention-softmax: {rows} rows per head group for {queries} queries");
    }
    let op = AttentionSoftmax {
        scale: scale as f32,
        queries,
        rows_per_batch: scores.elem_count() / scores.dim(3)? / b,
    };
    match mask {
        Some(m) => scores.apply_op2_no_bwd(&m.to_dtype(DType::F32)?.contiguous()?, &op),
        None => scores.apply_op1_no_bwd(&op),
    }
}

struct AttentionSoftmax {
    scale: f32,
    queries: usize,
    rows_per_batch: usize,
}

impl GpuOp for AttentionSoftmax {
    const NAME: &'static str = "attention-softmax";

    /// `args`: the scores, then the mask if there is one.
    fn run<T: Float>(&self, args: &[Arg]) -> Result<(CudaStorage, Shape)> {
        let (s, sl) = args[0];
        let dev = &s.device;
        let scores = view::<T>(s, sl, Self::NAME)?;
        let (rows, keys) = rows_and_last(sl, Self::NAME)?;
        let mask = args
            .get(1)
            .map(|&(ms, ml)| view::<f32>(ms, ml, Self::NAME))
            .transpose()?;
        let mask_batch_stride = match args.get(1) {
            Some((_, ml)) if ml.dims().last().copied() != Some(keys as usize) => {
                bail!("{}: mask {:?} for {keys} keys", Self::NAME, ml.dims())
            }
            Some((_, ml)) if ml.dims().first().copied().unwrap_or(1) > 1 => {
                count(self.queries * keys as usize, Self::NAME)?
            }
            _ => 0,
        };
        let (queries, per_batch) = (
            count(self.queries, Self::NAME)?,
            count(self.rows_per_batch, Self::NAME)?,
        );
        let null = 0u64;
        let out = unsafe { dev.alloc::<T>(scores.len()) }?;
        let func = dev.get_or_load_custom_func(&kernel_name::<T>("attn_softmax"), MODULE, PTX)?;
        let mut builder = func.builder();
        builder.arg(&scores);
        match &mask {
            Some(m) => builder.arg(m),
            None => builder.arg(&null),
        };
        builder.arg(&out);
        builder.arg(&rows);
        builder.arg(&keys);
        builder.arg(&self.scale);
        builder.arg(&queries);
        builder.arg(&per_batch);
        builder.arg(&mask_batch_stride);
        unsafe { builder.launch(rows_config(rows)) }.w()?;
        output(out, dev, sl.shape().clone())
    }
}

custom_op!(AttentionSoftmax: 1);
custom_op!(AttentionSoftmax: 2);

/// The attention scores' gradient `scale · P ∘ (dP − rowsum(P ∘ dP))` from the softmax's
/// output `P` and its gradient `dP` (same shape and dtype).
pub fn attention_softmax_backward(probs: &Tensor, dprobs: &Tensor, scale: f64) -> Result<Tensor> {
    probs.contiguous()?.apply_op2_no_bwd(
        &dprobs.contiguous()?,
        &AttentionSoftmaxBackward {
            scale: scale as f32,
        },
    )
}

struct AttentionSoftmaxBackward {
    scale: f32,
}

impl GpuOp for AttentionSoftmaxBackward {
    const NAME: &'static str = "attention-softmax-backward";

    fn run<T: Float>(&self, args: &[Arg]) -> Result<(CudaStorage, Shape)> {
        let [(p, pl), (dp, dpl)] = args else {
            bail!("{}: two inputs expected", Self::NAME)
        };
        let dev = &p.device;
        let (probs, dprobs) = (
            view::<T>(p, pl, Self::NAME)?,
            view::<T>(dp, dpl, Self::NAME)?,
        );
        if pl.dims() != dpl.dims() {
            bail!("{}: {:?} and {:?}", Self::NAME, pl.dims(), dpl.dims());
        }
        let (rows, keys) = rows_and_last(pl, Self::NAME)?;
        let out = unsafe { dev.alloc::<T>(probs.len()) }?;
        let func =
            dev.get_or_load_custom_func(&kernel_name::<T>("attn_softmax_bwd"), MODULE, PTX)?;
        let mut builder = func.builder();
        builder.arg(&probs);
        builder.arg(&dprobs);
        builder.arg(&out);
        builder.arg(&rows);
        builder.arg(&keys);
        builder.arg(&self.scale);
        unsafe { builder.launch(rows_config(rows)) }.w()?;
        output(out, dev, pl.shape().clone())
    }
}

custom_op!(AttentionSoftmaxBackward: 2);

/// RMSNorm's input gradient for `x` and `grad` (`[.., h]`, same dtype) under the f32 weight
/// `[h]`.
pub fn rms_norm_backward(x: &Tensor, grad: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3_no_bwd(
        &grad.contiguous()?,
        &weight.to_dtype(DType::F32)?.contiguous()?,
        &RmsNormBackward { eps: eps as f32 },
    )
}

struct RmsNormBackward {
    eps: f32,
}

impl GpuOp for RmsNormBackward {
    const NAME: &'static str = "rms-norm-backward";

    fn run<T: Float>(&self, args: &[Arg]) -> Result<(CudaStorage, Shape)> {
        let [(x, xl), (g, gl), (w, wl)] = args else {
            bail!("{}: three inputs expected", Self::NAME)
        };
        let dev = &x.device;
        let (xs, gs, ws) = (
            view::<T>(x, xl, Self::NAME)?,
            view::<T>(g, gl, Self::NAME)?,
            view::<f32>(w, wl, Self::NAME)?,
        );
        let (rows, h) = rows_and_last(xl, Self::NAME)?;
        if xl.dims() != gl.dims() || ws.len() != h as usize {
            bail!(
                "{}: x {:?}, grad {:?}, weight {:?}",
                Self::NAME,
                xl.dims(),
                gl.dims(),
                wl.dims()
            );
        }
        let out = unsafe { dev.alloc::<T>(xs.len()) }?;
        let func = dev.get_or_load_custom_func(&kernel_name::<T>("rms_norm_bwd"), MODULE, PTX)?;
        let mut builder = func.builder();
        builder.arg(&xs);
        builder.arg(&gs);
        builder.arg(&ws);
        builder.arg(&out);
        builder.arg(&rows);
        builder.arg(&h);
        builder.arg(&self.eps);
        unsafe { builder.launch(rows_config(rows)) }.w()?;
        output(out, dev, xl.shape().clone())
    }
}

custom_op!(RmsNormBackward: 3);

/// `silu(gate) ∘ up` (same shape and dtype).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?
        .apply_op2_no_bwd(&up.contiguous()?, &SwiGlu { backward: false })
}

/// SwiGLU's gradients `(d gate, d up)` for its output's gradient `grad`.
pub fn swiglu_backward(gate: &Tensor, up: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let both = gate.contiguous()?.apply_op3_no_bwd(
        &up.contiguous()?,
        &grad.contiguous()?,
        &SwiGlu { backward: true },
    )?;
    Ok((both.get(0)?, both.get(1)?))
}

/// SwiGLU's forward (inputs gate and up) or backward (gate, up and the output's gradient; the
/// output `[2, ..]` holds d gate, then d up).
struct SwiGlu {
    backward: bool,
}

impl GpuOp for SwiGlu {
    const NAME: &'static str = "swiglu";

    fn run<T: Float>(&self, args: &[Arg]) -> Result<(CudaStorage, Shape)> {
        let (g, gl) = args[0];
        let dev = &g.device;
        let inputs: Vec<CudaView<T>> = args
            .iter()
            .map(|&(s, l)| view::<T>(s, l, Self::NAME))
            .collect::<Result<_>>()?;
        if args.iter().any(|(_, l)| l.dims() != gl.dims()) {
            let dims: Vec<&[usize]> = args.iter().map(|(_, l)| l.dims()).collect();
            bail!("{}: inputs {dims:?}", Self::NAME);
        }
        let n = inputs[0].len();
        let outputs = if self.backward { 2 } else { 1 };
        count(outputs * n, Self::NAME)?;
        let out = unsafe { dev.alloc::<T>(outputs * n) }?;
        let base = if self.backward {
            "swiglu_bwd"
        } else {
            "swiglu"
        };
        let func = dev.get_or_load_custom_func(&kernel_name::<T>(base), MODULE, PTX)?;
        let n = count(n, Self::NAME)?;
        let mut builder = func.builder();
        for input in &inputs {
            builder.arg(input);
        }
        builder.arg(&out);
        builder.arg(&n);
        unsafe { builder.launch(LaunchConfig::for_num_elems(n)) }.w()?;
        let mut dims = gl.dims().to_vec();
        if self.backward {
            dims.insert(0, 2);
        }
        output(out, dev, dims)
    }
}

custom_op!(SwiGlu: 2);
custom_op!(SwiGlu: 3);

/// Per row of `logits` `[rows, vocab]` and its u32 label: `(nll, lse)`, both `[rows]` f32, the
/// negative log-likelihood of the label and the row's log-sum-exp. A label outside the
/// vocabulary gives a NaN loss.
pub fn nll_rows(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
    let both = logits
        .contiguous()?
        .apply_op2_no_bwd(&labels.contiguous()?, &NllRows)?;
    Ok((both.get(0)?, both.get(1)?))
}

struct NllRows;

impl GpuOp for NllRows {
    const NAME: &'static str = "nll-rows";

    fn run<T: Float>(&self, args: &[Arg]) -> Result<(CudaStorage, Shape)> {
        let [(l, ll), (y, yl)] = args else {
            bail!("{}: two inputs expected", Self::NAME)
        };
        let dev = &l.device;
        let (logits, labels) = (
            view::<T>(l, ll, Self::NAME)?,
            view::<u32>(y, yl, Self::NAME)?,
        );
        let (rows, vocab) = rows_and_last(ll, Self::NAME)?;
        if labels.len() != rows as usize {
            bail!("{}: {} labels for {rows} rows", Self::NAME, labels.len());
        }
        let out = unsafe { dev.alloc::<f32>(2 * rows as usize) }?;
        let func = dev.get_or_load_custom_func(&kernel_name::<T>("nll_rows"), MODULE, PTX)?;
        let mut builder = func.builder();
        builder.arg(&logits);
        builder.arg(&labels);
        builder.arg(&out);
        builder.arg(&rows);
        builder.arg(&vocab);
        let cfg = LaunchConfig {
            grid_dim: (rows, 1, 1),
            block_dim: (LOSS_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        unsafe { builder.launch(cfg) }.w()?;
        output(out, dev, (2, rows as usize))
    }
}

custom_op!(NllRows: 2);

/// `d nll / d logits = grad · (softmax(logits) − onehot(label))` for the rows' log-sum-exps
/// `lse` and incoming gradients `grad` (both `[rows]` f32), in the logits' dtype.
pub fn nll_rows_backward(
    logits: &Tensor,
    labels: &Tensor,
    lse: &Tensor,
    grad: &Tensor,
) -> Result<Tensor> {
    let lse_grad = Tensor::stack(&[lse.to_dtype(DType::F32)?, grad.to_dtype(DType::F32)?], 0)?;
    logits
        .contiguous()?
        .apply_op3_no_bwd(&labels.contiguous()?, &lse_grad, &NllRowsBackward)
}

struct NllRowsBackward;

impl GpuOp for NllRowsBackward {
    const NAME: &'static str = "nll-rows-backward";

    fn run<T: Float>(&self, args: &[Arg]) -> Result<(CudaStorage, Shape)> {
        let [(l, ll), (y, yl), (s, sl)] = args else {
            bail!("{}: three inputs expected", Self::NAME)
        };
        let dev = &l.device;
        let (logits, labels, lse_grad) = (
            view::<T>(l, ll, Self::NAME)?,
            view::<u32>(y, yl, Self::NAME)?,
            view::<f32>(s, sl, Self::NAME)?,
        );
        let (rows, vocab) = rows_and_last(ll, Self::NAME)?;
        if labels.len() != rows as usize || lse_grad.len() != 2 * rows as usize {
            bail!(
                "{}: {} labels and {} log-sum-exps and gradients for {rows} rows",
                Self::NAME,
                labels.len(),
                lse_grad.len()
            );
        }
        let out = unsafe { dev.alloc::<T>(logits.len()) }?;
        let func = dev.get_or_load_custom_func(&kernel_name::<T>("nll_rows_bwd"), MODULE, PTX)?;
        let mut builder = func.builder();
        builder.arg(&logits);
        builder.arg(&labels);
        builder.arg(&lse_grad);
        builder.arg(&out);
        builder.arg(&rows);
        builder.arg(&vocab);
        let cfg = LaunchConfig {
            grid_dim: (vocab.div_ceil(LOSS_BLOCK).min(64), rows, 1),
            block_dim: (LOSS_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        unsafe { builder.launch(cfg) }.w()?;
        output(out, dev, ll.shape().clone())
    }
}

custom_op!(NllRowsBackward: 3);

mod optim;
mod tiles;
pub use optim::{AdamStep, adamw_parts, flatten_parts};
pub use tiles::{Kernels, Side, tile_product, tile_product_by, tiles_apply};
