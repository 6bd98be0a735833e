//! The explanation's target under teacher forcing: the log-likelihood of a fixed answer (the
//! model's own output, the reference, or one medication mention in it) after each of many
//! inputs. Inputs of similar length are batched, left-padded and masked, one forward pass per
//! batch; the output head runs only at the answer's positions.

use crate::model::llama::{KvCache, Llama};
use crate::model::nn::Path;
use candle_core::{D, Result, Tensor};
use std::ops::Range;
use std::time::{Duration, Instant};

/// The answer every input is scored against: its tokens and the ones that count.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub ids: Vec<u32>,
    /// `ids[scored]` enter the log-likelihood (all of them, or a mention's tokens).
    pub scored: Range<usize>,
}

/// Log-likelihoods of the answer after each prompt, and what scoring them cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub loglik: Vec<f64>,
    /// Sequence tokens forwarded (prompts and answers, padding not counted).
    pub tokens: usize,
    pub elapsed: Duration,
}

impl Scores {
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Scores `answer` after every prompt (token ids, templated), `batch` at a time; `progress`
/// gets the number of prompts done and may answer false to stop (then `None`).
pub fn score_prompts(
    model: &Llama,
    prompts: &[Vec<u32>],
    answer: &Answer,
    batch: usize,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<Option<Scores>> {
    let started = Instant::now();
    if answer.scored.is_empty() || answer.scored.end > answer.ids.len() {
        candle_core::bail!(
            "the scored tokens {:?} are not inside the answer's {} tokens",
            answer.scored,
            answer.ids.len()
        );
    }
    if prompts.iter().any(Vec::is_empty) {
        candle_core::bail!("cannot score after an empty prompt");
    }
    // Longest first, so that each batch's rows have about the same length (little padding).
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
    let mut loglik = vec![0.0; prompts.len()];
    let mut tokens = 0;
    let mut done = 0;
    for chunk in order.chunks(batch.max(1)) {
        let rows: Vec<&[u32]> = chunk.iter().map(|&i| prompts[i].as_slice()).collect();
        let values = score_batch(model, &rows, answer)?;
        for (&i, v) in chunk.iter().zip(values) {
            loglik[i] = v;
            tokens += prompts[i].len() + answer.ids.len();
        }
        done += chunk.len();
        if !progress(done) {
            return Ok(None);
        }
    }
    Ok(Some(Scores {
        loglik,
        tokens,
        elapsed: started.elapsed(),
    }))
}

/// One forward pass over `prompts[i] ++ answer`, left-padded to one length.
fn score_batch(model: &Llama, prompts: &[&[u32]], answer: &Answer) -> Result<Vec<f64>> {
    let b = prompts.len();
    let answer_len = answer.ids.len();
    let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0) + answer_len;
    let pads: Vec<usize> = prompts
        .iter()
        .map(|p| longest - p.len() - answer_len)
        .collect();
    let ids: Vec<u32> = prompts
        .iter()
        .zip(&pads)
        .flat_map(|(p, &pad)| {
            std::iter::repeat_n(p[0], pad)
                .chain(p.iter().copied())
                .chain(answer.ids.iter().copied())
        })
        .collect();
    let device = model.device();
    let input = Tensor::from_vec(ids, (b, longest), device)?;
    let mut cache = KvCache::with_left_padding(pads);
    let hidden = model.hidden(&input, 0, Some(&mut cache), Path::Infer)?;
    // Position p - 1 predicts token p; the answer sits at the end of every row.
    let first = longest - answer_len + answer.scored.start;
    let used = hidden.narrow(1, first - 1, answer.scored.len())?;
    let logp = candle_nn::ops::log_softmax(&model.logits(&used, Path::Infer)?, D::Minus1)?;
    let targets: Vec<u32> = answer.ids[answer.scored.clone()].to_vec();
    let targets = Tensor::new(targets.as_slice(), device)?
        .unsqueeze(0)?
        .repeat((b, 1))?
        .unsqueeze(2)?;
    let picked = logp.gather(&targets.contiguous()?, 2)?.squeeze(2)?;
    let sums = picked.to_dtype(candle_core::DType::F64)?.sum(1)?;
    sums.to_vec1::<f64>()
}

/// Gradient x input of each prompt token for the answer's log-likelihood after `prompt`: one
/// forward and one backward pass on the training path, the gradient taken at the input
/// embeddings and summed over the hidden dimension with the embedding as weights.
pub fn saliency(model: &Llama, prompt: &[u32], answer: &Answer) -> Result<(Vec<f64>, f64)> {
    let device = model.device();
    let ids: Vec<u32> = prompt.iter().chain(&answer.ids).copied().collect();
    let input = Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?;
    let embeddings = candle_core::Var::from_tensor(&model.embed_ids(&input)?)?;
    let hidden =
        model.hidden_from_embeddings(embeddings.as_tensor().clone(), 0, None, Path::Train)?;
    let first = prompt.len() + answer.scored.start;
    let used = hidden
        .narrow(1, first - 1, answer.scored.len())?
        .squeeze(0)?;
    let logp = candle_nn::ops::log_softmax(&model.logits(&used, Path::Train)?, D::Minus1)?;
    let targets = Tensor::new(&answer.ids[answer.scored.clone()], device)?.unsqueeze(1)?;
    let loglik = logp.gather(&targets, 1)?.sum_all()?;
    let grads = loglik.backward()?;
    let grad = grads
        .get(embeddings.as_tensor())
        .ok_or_else(|| candle_core::Error::Msg("no gradient reached the input".into()))?;
    let per_token = (grad * embeddings.as_tensor())?
        .sum(D::Minus1)?
        .squeeze(0)?
        .narrow(0, 0, prompt.len())?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1::<f64>()?;
    Ok((per_token, f64::from(loglik.to_scalar::<f32>()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::generation::score::token_nll;
    use crate::model::llama::tests::tiny_model;

    #[test]
    fn batched_scores_equal_one_at_a_time() -> Result<()> {
        let m = tiny_model(3);
        let prompts = vec![
            vec![1u32, 4, 9, 2],
            vec![5u32, 7],
            vec![3u32, 8, 8, 6, 2, 11, 4],
        ];
        let answer = Answer {
            ids: vec![12, 3, 33, 7],
            scored: 1..3,
        };
        let got = score_prompts(&m, &prompts, &answer, 2, &mut |_| true)?.expect("not stopped");
        for (p, ll) in prompts.iter().zip(&got.loglik) {
            let ids: Vec<u32> = p.iter().chain(&answer.ids).copied().collect();
            let nll = token_nll(&m, &ids, p.len())?;
            let want: f64 = -nll[1..3].iter().map(|v| f64::from(*v)).sum::<f64>();
            assert!((ll - want).abs() < 1e-3, "{ll} vs {want}");
        }
        assert_eq!(got.tokens, 4 + 2 + 7 + 3 * 4);
        let stopped = score_prompts(&m, &prompts, &answer, 1, &mut |done| done < 2)?;
        assert!(stopped.is_none());
        Ok(())
    }

    #[test]
    fn saliency_is_the_gradient_of_the_same_likelihood() -> Result<()> {
        let m = tiny_model(4);
        let prompt = vec![1u32, 4, 9, 2, 17];
        let answer = Answer {
            ids: vec![12, 3, 33],
            scored: 0..3,
        };
        let (per_token, loglik) = saliency(&m, &prompt, &answer)?;
        assert_eq!(per_token.len(), prompt.len());
        assert!(per_token.iter().all(|v| v.is_finite()));
        let scored = score_prompts(&m, &[prompt], &answer, 1, &mut |_| true)?.expect("scored");
        assert!((scored.loglik[0] - loglik).abs() < 1e-3);
        Ok(())
    }

    /// Log-likelihood of `answer` after `prompt` with the input embeddings of every position
    /// scaled by `scale` (1 for none).
    fn loglik_scaled(m: &Llama, prompt: &[u32], answer: &Answer, scale: Vec<f32>) -> Result<f64> {
        let ids: Vec<u32> = prompt.iter().chain(&answer.ids).copied().collect();
        let input = Tensor::new(ids.as_slice(), m.device())?.unsqueeze(0)?;
        let scale = Tensor::from_vec(scale, (1, ids.len(), 1), m.device())?;
        let embeddings = m.embed_ids(&input)?.broadcast_mul(&scale)?;
        let hidden = m.hidden_from_embeddings(embeddings, 0, None, Path::Infer)?;
        let used = hidden.narrow(1, prompt.len() - 1, answer.ids.len())?;
        let logp = candle_nn::ops::log_softmax(&m.logits(&used, Path::Infer)?, D::Minus1)?;
        let targets = Tensor::new(answer.ids.as_slice(), m.device())?.unsqueeze(1)?;
        let picked = logp.squeeze(0)?.gather(&targets, 1)?.sum_all()?;
        Ok(f64::from(picked.to_scalar::<f32>()?))
    }

    /// Gradient x input is the first-order change of the log-likelihood when a token's
    /// embedding grows by a small fraction: its sign says whether the token supports the answer.
    #[test]
    fn saliency_signs_follow_the_likelihood() -> Result<()> {
        let m = tiny_model(6);
        let prompt = vec![1u32, 4, 9, 2, 17, 25, 8];
        let answer = Answer {
            ids: vec![12, 3, 33, 5],
            scored: 0..4,
        };
        let (per_token, _) = saliency(&m, &prompt, &answer)?;
        let n = prompt.len() + answer.ids.len();
        let base = loglik_scaled(&m, &prompt, &answer, vec![1.0; n])?;
        let eps = 1e-2;
        let mut checked = 0;
        for (k, w) in per_token.iter().enumerate() {
            let mut scale = vec![1.0; n];
            scale[k] += eps as f32;
            let change = loglik_scaled(&m, &prompt, &answer, scale)? - base;
            let expected = eps * w;
            assert!(
                (change - expected).abs() < 0.1 * expected.abs() + 2e-4,
                "token {k}: {change} vs {expected}"
            );
            if expected.abs() > 1e-3 {
                assert_eq!(change > 0.0, *w > 0.0, "token {k}");
                checked += 1;
            }
        }
        assert!(checked >= 1, "no token with a clear sign");
        Ok(())
    }
}
