//! Teacher-forced scoring: the negative log-likelihood of each token given the ones before it,
//! computed only at the positions asked for (the output head is the largest matmul).

use crate::model::llama::Llama;
use crate::model::nn::Path;
use candle_core::{D, Result, Tensor};

/// NLL of `ids[p]` given `ids[..p]` for every `p` in `first..ids.len()` (`first >= 1`).
pub fn token_nll(model: &Llama, ids: &[u32], first: usize) -> Result<Vec<f32>> {
    let first = first.max(1);
    if ids.len() <= first {
        return Ok(Vec::new());
    }
    let device = model.device();
    let input = Tensor::new(ids, device)?.unsqueeze(0)?;
    let hidden = model.hidden(&input, 0, None, Path::Infer)?;
    // Position p - 1 predicts token p.
    let used = hidden.narrow(1, first - 1, ids.len() - first)?.squeeze(0)?;
    let logp = candle_nn::ops::log_softmax(&model.logits(&used, Path::Infer)?, D::Minus1)?;
    let targets = Tensor::new(&ids[first..], device)?.unsqueeze(1)?;
    let picked = logp.gather(&targets, 1)?.squeeze(1)?;
    picked.neg()?.to_vec1::<f32>()
}

/// Mean of `values`, `None` for an empty slice.
pub fn mean(values: &[f32]) -> Option<f64> {
    (!values.is_empty())
        .then(|| values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::llama::tests::tiny_model;

    #[test]
    fn nll_matches_a_full_log_softmax() -> Result<()> {
        let m = tiny_model(5);
        let ids = [3u32, 9, 1, 22, 7, 5];
        let nll = token_nll(&m, &ids, 2)?;
        assert_eq!(nll.len(), 4);
        let input = Tensor::new(&ids, m.device())?.unsqueeze(0)?;
        let logits = m
            .logits(&m.hidden(&input, 0, None, Path::Infer)?, Path::Infer)?
            .squeeze(0)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
        for (k, p) in (2..ids.len()).enumerate() {
            let expected = -logp[p - 1][ids[p] as usize];
            assert!((nll[k] - expected).abs() < 1e-5, "{} vs {expected}", nll[k]);
        }
        assert!(token_nll(&m, &ids[..1], 1)?.is_empty());
        assert_eq!(mean(&[]), None);
        Ok(())
    }
}
