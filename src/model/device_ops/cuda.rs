//! The training path's fused GPU kernels (train_kernels.cu, compiled to PTX by build.rs): the
//! attention softmax and its backward, RMSNorm's backward, SwiGLU and its backward, the loss's
//! per-row log-sum-exp and its backward, and the optimizer's flatten and AdamW step over every
//! adapter matrix at once. Each replaces a chain of candle's ops (casts, broadcasts, reductions,
//! or one copy per matrix) by one pass that computes in f32 and rounds once. bf16 and f32,
//! contiguous inputs; the callers keep candle's composites for the CPU.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaView, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, WrapErr, kernel_name};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
    WithDType, bail,
};
use half::bf16;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/train_kernels.ptx"));
const MODULE: &str = "lablens_train_kernels";
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

fn elementwise_config(n: u32) -> LaunchConfig {
    LaunchConfig::for_num_elems(n)
}

fn same_dtype(op: &str, a: DType, b: DType) -> Result<()> {
    if a != b {
        bail!("{op}: inputs are {a:?} and {b:?}");
    }
    Ok(())
}

/// `$run::<T>(..)` for the storage's dtype, bf16 or f32.
macro_rules! by_dtype {
    ($op:expr, $dtype:expr, $run:ident($($arg:expr),*)) => {
        match $dtype {
            DType::BF16 => $run::<bf16>($($arg),*),
            DType::F32 => $run::<f32>($($arg),*),
            other => bail!("{}: {other:?} on a GPU (bf16 or f32 expected)", $op),
        }
    };
}

trait Float: CudaDType + DeviceRepr + WithDType {}
impl Float for bf16 {}
impl Float for f32 {}

fn gpu_only(op: &str) -> Result<(CpuStorage, Shape)> {
    bail!("{op}: a GPU kernel, called on the CPU")
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
    let op = AttentionSoftmax {
        scale: scale as f32,
        queries,
        rows_per_batch: scores.elem_count() / scores.dim(3)? / b,
    };
    if queries == 0 || rows % queries != 0 {
        bail!("attention-softmax: {rows} rows per head group for {queries} queries");
    }
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

impl AttentionSoftmax {
    const NAME: &'static str = "attention-softmax";
}

fn attention_softmax_run<T: Float>(
    op: &AttentionSoftmax,
    (s, sl): (&CudaStorage, &Layout),
    mask: Option<(&CudaStorage, &Layout)>,
) -> Result<(CudaStorage, Shape)> {
    const NAME: &str = AttentionSoftmax::NAME;
    let dev = &s.device;
    let scores = view::<T>(s, sl, NAME)?;
    let (rows, keys) = rows_and_last(sl, NAME)?;
    let mask_batch_stride = match mask {
        Some((_, ml)) if ml.dims().first().copied().unwrap_or(1) > 1 => {
            count(op.queries * keys as usize, NAME)?
        }
        _ => 0,
    };
    if let Some((_, ml)) = mask
        && ml.dims().last().copied() != Some(keys as usize)
    {
        bail!("{NAME}: mask {:?} for {keys} keys", ml.dims());
    }
    let out = unsafe { dev.alloc::<T>(scores.len()) }?;
    let func = dev.get_or_load_custom_func(&kernel_name::<T>("attn_softmax"), MODULE, PTX)?;
    let (scale, queries, per_batch) = (
        op.scale,
        count(op.queries, NAME)?,
        count(op.rows_per_batch, NAME)?,
    );
    let null = 0u64;
    let mask_view = mask.map(|(ms, ml)| view::<f32>(ms, ml, NAME)).transpose()?;
    let mut builder = func.builder();
    builder.arg(&scores);
    match &mask_view {
        Some(m) => builder.arg(m),
        None => builder.arg(&null),
    };
    builder.arg(&out);
    builder.arg(&rows);
    builder.arg(&keys);
    builder.arg(&scale);
    builder.arg(&queries);
    builder.arg(&per_batch);
    builder.arg(&mask_batch_stride);
    unsafe { builder.launch(rows_config(rows)) }.w()?;
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        sl.shape().clone(),
    ))
}

