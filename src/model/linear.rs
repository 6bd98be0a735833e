//! A linear layer over a frozen base weight (dense, or quantized as in a GGUF file) with an
//! optional LoRA adapter: `y = x W^T + b + scale · (x A^T) B^T`. Only A and B ever train.

use super::llama::Path;
use candle_core::quantized::QMatMul;
use candle_core::{Module, Result, Tensor, Var};

/// The frozen weight of a layer, `[out, in]`.
#[derive(Debug, Clone)]
pub enum BaseWeight {
    Dense(Tensor),
    Quantized(QMatMul),
}

/// Up to this many rows a quantized weight uses candle's quantized kernel (which also rounds the
/// activations to 8 bits); above it, and on the training path, the weight is dequantized for
/// the product so that scores and gradients are those of the stored weights.
const QUANTIZED_KERNEL_MAX_ROWS: usize = 8;

impl BaseWeight {
    pub fn forward(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        match self {
            BaseWeight::Dense(w) => x.broadcast_matmul(&w.t()?),
            BaseWeight::Quantized(q) => {
                let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?;
                if path == Path::Infer && rows <= QUANTIZED_KERNEL_MAX_ROWS {
                    q.forward(x)
                } else {
                    x.broadcast_matmul(&self.to_dense()?.t()?)
                }
            }
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            BaseWeight::Dense(w) => w.dims2(),
            BaseWeight::Quantized(QMatMul::QTensor(q)) => q.shape().dims2(),
            BaseWeight::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => w.dims2(),
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
        }
    }

    /// The weight as a dense f32 tensor (dequantized when needed).
    pub fn to_dense(&self) -> Result<Tensor> {
        match self {
            BaseWeight::Dense(w) => Ok(w.clone()),
            BaseWeight::Quantized(QMatMul::QTensor(q)) => q.dequantize(&q.device()),
            BaseWeight::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => {
                w.to_dtype(candle_core::DType::F32)
            }
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
        let mut y = self.base.forward(x, path)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        match (&self.lora, self.lora_enabled) {
            (Some(l), true) => {
                let low = x.broadcast_matmul(&l.a.as_tensor().t()?)?;
                let delta = low.broadcast_matmul(&l.b.as_tensor().t()?)?;
                y + (delta * l.scale)?
            }
            _ => Ok(y),
        }
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
