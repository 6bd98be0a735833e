//! The optimizer's kernels: every adapter matrix's gradient gathered into one flat vector, and
//! the AdamW step over all of them, each one launch that reads and writes the matrices through a
//! table of their device addresses (candle would launch a copy per matrix).

use super::{Arg, Float, GpuOp, MODULE, PTX, count, device_pointer, dispatch, output, view};
use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};

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
            Some(t) => table.push(device_pointer(t, op)?),
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

impl GpuOp for FlattenParts {
    const NAME: &'static str = "flatten-parts";

    /// `args`: any f32 tensor on the GPU (for the device).
    fn run<T: Float>(&self, args: &[Arg]) -> Result<(CudaStorage, Shape)> {
        let dev = &args[0].0.device;
        let (parts, total) = table_sizes(&self.table);
        let table = dev.cuda_stream().clone_htod(&self.table).w()?;
        let out = unsafe { dev.alloc::<f32>(total.max(1)) }?;
        let func = dev.get_or_load_custom_func("flatten_parts_f32", MODULE, PTX)?;
        let parts = count(parts, Self::NAME)?;
        let mut builder = func.builder();
        builder.arg(&table);
        builder.arg(&parts);
        builder.arg(&out);
        unsafe { builder.launch(flat_config(total)) }.w()?;
        output(out, dev, total)
    }
}

custom_op!(FlattenParts: 1);

/// `(parts, total length)` of a [`parts_table`].
fn table_sizes(table: &[u64]) -> (usize, usize) {
    (
        (table.len() - 1) / 2,
        table.last().copied().unwrap_or(0) as usize,
    )
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

impl GpuOp for AdamParts {
    const NAME: &'static str = "adamw-parts";

    /// `args`: the flat gradient, m and v (f32).
    fn run<T: Float>(&self, args: &[Arg]) -> Result<(CudaStorage, Shape)> {
        let dev = &args[0].0.device;
        let flat: Vec<CudaView<f32>> = args
            .iter()
            .map(|&(s, l)| view::<f32>(s, l, Self::NAME))
            .collect::<Result<_>>()?;
        let (parts, total) = table_sizes(&self.table);
        if flat.len() != 3 || flat.iter().any(|f| f.len() != total) {
            let lens: Vec<usize> = flat.iter().map(|f| f.len()).collect();
            bail!(
                "{}: gradient and moments of {lens:?} for {total} parameters",
                Self::NAME
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
        for f in &flat {
            builder.arg(f);
        }
        builder.arg(&out);
        for constant in [&s.b1, &s.b2, &s.eps, &s.decay, &s.step_size, &s.sqrt_c2] {
            builder.arg(constant);
        }
        unsafe { builder.launch(flat_config(total)) }.w()?;
        output(out, dev, (2, total))
    }
}

custom_op!(AdamParts: 3);