impl CustomOp1 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        gpu_only(Self::NAME)
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        by_dtype!(
            Self::NAME,
            s.dtype(),
            attention_softmax_run(self, (s, l), None)
        )
    }
}

impl CustomOp2 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        gpu_only(Self::NAME)
    }

    fn cuda_fwd(
        &self,
        s: &CudaStorage,
        l: &Layout,
        m: &CudaStorage,
        ml: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        by_dtype!(
            Self::NAME,
            s.dtype(),
            attention_softmax_run(self, (s, l), Some((m, ml)))
        )
    }
}

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

fn attention_softmax_backward_run<T: Float>(
    scale: f32,
    p: &CudaStorage,
    pl: &Layout,
    dp: &CudaStorage,
    dpl: &Layout,
) -> Result<(CudaStorage, Shape)> {
    const NAME: &str = "attention-softmax-backward";
    let dev = &p.device;
    let (probs, dprobs) = (view::<T>(p, pl, NAME)?, view::<T>(dp, dpl, NAME)?);
    if pl.dims() != dpl.dims() {
        bail!("{NAME}: {:?} and {:?}", pl.dims(), dpl.dims());
    }
    let (rows, keys) = rows_and_last(pl, NAME)?;
    let out = unsafe { dev.alloc::<T>(probs.len()) }?;
    let func = dev.get_or_load_custom_func(&kernel_name::<T>("attn_softmax_bwd"), MODULE, PTX)?;
    let mut builder = func.builder();
    builder.arg(&probs);
    builder.arg(&dprobs);
    builder.arg(&out);
    builder.arg(&rows);
    builder.arg(&keys);
    builder.arg(&scale);
    unsafe { builder.launch(rows_config(rows)) }.w()?;
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        pl.shape().clone(),
    ))
}

impl CustomOp2 for AttentionSoftmaxBackward {
    fn name(&self) -> &'static str {
        "attention-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        gpu_only(self.name())
    }

    fn cuda_fwd(
        &self,
        p: &CudaStorage,
        pl: &Layout,
        dp: &CudaStorage,
        dpl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        same_dtype(self.name(), p.dtype(), dp.dtype())?;
        by_dtype!(
            self.name(),
            p.dtype(),
            attention_softmax_backward_run(self.scale, p, pl, dp, dpl)
        )
    }
}

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

fn rms_norm_backward_run<T: Float>(
    eps: f32,
    (x, xl): (&CudaStorage, &Layout),
    (g, gl): (&CudaStorage, &Layout),
    (w, wl): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    const NAME: &str = "rms-norm-backward";
    let dev = &x.device;
    let (xs, gs, ws) = (
        view::<T>(x, xl, NAME)?,
        view::<T>(g, gl, NAME)?,
        view::<f32>(w, wl, NAME)?,
    );
    let (rows, h) = rows_and_last(xl, NAME)?;
    if xl.dims() != gl.dims() || ws.len() != h as usize {
        bail!(
            "{NAME}: x {:?}, grad {:?}, weight {:?}",
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
    builder.arg(&eps);
    unsafe { builder.launch(rows_config(rows)) }.w()?;
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        xl.shape().clone(),
    ))
}

impl CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms-norm-backward"
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
        gpu_only(self.name())
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        same_dtype(self.name(), x.dtype(), g.dtype())?;
        by_dtype!(
            self.name(),
            x.dtype(),
            rms_norm_backward_run(self.eps, (x, xl), (g, gl), (w, wl))
        )
    }
}

/// `silu(gate) ∘ up` (same shape and dtype).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?
        .apply_op2_no_bwd(&up.contiguous()?, &SwiGlu)
}

struct SwiGlu;

