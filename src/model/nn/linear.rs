//! A linear layer over a frozen base weight (dense, or quantized as in a GGUF file) with an
//! optional LoRA adapter: `y = x W^T + b + scale · (x A^T) B^T`. Only A and B ever train.

use super::device_ops;
use super::dropout::{self, LoraDropout};
use super::ops::{FrozenMatmul, LoraMatmul};
use super::weight::BaseWeight;
use crate::model::nn::Path;
use crate::model::quant::BlockMatrix;
use crate::model::quant::products::{BlockMatmul, matmul_many};
use candle_core::{DType, Module, Result, Tensor, Var};

/// Up to this many rows a quantized weight uses the quantized kernel (which also rounds the
/// activations to 8 bits); above it, and on the training path, the weight is dequantized for
/// the product so that scores and gradients are those of the stored weights.
const QUANTIZED_KERNEL_MAX_ROWS: usize = 8;

impl BaseWeight {
    /// `x W^T`, by the ops of `path`.
    pub fn forward(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?;
        let quantized_kernel = path == Path::Infer && rows <= QUANTIZED_KERNEL_MAX_ROWS;
        // The quantized kernels take f32 activations.
        let in_f32 = |f: &dyn Fn(&Tensor) -> Result<Tensor>| {
            f(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype())
        };
        match self {
            BaseWeight::Quantized(q) if quantized_kernel => in_f32(&|x| q.forward(x)),
            BaseWeight::Blocks(b) if quantized_kernel => {
                in_f32(&|x| x.contiguous()?.apply_op1_no_bwd(&BlockMatmul(b)))
            }
            _ if path == Path::Train && self.fused_on(x) => {
                x.contiguous()?.apply_op1(FrozenMatmul { w: self.clone() })
            }
            _ if path == Path::Train && !self.is_variable() => device_ops::frozen_matmul(x, self),
            BaseWeight::Dense(w) => x.broadcast_matmul(&w.t()?),
            _ => x.broadcast_matmul(&self.to_dense(x.device())?.to_dtype(x.dtype())?.t()?),
        }
    }

    /// Whether the training path can use the fused CPU ops (f32 only), which give no gradient to
    /// the weight (pretraining trains dense weights: those need theirs).
    fn fused_on(&self, x: &Tensor) -> bool {
        crate::model::nn::fused(x) && !self.is_variable()
    }
}

/// A LoRA adapter on one linear layer: A `[r, in]`, B `[out, r]`, scaled by alpha / r.
#[derive(Debug, Clone)]
pub struct LoraWeights {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
    /// While training: dropout on the adapter's input, as PEFT's `lora_dropout`.
    pub dropout: Option<LoraDropout>,
}

impl LoraWeights {
    /// The dropout probability and mask key in effect now, if any.
    pub fn dropout_now(&self) -> Option<(f32, u64)> {
        let d = self.dropout.as_ref()?;
        d.key().map(|key| (d.p, key))
    }
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

    /// The frozen parts in `dtype` (see [`BaseWeight::to_dtype`]); the adapter stays f32.
    pub fn to_dtype(self, dtype: DType) -> Result<LoraLinear> {
        Ok(LoraLinear {
            base: self.base.to_dtype(dtype)?,
            bias: self.bias.map(|b| b.to_dtype(dtype)).transpose()?,
            ..self
        })
    }

    pub fn forward(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        let lora = self.lora.as_ref().filter(|_| self.lora_enabled);
        let y = match lora {
            Some(l) if path == Path::Train && self.base.fused_on(x) => x.contiguous()?.apply_op3(
                l.a.as_tensor(),
                l.b.as_tensor(),
                LoraMatmul {
                    w: self.base.clone(),
                    scale: l.scale,
                    dropout: l.dropout_now(),
                },
            )?,
            Some(l) if path == Path::Train && !self.base.is_variable() => {
                let mask = l
                    .dropout_now()
                    .map(|(p, key)| dropout::mask_like(x, key, p))
                    .transpose()?;
                device_ops::lora_matmul(
                    x,
                    &self.base,
                    l.a.as_tensor(),
                    l.b.as_tensor(),
                    l.scale,
                    mask,
                )?
            }
            _ => self.add_adapter(x, self.base.forward(x, path)?)?,
        };
        self.add_bias(y)
    }

