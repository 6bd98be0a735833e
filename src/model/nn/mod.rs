//! The layers a decoder is built of: the frozen base weight and the LoRA linear layer over it,
//! LoRA dropout, attention, and the fused training ops with their gradients (on the CPU in `ops`,
//! on a GPU and in bf16 in `device_ops`).

pub(crate) mod attention;
pub mod device_ops;
pub mod dropout;
pub mod linear;
pub(crate) mod matmul;
pub mod ops;
pub mod weight;

use candle_core::{DType, Tensor};

/// Which ops to use: differentiable ones for training, fused ones for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Train,
    Infer,
}

/// Whether the project's fused CPU ops (f32 only) run for `x`; elsewhere (a GPU, bf16) the
/// equivalent candle ops do.
pub fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}