fn swiglu_run<T: Float>(
    (g, gl): (&CudaStorage, &Layout),
    (u, ul): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    const NAME: &str = "swiglu";
    let dev = &g.device;
    let (gate, up) = (view::<T>(g, gl, NAME)?, view::<T>(u, ul, NAME)?);
    if gl.dims() != ul.dims() {
        bail!("{NAME}: gate {:?}, up {:?}", gl.dims(), ul.dims());
    }
    let n = count(gate.len(), NAME)?;
    let out = unsafe { dev.alloc::<T>(gate.len()) }?;
    let func = dev.get_or_load_custom_func(&kernel_name::<T>("swiglu"), MODULE, PTX)?;
    let mut builder = func.builder();
    builder.arg(&gate);
    builder.arg(&up);
    builder.arg(&out);
    builder.arg(&n);
    unsafe { builder.launch(elementwise_config(n)) }.w()?;
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        gl.shape().clone(),
    ))
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        gpu_only(self.name())
    }

    fn cuda_fwd(
        &self,
        g: &CudaStorage,
        gl: &Layout,
        u: &CudaStorage,
        ul: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        same_dtype(self.name(), g.dtype(), u.dtype())?;
        by_dtype!(self.name(), g.dtype(), swiglu_run((g, gl), (u, ul)))
    }
}

/// SwiGLU's gradients `(d gate, d up)` for its output's gradient `grad`.
pub fn swiglu_backward(gate: &Tensor, up: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let both = gate.contiguous()?.apply_op3_no_bwd(
        &up.contiguous()?,
        &grad.contiguous()?,
        &SwiGluBackward,
    )?;
    Ok((both.get(0)?, both.get(1)?))
}

struct SwiGluBackward;

fn swiglu_backward_run<T: Float>(
    (g, gl): (&CudaStorage, &Layout),
    (u, ul): (&CudaStorage, &Layout),
    (c, cl): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    const NAME: &str = "swiglu-backward";
    let dev = &g.device;
    let (gate, up, grad) = (
        view::<T>(g, gl, NAME)?,
        view::<T>(u, ul, NAME)?,
        view::<T>(c, cl, NAME)?,
    );
    if gl.dims() != ul.dims() || gl.dims() != cl.dims() {
        bail!(
            "{NAME}: gate {:?}, up {:?}, grad {:?}",
            gl.dims(),
            ul.dims(),
            cl.dims()
        );
    }
    let n = count(gate.len(), NAME)?;
    count(2 * gate.len(), NAME)?;
    let out = unsafe { dev.alloc::<T>(2 * gate.len()) }?;
    let func = dev.get_or_load_custom_func(&kernel_name::<T>("swiglu_bwd"), MODULE, PTX)?;
    let mut builder = func.builder();
    builder.arg(&gate);
    builder.arg(&up);
    builder.arg(&grad);
    builder.arg(&out);
    builder.arg(&n);
    unsafe { builder.launch(elementwise_config(n)) }.w()?;
    let mut dims = vec![2];
    dims.extend_from_slice(gl.dims());
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), dims.into()))
}

impl CustomOp3 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
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
        gpu_only(self.name())
    }

    fn cuda_fwd(
        &self,
        g: &CudaStorage,
        gl: &Layout,
        u: &CudaStorage,
        ul: &Layout,
        c: &CudaStorage,
        cl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        same_dtype(self.name(), g.dtype(), u.dtype())?;
        same_dtype(self.name(), g.dtype(), c.dtype())?;
        by_dtype!(
            self.name(),
            g.dtype(),
            swiglu_backward_run((g, gl), (u, ul), (c, cl))
        )
    }
}

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

fn nll_rows_run<T: Float>(
    (l, ll): (&CudaStorage, &Layout),
    (y, yl): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    const NAME: &str = "nll-rows";
    let dev = &l.device;
    let (logits, labels) = (view::<T>(l, ll, NAME)?, view::<u32>(y, yl, NAME)?);
    let (rows, vocab) = rows_and_last(ll, NAME)?;
    if labels.len() != rows as usize {
        bail!("{NAME}: {} labels for {rows} rows", labels.len());
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
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        (2, rows as usize).into(),
    ))
}

impl CustomOp2 for NllRows {
    fn name(&self) -> &'static str {
        "nll-rows"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        gpu_only(self.name())
    }

    fn cuda_fwd(
        &self,
        l: &CudaStorage,
        ll: &Layout,
        y: &CudaStorage,
        yl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        if y.dtype() != DType::U32 {
            bail!("{}: labels are {:?}, u32 expected", self.name(), y.dtype());
        }
        by_dtype!(self.name(), l.dtype(), nll_rows_run((l, ll), (y, yl)))
    }
}

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

