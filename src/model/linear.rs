//! A linear layer over a frozen base weight (dense, or quantized as in a GGUF file) with an
//! optional LoRA adapter: `y = x W^T + b + scale · (x A^T) B^T`. Only A and B ever train.

use super::blocks::{BlockMatmul, BlockMatrix};
use super::llama::Path;
use super::ops::{FrozenMatmul, LoraMatmul};
use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Result, Tensor, Var};
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

/// Up to this many rows a quantized weight uses the quantized kernel (which also rounds the
/// activations to 8 bits); above it, and on the training path, the weight is dequantized for
/// the product so that scores and gradients are those of the stored weights.
const QUANTIZED_KERNEL_MAX_ROWS: usize = 8;

impl BaseWeight {
    pub fn forward(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?;
        let quantized_kernel = path == Path::Infer && rows <= QUANTIZED_KERNEL_MAX_ROWS;
        match self {
            BaseWeight::Quantized(q) if quantized_kernel => q.forward(x),
            BaseWeight::Blocks(b) if quantized_kernel => {
                x.contiguous()?.apply_op1_no_bwd(&BlockMatmul(b))
            }
            _ if path == Path::Train && self.fused_on(x) => {
                x.contiguous()?.apply_op1(FrozenMatmul { w: self.clone() })
            }
            BaseWeight::Dense(w) => x.broadcast_matmul(&w.t()?),
            _ => x.broadcast_matmul(&self.to_dense(x.device())?.t()?),
        }
    }

    /// Whether the training path can use the fused CPU ops, which give no gradient to the weight
    /// (pretraining trains dense weights: those need theirs).
    fn fused_on(&self, x: &Tensor) -> bool {
        x.device().is_cpu() && !matches!(self, BaseWeight::Dense(w) if w.is_variable())
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
            BaseWeight::Quantized(_) => self.to_dense(ids.device())?.index_select(ids, 0),
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

    /// The weight as a dense f32 tensor on `device` (dequantized when needed).
    pub fn to_dense(&self, device: &Device) -> Result<Tensor> {
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

/// A LoRA adapter on one linear layer: A `[r, in]`, B `[out, r]`, scaled by alpha / r.
#[derive(Debug, Clone)]
pub struct LoraWeights {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
}

#[derive(Debug, Clone)]
pub struct LoraLinear {
    pub base: BaseWeight,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraWeights>,
    /// Switches the adapter off without dropping it, to compare base and tuned outputs.
    pub lora_enabled: bool,
}

impl LoraLinear {
    pub fn new(base: BaseWeight, bias: Option<Tensor>) -> Self {
        Self {
            base,
            bias,
            lora: None,
            lora_enabled: true,
        }
    }

    pub fn forward(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        let lora = self.lora.as_ref().filter(|_| self.lora_enabled);
        let mut y = match lora {
            Some(l) if path == Path::Train && self.base.fused_on(x) => x.contiguous()?.apply_op3(
                l.a.as_tensor(),
                l.b.as_tensor(),
                LoraMatmul {
                    w: self.base.clone(),
                    scale: l.scale,
                },
            )?,
            Some(l) => {
                // Scaling the rank-r product keeps one output-sized tensor fewer.
                let low = (x.broadcast_matmul(&l.a.as_tensor().t()?)? * l.scale)?;
                (self.base.forward(x, path)? + low.broadcast_matmul(&l.b.as_tensor().t()?)?)?
            }
            None => self.base.forward(x, path)?,
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn lora_adds_scaled_low_rank_update_and_can_be_switched_off() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev)?;
        let mut layer = LoraLinear::new(BaseWeight::Dense(w), None);
        let x = Tensor::new(&[[2f32, 3.0]], &dev)?;
        assert_eq!(
            layer.forward(&x, Path::Infer)?.to_vec2::<f32>()?,
            [[2.0, 3.0, 5.0]]
        );
        layer.lora = Some(LoraWeights {
            a: Var::from_tensor(&Tensor::new(&[[1f32, 1.0]], &dev)?)?,
            b: Var::from_tensor(&Tensor::new(&[[1f32], [0.0], [2.0]], &dev)?)?,
            scale: 0.5,
        });
        // x A^T = 5; B · 5 · 0.5 = [2.5, 0, 5].
        assert_eq!(
            layer.forward(&x, Path::Infer)?.to_vec2::<f32>()?,
            [[4.5, 3.0, 10.0]]
        );
        layer.lora_enabled = false;
        assert_eq!(
            layer.forward(&x, Path::Infer)?.to_vec2::<f32>()?,
            [[2.0, 3.0, 5.0]]
        );
        assert_eq!(layer.base.dims()?, (3, 2));
        Ok(())
    }
}