    /// Several layers over the same input (q/k/v, gate/up): on the inference path with few rows
    /// and block-quantized weights, the base products share one rounding of `x` and one parallel
    /// region; otherwise each layer runs on its own.
    pub fn forward_many(layers: &[&LoraLinear], x: &Tensor, path: Path) -> Result<Vec<Tensor>> {
        let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?;
        let blocks: Option<Vec<&BlockMatrix>> = layers
            .iter()
            .map(|l| match &l.base {
                BaseWeight::Blocks(b) => Some(b.as_ref()),
                _ => None,
            })
            .collect();
        let blocks = match blocks {
            Some(b) if path == Path::Infer && rows <= QUANTIZED_KERNEL_MAX_ROWS => b,
            _ => return layers.iter().map(|l| l.forward(x, path)).collect(),
        };
        let data = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let outputs = matmul_many(&blocks, &data, rows);
        let lead = &x.dims()[..x.rank() - 1];
        layers
            .iter()
            .zip(blocks)
            .zip(outputs)
            .map(|((layer, b), y)| {
                let shape: Vec<usize> = lead.iter().copied().chain([b.dims().0]).collect();
                let base = Tensor::from_vec(y, shape, x.device())?.to_dtype(x.dtype())?;
                layer.add_bias(layer.add_adapter(x, base)?)
            })
            .collect()
    }

    /// `base + scale · (x A^T) B^T` when the adapter is on (inference: no dropout; training
    /// runs the fused ops of [`LoraLinear::forward`]).
    fn add_adapter(&self, x: &Tensor, base: Tensor) -> Result<Tensor> {
        match self.lora.as_ref().filter(|_| self.lora_enabled) {
            Some(l) => {
                // A and B stay f32 (they train); the products run in the model's precision.
                let (a, b) = (
                    l.a.as_tensor().to_dtype(x.dtype())?,
                    l.b.as_tensor().to_dtype(x.dtype())?,
                );
                // Scaling the rank-r product keeps one output-sized tensor fewer.
                let low = (x.broadcast_matmul(&a.t()?)? * l.scale)?;
                base + low.broadcast_matmul(&b.t()?)?
            }
            None => Ok(base),
        }
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_core::quantized::QMatMul;

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
            dropout: None,
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

    /// A quantized weight's lookup gives the dequantized matrix's rows (on the GPU too, with
    /// `LABLENS_TEST_DEVICE=cuda:N`), and a dense one its rows.
    #[test]
    fn a_lookup_gives_the_rows_of_the_stored_matrix() -> Result<()> {
        use candle_core::quantized::{GgmlDType, QTensor};
        let choice = std::env::var("LABLENS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
        let dev = crate::model::loading::DeviceChoice::parse(&choice)
            .and_then(|c| c.device())
            .expect("LABLENS_TEST_DEVICE");
        let values: Vec<f32> = (0..4 * 256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let matrix = Tensor::from_vec(values, (4, 256), &Device::Cpu)?;
        let ids = Tensor::new(&[3u32, 0, 3, 1], &dev)?;
        for kind in [GgmlDType::Q4_0, GgmlDType::Q8_0, GgmlDType::Q4K] {
            let q = QTensor::quantize_onto(&matrix, kind, &dev)?;
            let weight = BaseWeight::Quantized(QMatMul::from_qtensor(q)?);
            let want = weight.to_dense(&dev)?.index_select(&ids, 0)?;
            let got = weight.gather_rows(&ids)?;
            assert_eq!(got.dtype(), DType::F32, "{kind:?}");
            assert_eq!(got.to_vec2::<f32>()?, want.to_vec2::<f32>()?, "{kind:?}");
        }
        let dense = matrix.to_device(&dev)?;
        let rows = BaseWeight::Dense(dense.clone()).gather_rows(&ids)?;
        assert_eq!(
            rows.to_vec2::<f32>()?,
            dense.index_select(&ids, 0)?.to_vec2::<f32>()?
        );
        Ok(())
    }
}
