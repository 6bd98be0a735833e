//! The label loss of the training path: the output head's logits a chunk of rows at a time,
//! forward and again backward, never the whole batch's vocabulary at once.

#[cfg(feature = "cuda")]
use super::cuda;
use super::{Backward, Frozen, Recorded};
use crate::model::nn::weight::BaseWeight;
use candle_core::{D, DType, Result, Tensor};

/// Rows of the loss's logits computed at once: `rows × vocabulary` f32 values, a few copies of
/// which exist at a time (256 MiB each for a 64k vocabulary).
pub(super) const LOSS_CHUNK_ROWS: usize = 1024;

/// The negative log-likelihood of `labels[i]` (`[n]`, u32) at hidden state `hidden[i]`
/// (`[n, hidden]`) under the output head `w` (`[vocab, hidden]`, frozen), `[n]` in f32. The
/// logits are computed a chunk of rows at a time, in the forward and again in the backward, and
/// never kept: only each row's log-sum-exp is.
pub fn nll_at_labels(hidden: &Tensor, w: &BaseWeight, labels: &Tensor) -> Result<Tensor> {
    let head = Frozen::head(w, hidden)?;
    let h = hidden.detach();
    let n = h.dim(0)?;
    let (mut nll, mut lse) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(LOSS_CHUNK_ROWS) {
        let len = LOSS_CHUNK_ROWS.min(n - start);
        let logits = head.times_transposed(&h.narrow(0, start, len)?)?;
        let (row_nll, row_lse) = rows_nll(&logits, &labels.narrow(0, start, len)?)?;
        nll.push(row_nll);
        lse.push(row_lse);
    }
    let nll = Tensor::cat(&nll, 0)?;
    let backward = NllBackward {
        w: w.clone(),
        labels: labels.clone(),
        lse: Tensor::cat(&lse, 0)?,
    };
    hidden.apply_op1(Recorded::new(nll, backward))
}

/// Per row of `logits` `[rows, vocab]`: the negative log-likelihood of its label (`[rows]`,
/// u32) and its log-sum-exp, both `[rows]` f32.
fn rows_nll(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
    #[cfg(feature = "cuda")]
    if logits.device().is_cuda() {
        return cuda::nll_rows(logits, labels);
    }
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let sum = logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?;
    let lse = (max + sum.log()?)?;
    let picked = logits.gather(&labels.unsqueeze(1)?, 1)?;
    Ok(((&lse - picked)?.squeeze(1)?, lse.squeeze(1)?))
}

/// `d nll / d logits = grad · (softmax(logits) − onehot(label))` for each row's log-sum-exp and
/// incoming gradient (`[rows]` f32), in the logits' dtype.
fn rows_nll_grad(logits: &Tensor, labels: &Tensor, lse: &Tensor, grad: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if logits.device().is_cuda() {
        return cuda::nll_rows_backward(logits, labels, lse, grad);
    }
    let g = grad.unsqueeze(1)?;
    logits
        .to_dtype(DType::F32)?
        .broadcast_sub(&lse.unsqueeze(1)?)?
        .exp()?
        .broadcast_mul(&g)?
        .scatter_add(&labels.unsqueeze(1)?, &g.neg()?, 1)?
        .to_dtype(logits.dtype())
}

struct NllBackward {
    w: BaseWeight,
    labels: Tensor,
    /// Each row's log-sum-exp, `[n]`.
    lse: Tensor,
}

impl Backward for NllBackward {
    fn name(&self) -> &'static str {
        "nll-at-labels"
    }

    /// `d nll_i / d logits_i = (softmax(logits_i) − onehot(label_i)) · grad_i`, then through
    /// the head: `d hidden_i = d logits_i · w`.
    fn grads(&self, args: &[Tensor], _: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let h = &args[0];
        let n = h.dim(0)?;
        let head = Frozen::head(&self.w, h)?;
        let grad = grad.to_dtype(DType::F32)?.reshape(n)?;
        let mut parts = Vec::new();
        for start in (0..n).step_by(LOSS_CHUNK_ROWS) {
            let len = LOSS_CHUNK_ROWS.min(n - start);
            let logits = head.times_transposed(&h.narrow(0, start, len)?)?;
            let d_logits = rows_nll_grad(
                &logits,
                &self.labels.narrow(0, start, len)?,
                &self.lse.narrow(0, start, len)?,
                &grad.narrow(0, start, len)?,
            )?;
            parts.push(head.times(&d_logits)?);
        }
        Ok(vec![Some(Tensor::cat(&parts, 0)?)])
    }
}
