//! Products with a frozen weight that stays quantized on the GPU: each product dequantizes the
//! weight a tile at a time into shared memory, never whole, and multiplies on the tensor cores in
//! bf16. On a Hopper GPU (compute capability 9.0, a build for 90) the kernels of
//! tile_products_sm90.cu (warpgroup products, 128 × 64 tiles), elsewhere those of
//! tile_products.cu (warp products, 128 × 32 tiles). The input is bf16; the weight one of GGUF's
//! Q4_0, Q4_1, Q8_0 or Q4_K with rows and columns multiples of 32.

use super::{count, output};
use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{
    CpuStorage, CudaDevice, CudaStorage, CustomOp1, D, DType, Layout, Result, Shape, Tensor, bail,
};
use half::bf16;
use std::sync::{Arc, Mutex};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/tile_products.ptx"));
const MODULE: &str = "lablens_tile_products";
/// Hopper's kernels; empty in a build for another compute capability.
const HOPPER_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/tile_products_sm90.ptx"));
const HOPPER_MODULE: &str = "lablens_tile_products_sm90";
/// The dynamic shared memory a block of Hopper's kernels needs (tile_products_sm90.cu's
/// SHARED_BYTES: three stages of the input's tile, two of the weight's, 16 KB each, and 1 KB to
/// align them).
const HOPPER_SHARED_BYTES: u32 = 5 * 16384 + 1024;
/// The output tile of a block (both files' TILE) and its threads.
const TILE: u32 = 128;
const THREADS: u32 = 256;

/// Which kernels compute a tile product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// tile_products.cu's, for any GPU with bf16 tensor cores.
    Warp,
    /// tile_products_sm90.cu's, for Hopper GPUs in a build for compute capability 90.
    Warpgroup,
}

impl Kernels {
    /// The fastest kernels `dev` runs, asked of the driver once per GPU (every frozen product
    /// of a training step asks).
    pub fn best(dev: &CudaDevice) -> Kernels {
        static BEST: Mutex<Vec<(usize, Kernels)>> = Mutex::new(Vec::new());
        let context = dev.cuda_stream().context().clone();
        let ordinal = context.ordinal();
        let mut known = BEST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(_, kernels)) = known.iter().find(|(gpu, _)| *gpu == ordinal) {
            return kernels;
        }
        let major =
            context.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        let kernels = if !HOPPER_PTX.is_empty() && major == Ok(9) {
            Kernels::Warpgroup
        } else {
            Kernels::Warp
        };
        known.push((ordinal, kernels));
        kernels
    }
}

/// Which product with a weight `W` `[rows, cols]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `x Wᵀ`, `x` `[.., cols]` (a layer's forward).
    Transposed,
    /// `x W`, `x` `[.., rows]` (its input's gradient).
    Plain,
}

/// The kernels' name for a weight format, if they read it.
fn format_name(dtype: GgmlDType) -> Option<&'static str> {
    match dtype {
        GgmlDType::Q4_0 => Some("q4_0"),
        GgmlDType::Q4_1 => Some("q4_1"),
        GgmlDType::Q8_0 => Some("q8_0"),
        GgmlDType::Q4K => Some("q4_k"),
        _ => None,
    }
}

/// Whether [`tile_product`] takes `w` with inputs like `x`: a bf16 input on a GPU, a weight on a
/// GPU in one of the kernels' formats, both of its dimensions multiples of 32.
pub fn tiles_apply(x: &Tensor, w: &QTensor) -> bool {
    x.dtype() == DType::BF16
        && x.device().is_cuda()
        && w.device().is_cuda()
        && format_name(w.dtype()).is_some()
        && w.shape()
            .dims2()
            .is_ok_and(|(rows, cols)| rows % 32 == 0 && cols % 32 == 0)
}

/// `x Wᵀ` or `x W` (see [`Side`]) for a bf16 `x` and a weight [`tiles_apply`] accepts, in bf16,
/// by the fastest kernels of `x`'s GPU.
pub fn tile_product(x: &Tensor, w: &Arc<QTensor>, side: Side) -> Result<Tensor> {
    tile_product_by(x, w, side, None)
}

