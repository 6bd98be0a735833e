//! A frozen weight made ready for the products of one op with inputs like `x`.

#[cfg(feature = "cuda")]
use super::cuda::{self, Side};
use crate::model::nn::weight::BaseWeight;
#[cfg(feature = "cuda")]
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{D, Result, Tensor};
#[cfg(feature = "cuda")]
use std::sync::Arc;

/// A frozen weight `W` `[out, in]` for products with inputs like `x`: dense in `x`'s precision
/// on `x`'s device (a quantized weight dequantized whole, dropped with this value), or kept in
/// its GGUF blocks on a GPU, each product dequantizing it a tile at a time inside the kernel.
pub(super) enum Frozen {
    #[cfg(feature = "cuda")]
    Tiles(Arc<QTensor>),
    Dense(Tensor),
}

impl Frozen {
    /// Dense in `x`'s precision on `x`'s device: a quantized weight dequantized whole.
    pub(super) fn dense(w: &BaseWeight, x: &Tensor) -> Result<Frozen> {
        Ok(Frozen::Dense(w.to_dense(x.device())?.to_dtype(x.dtype())?))
    }

    /// The output head's weight for products with `x`: kept in its GGUF blocks where the tile
    /// kernels read it (bf16 inputs on a GPU; Q4_0, Q4_1, Q8_0, Q4_K), so that no product makes
    /// a dense copy (300 MB in bf16 for a 49,152-token head of 3,072 hidden units, 1 GB for
    /// Llama-3.1-8B's, three times that while it is dequantized through f32); dense otherwise.
    pub(super) fn head(w: &BaseWeight, x: &Tensor) -> Result<Frozen> {
        #[cfg(feature = "cuda")]
        if let BaseWeight::Quantized(QMatMul::QTensor(q)) = w
            && cuda::tiles_apply(x, q)
        {
            return Ok(Frozen::Tiles(q.clone()));
        }
        Frozen::dense(w, x)
    }

    /// A layer's weight for products with `x`: as the head's where the GPU runs the warpgroup
    /// tile kernels (on an H100 they train a Llama-3.2-3B shape's QLoRA at 0.84x to 1.08x the
    /// rate of dequantizing each weight whole, in less memory); elsewhere dense for each product
    /// (at most 117 MB in bf16, for a Llama-3.1-8B shape's MLP), which on an H100 is 2.1 to 3.6
    /// times faster than the warp tile kernels (`scripts/bench-tiles.sh`).
    pub(super) fn layer(w: &BaseWeight, x: &Tensor) -> Result<Frozen> {
        #[cfg(feature = "cuda")]
        if let candle_core::Device::Cuda(gpu) = x.device()
            && cuda::Kernels::best(gpu) != cuda::Kernels::Warpgroup
        {
            return Frozen::dense(w, x);
        }
        Frozen::head(w, x)
    }

    /// `x [.., in] · Wᵀ`, `[.., out]`.
    pub(super) fn times_transposed(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            #[cfg(feature = "cuda")]
            Frozen::Tiles(q) => cuda::tile_product(x, q, Side::Transposed),
            Frozen::Dense(w) => rows_times(x, &w.t()?),
        }
    }

    /// `g [.., out] · W`, `[.., in]`.
    pub(super) fn times(&self, g: &Tensor) -> Result<Tensor> {
        match self {
            #[cfg(feature = "cuda")]
            Frozen::Tiles(q) => cuda::tile_product(g, q, Side::Plain),
            Frozen::Dense(w) => rows_times(g, w),
        }
    }
}

/// `x [.., k] · m [k, n]` as one `[rows, k]` product, reshaped back to `[.., n]`.
pub(super) fn rows_times(x: &Tensor, m: &Tensor) -> Result<Tensor> {
    let k = x.dim(D::Minus1)?;
    let n = m.dim(1)?;
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    x.reshape(((), k))?.matmul(m)?.reshape(dims)
}