fn nll_rows_backward_run<T: Float>(
    (l, ll): (&CudaStorage, &Layout),
    (y, yl): (&CudaStorage, &Layout),
    (s, sl): (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    const NAME: &str = "nll-rows-backward";
    let dev = &l.device;
    let (logits, labels, lse_grad) = (
        view::<T>(l, ll, NAME)?,
        view::<u32>(y, yl, NAME)?,
        view::<f32>(s, sl, NAME)?,
    );
    let (rows, vocab) = rows_and_last(ll, NAME)?;
    if labels.len() != rows as usize || lse_grad.len() != 2 * rows as usize {
        bail!(
            "{NAME}: {} labels and {} log-sum-exps and gradients for {rows} rows",
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
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        ll.shape().clone(),
    ))
}

impl CustomOp3 for NllRowsBackward {
    fn name(&self) -> &'static str {
        "nll-rows-backward"
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
        gpu_only(self.name())
    }

    fn cuda_fwd(
        &self,
        l: &CudaStorage,
        ll: &Layout,
        y: &CudaStorage,
        yl: &Layout,
        s: &CudaStorage,
        sl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        if y.dtype() != DType::U32 {
            bail!("{}: labels are {:?}, u32 expected", self.name(), y.dtype());
        }
        by_dtype!(
            self.name(),
            l.dtype(),
            nll_rows_backward_run((l, ll), (y, yl), (s, sl))
        )
    }
}

/// The device pointer of an f32 tensor's first element.
fn f32_pointer(t: &Tensor, op: &str) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cuda(cs) = &*storage else {
        bail!("{op}: a tensor is not on the GPU");
    };
    if !layout.is_contiguous() {
        bail!("{op}: a tensor is not contiguous");
    }
    let slice = cs.as_cuda_slice::<f32>()?;
    let stream = cs.device.cuda_stream();
    let (ptr, _sync) = slice.device_ptr(&stream);
    Ok(ptr + (layout.start_offset() * std::mem::size_of::<f32>()) as u64)
}

/// The table the flat kernels read: each part's pointer (0 for none), then the parts' starts in
/// the flat vector and its total length (`spans` are `(start, len)` in order, contiguous).
fn parts_table(parts: &[Option<&Tensor>], spans: &[(usize, usize)], op: &str) -> Result<Vec<u64>> {
    if parts.len() != spans.len() {
        bail!("{op}: {} tensors for {} spans", parts.len(), spans.len());
    }
    let mut table = Vec::with_capacity(2 * parts.len() + 1);
    for (part, &(_, len)) in parts.iter().zip(spans) {
        match part {
            Some(t) if t.dtype() != DType::F32 || t.elem_count() != len => {
                bail!(
                    "{op}: a tensor is {:?} {:?}, f32 of {len} expected",
                    t.dtype(),
                    t.dims()
                )
            }
            Some(t) => table.push(f32_pointer(t, op)?),
            None => table.push(0),
        }
    }
    table.extend(spans.iter().map(|&(start, _)| start as u64));
    table.push(spans.last().map_or(0, |&(start, len)| (start + len) as u64));
    Ok(table)
}

/// Blocks for a grid-stride loop over `total` elements (the kernels loop over the rest).
fn flat_config(total: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (total.div_ceil(256).clamp(1, 4096) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The f32 tensors `parts` (zeros for `None`) one after another as one flat vector laid out by
/// `spans`, in one launch (candle's `cat` launches a copy per tensor). `like` is any tensor on
/// the GPU they live on.
pub fn flatten_parts(
    parts: &[Option<&Tensor>],
    spans: &[(usize, usize)],
    like: &Tensor,
) -> Result<Tensor> {
    let contiguous: Vec<Option<Tensor>> = parts
        .iter()
        .map(|p| p.map(Tensor::contiguous).transpose())
        .collect::<Result<_>>()?;
    let refs: Vec<Option<&Tensor>> = contiguous.iter().map(Option::as_ref).collect();
    let table = parts_table(&refs, spans, FlattenParts::NAME)?;
    let out = like.apply_op1_no_bwd(&FlattenParts { table })?;
    // The table's pointers are read by the launch queued above; the parts outlive it here.
    drop(contiguous);
    Ok(out)
}

struct FlattenParts {
    table: Vec<u64>,
}

impl FlattenParts {
    const NAME: &'static str = "flatten-parts";

    fn parts(&self) -> usize {
        (self.table.len() - 1) / 2
    }

    fn total(&self) -> usize {
        self.table.last().copied().unwrap_or(0) as usize
    }
}

impl CustomOp1 for FlattenParts {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        gpu_only(Self::NAME)
    }

    fn cuda_fwd(&self, like: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = &like.device;
        let total = self.total();
        let table = dev.cuda_stream().clone_htod(&self.table).w()?;
        let out = unsafe { dev.alloc::<f32>(total.max(1)) }?;
        let func = dev.get_or_load_custom_func("flatten_parts_f32", MODULE, PTX)?;
        let parts = count(self.parts(), Self::NAME)?;
        let mut builder = func.builder();
        builder.arg(&table);
        builder.arg(&parts);
        builder.arg(&out);
        unsafe { builder.launch(flat_config(total)) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), total.into()))
    }
}

