//! The frozen weight of a layer, however it is stored: dense, quantized in candle's storage, or in
//! one of GGUF's legacy block types with the project's own kernels.

use crate::model::quant::BlockMatrix;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Result, Tensor};
use std::sync::Arc;

/// The frozen weight of a layer, `[out, in]`.
#[derive(Debug, Clone)]
pub enum BaseWeight {
    Dense(Tensor),
    /// Quantized, in candle's storage (any GGUF type, any device).
    Quantized(QMatMul),
    /// Quantized in a legacy block type, on the CPU, with the project's own kernels.
    Blocks(Arc<BlockMatrix>),
}

impl BaseWeight {
    /// A dense weight that trains (pretraining): it needs its own gradient.
    pub fn is_variable(&self) -> bool {
        matches!(self, BaseWeight::Dense(w) if w.is_variable())
    }

    /// Dense weights in `dtype`; quantized ones as they are.
    pub fn to_dtype(&self, dtype: DType) -> Result<BaseWeight> {
        Ok(match self {
            BaseWeight::Dense(w) => BaseWeight::Dense(w.to_dtype(dtype)?),
            other => other.clone(),
        })
    }

    /// Rows `ids` (`[n]`, u32) of the weight, `[n, in]`: an embedding lookup that dequantizes
    /// only the rows it needs.
    pub fn gather_rows(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            BaseWeight::Dense(w) => w.index_select(ids, 0),
            BaseWeight::Blocks(b) => {
                let rows = b.gather_rows(&ids.to_vec1::<u32>()?)?;
                Tensor::from_vec(rows, (ids.elem_count(), b.dims().1), ids.device())
            }
            BaseWeight::Quantized(QMatMul::QTensor(q)) => q.embedding(ids)?.to_dtype(DType::F32),
            BaseWeight::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => {
                w.index_select(ids, 0)?.to_dtype(DType::F32)
            }
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            BaseWeight::Dense(w) => w.dims2(),
            BaseWeight::Quantized(QMatMul::QTensor(q)) => q.shape().dims2(),
            BaseWeight::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => w.dims2(),
            BaseWeight::Blocks(b) => Ok(b.dims()),
        }
    }

    /// How the weight is stored: `f32` for dense weights, the GGML type (`Q4_1`, `Q8_0`, …) for
    /// quantized ones.
    pub fn format(&self) -> String {
        match self {
            BaseWeight::Dense(w)
            | BaseWeight::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => {
                w.dtype().as_str().to_string()
            }
            BaseWeight::Quantized(QMatMul::QTensor(q)) => format!("{:?}", q.dtype()),
            BaseWeight::Blocks(b) => b.kind().name().to_string(),
        }
    }

    /// The weight as a dense tensor on `device` (dequantized to f32 when needed; a dense weight
    /// as it is stored).
    pub fn to_dense(&self, device: &candle_core::Device) -> Result<Tensor> {
        match self {
            BaseWeight::Dense(w) => Ok(w.clone()),
            BaseWeight::Quantized(QMatMul::QTensor(q)) => q.dequantize(&q.device()),
            BaseWeight::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => {
                w.to_dtype(candle_core::DType::F32)
            }
            BaseWeight::Blocks(b) => Tensor::from_vec(b.dequantize(), b.dims(), device),
        }
    }
}