/// [`tile_product`] by the given kernels (`None`: the fastest the GPU runs); asking a GPU for
/// kernels it cannot run is an error.
pub fn tile_product_by(
    x: &Tensor,
    w: &Arc<QTensor>,
    side: Side,
    kernels: Option<Kernels>,
) -> Result<Tensor> {
    let (rows, cols) = w.shape().dims2()?;
    let (reduce, width) = match side {
        Side::Transposed => (cols, rows),
        Side::Plain => (rows, cols),
    };
    if x.dim(D::Minus1)? != reduce {
        bail!(
            "tile-product: input {:?} for a weight [{rows}, {cols}] ({side:?})",
            x.dims()
        );
    }
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = width;
    }
    let mut rows_in = x.reshape(((), reduce))?.contiguous()?;
    // The kernel copies the input 16 bytes at a time: a view starting mid-row is copied first.
    if rows_in.layout().start_offset() % 8 != 0 {
        rows_in = rows_in.affine(1.0, 0.0)?;
    }
    let op = TileProduct {
        w: w.clone(),
        side,
        kernels,
        rows: count(rows, "tile-product")?,
        cols: count(cols, "tile-product")?,
    };
    rows_in.apply_op1_no_bwd(&op)?.reshape(dims)
}

struct TileProduct {
    w: Arc<QTensor>,
    side: Side,
    kernels: Option<Kernels>,
    rows: u32,
    cols: u32,
}

impl CustomOp1 for TileProduct {
    fn name(&self) -> &'static str {
        "tile-product"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("tile-product: a GPU kernel, called on the CPU")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = &s.device;
        let Some(format) = format_name(self.w.dtype()) else {
            bail!("tile-product: no kernel reads {:?}", self.w.dtype());
        };
        let (m, reduce) = l.shape().dims2()?;
        let Some((start, end)) = l.contiguous_offsets() else {
            bail!("tile-product: the input is not contiguous");
        };
        if start % 8 != 0 || reduce % 32 != 0 {
            bail!("tile-product: input rows of {reduce} starting at element {start}");
        }
        let input = s.as_cuda_slice::<bf16>()?.slice(start..end);
        let (suffix, width) = match self.side {
            Side::Transposed => ("t", self.rows),
            Side::Plain => ("n", self.cols),
        };
        let block_values = self.w.dtype().block_size() as u32;
        let row_bytes = self.cols / block_values * self.w.dtype().type_size() as u32;
        let m = count(m, "tile-product")?;
        let out = unsafe { dev.alloc::<bf16>(m as usize * width as usize) }?;
        let stream = dev.cuda_stream();
        let (weights, _guard) = self.w.device_ptr_with_guard(&stream)?;
        let weights = weights as u64;
        let best = Kernels::best(dev);
        let kernels = self.kernels.unwrap_or(best);
        if kernels == Kernels::Warpgroup && best != Kernels::Warpgroup {
            bail!("tile-product: Hopper's kernels asked of a GPU or build without them");
        }
        let (func, shared_mem_bytes) = match kernels {
            Kernels::Warp => (
                dev.get_or_load_custom_func(&format!("tile_{format}_{suffix}"), MODULE, PTX)?,
                0,
            ),
            Kernels::Warpgroup => {
                let func = dev.get_or_load_custom_func(
                    &format!("wgmma_{format}_{suffix}"),
                    HOPPER_MODULE,
                    HOPPER_PTX,
                )?;
                func.set_attribute(
                    CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    HOPPER_SHARED_BYTES as i32,
                )
                .w()?;
                (func, HOPPER_SHARED_BYTES)
            }
        };
        let mut builder = func.builder();
        builder.arg(&input);
        builder.arg(&weights);
        builder.arg(&out);
        builder.arg(&m);
        builder.arg(&self.rows);
        builder.arg(&self.cols);
        builder.arg(&row_bytes);
        let cfg = LaunchConfig {
            grid_dim: (width.div_ceil(TILE), m.div_ceil(TILE), 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes,
        };
        unsafe { builder.launch(cfg) }.w()?;
        output(out, dev, (m as usize, width as usize))
    }
}