/// AdamW's constants for one step (see train_kernels.cu's `adamw_parts_f32`).
pub struct AdamStep {
    pub b1: f32,
    pub b2: f32,
    pub eps: f32,
    /// `1 − lr · weight decay`.
    pub decay: f32,
    /// `lr / (1 − β1^t)`.
    pub step_size: f32,
    /// `sqrt(1 − β2^t)`.
    pub sqrt_c2: f32,
}

/// One AdamW step in one launch: each f32 parameter of `params` (laid out in the flat vectors
/// by `spans`) is updated in place from the flat gradient and moments; returns the new moments
/// `(m, v)`.
pub fn adamw_parts(
    params: &[&Tensor],
    spans: &[(usize, usize)],
    grads: &Tensor,
    (m, v): (&Tensor, &Tensor),
    step: AdamStep,
) -> Result<(Tensor, Tensor)> {
    let parts: Vec<Option<&Tensor>> = params.iter().map(|p| Some(*p)).collect();
    let table = parts_table(&parts, spans, AdamParts::NAME)?;
    let op = AdamParts { table, step };
    let moments = grads
        .contiguous()?
        .apply_op3_no_bwd(&m.contiguous()?, &v.contiguous()?, &op)?;
    Ok((moments.get(0)?, moments.get(1)?))
}

struct AdamParts {
    table: Vec<u64>,
    step: AdamStep,
}

impl AdamParts {
    const NAME: &'static str = "adamw-parts";
}

impl CustomOp3 for AdamParts {
    fn name(&self) -> &'static str {
        Self::NAME
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
        gpu_only(Self::NAME)
    }

    fn cuda_fwd(
        &self,
        g: &CudaStorage,
        gl: &Layout,
        m: &CudaStorage,
        ml: &Layout,
        v: &CudaStorage,
        vl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = &g.device;
        let (grads, ms, vs) = (
            view::<f32>(g, gl, Self::NAME)?,
            view::<f32>(m, ml, Self::NAME)?,
            view::<f32>(v, vl, Self::NAME)?,
        );
        let parts = (self.table.len() - 1) / 2;
        let total = self.table.last().copied().unwrap_or(0) as usize;
        if grads.len() != total || ms.len() != total || vs.len() != total {
            bail!(
                "{}: gradient {}, moments {} and {} for {total} parameters",
                Self::NAME,
                grads.len(),
                ms.len(),
                vs.len()
            );
        }
        let table = dev.cuda_stream().clone_htod(&self.table).w()?;
        let out = unsafe { dev.alloc::<f32>(2 * total) }?;
        let func = dev.get_or_load_custom_func("adamw_parts_f32", MODULE, PTX)?;
        let parts = count(parts, Self::NAME)?;
        let s = &self.step;
        let mut builder = func.builder();
        builder.arg(&table);
        builder.arg(&parts);
        builder.arg(&grads);
        builder.arg(&ms);
        builder.arg(&vs);
        builder.arg(&out);
        builder.arg(&s.b1);
        builder.arg(&s.b2);
        builder.arg(&s.eps);
        builder.arg(&s.decay);
        builder.arg(&s.step_size);
        builder.arg(&s.sqrt_c2);
        unsafe { builder.launch(flat_config(total)) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            (2, total).into(),
        ))
    }
}
