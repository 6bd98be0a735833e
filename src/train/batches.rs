//! From encoded examples (`model::example`) to training batches: micro-batches of similar
//! lengths in an order fixed by the seed and the epoch, padded, the loss on the target tokens
//! only.

use crate::data::rng::SeededRng;
use crate::model::llama::Llama;
use crate::model::nn::device_ops;
use crate::model::nn::ops::NllAtLabels;
use crate::model::nn::{Path, fused};
use crate::model::tokenizer::example::Example;
use candle_core::Tensor;

/// The micro-batches of one epoch, as indices into the examples: shuffled by `(seed, epoch)`,
/// grouped in windows of similar lengths so that little padding is needed, the batches then
/// shuffled again so that lengths do not trend through the epoch.
pub fn epoch_plan(
    lengths: &[usize],
    micro_batch: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng = SeededRng::new(seed).fork(epoch as u64 + 1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    rng.shuffle(&mut order);
    let window = micro_batch * 32;
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for chunk in order.chunks(window) {
        let mut chunk = chunk.to_vec();
        chunk.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(chunk.chunks(micro_batch).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut batches);
    batches
}

/// A micro-batch, right-padded: real tokens never attend to the padding after them, so no
/// attention mask is needed; the loss positions say where a target token is predicted.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    /// `[rows, width]` row-major.
    pub ids: Vec<u32>,
    pub rows: usize,
    pub width: usize,
    /// Flat positions `row · width + p` whose output predicts a target token…
    pub positions: Vec<u32>,
    /// …and those tokens.
    pub labels: Vec<u32>,
    /// Each row's tokens before its padding.
    pub lengths: Vec<usize>,
}

impl MicroBatch {
    pub fn new(examples: &[&Example], pad: u32) -> MicroBatch {
        let width = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let mut b = MicroBatch {
            ids: Vec::with_capacity(examples.len() * width),
            rows: examples.len(),
            width,
            positions: Vec::new(),
            labels: Vec::new(),
            lengths: examples.iter().map(|e| e.ids.len()).collect(),
        };
        for (r, e) in examples.iter().enumerate() {
            b.ids.extend_from_slice(&e.ids);
            b.ids.extend(std::iter::repeat_n(pad, width - e.ids.len()));
            for p in e.prompt_len.max(1)..e.ids.len() {
                b.positions.push((r * width + p - 1) as u32);
                b.labels.push(e.ids[p]);
            }
        }
        b
    }

    /// Non-padding tokens.
    pub fn tokens(&self) -> usize {
        self.lengths.iter().sum()
    }

    /// In Hugging Face's conventions (labels aligned with the inputs, -100 where no loss is
    /// taken), for reference runs in other tools.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut labels = vec![-100i64; self.ids.len()];
        for (pos, label) in self.positions.iter().zip(&self.labels) {
            labels[*pos as usize + 1] = i64::from(*label);
        }
        let mut mask = vec![0i64; self.ids.len()];
        for (r, n) in self.lengths.iter().enumerate() {
            mask[r * self.width..r * self.width + n].fill(1);
        }
        let rows = |v: &[i64]| -> Vec<Vec<i64>> {
            v.chunks(self.width.max(1)).map(<[i64]>::to_vec).collect()
        };
        let ids: Vec<i64> = self.ids.iter().map(|i| i64::from(*i)).collect();
        serde_json::json!({"input_ids": rows(&ids), "attention_mask": rows(&mask), "labels": rows(&labels)})
    }
}

/// Sum of the negative log-likelihoods of a micro-batch's target tokens; the output head and
/// the softmax run only at the positions that predict one.
pub fn batch_nll(model: &Llama, b: &MicroBatch) -> candle_core::Result<Tensor> {
    let device = model.device();
    let ids = Tensor::from_vec(b.ids.clone(), (b.rows, b.width), device)?;
    let hidden = model.hidden(&ids, 0, None, Path::Train)?;
    let positions = Tensor::new(b.positions.as_slice(), device)?;
    let picked = hidden
        .reshape((b.rows * b.width, model.cfg.hidden_size))?
        .index_select(&positions, 0)?;
    if fused(&picked) {
        let labels = b.labels.clone();
        let logits = model.logits(&picked, Path::Train)?;
        return logits.apply_op1(NllAtLabels { labels })?.sum_all();
    }
    let labels = Tensor::new(b.labels.as_slice(), device)?;
    device_ops::nll_at_labels(&picked, &model.lm_head, &labels)?.sum_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_every_example_once_and_depend_on_seed_and_epoch() {
        let lengths: Vec<usize> = (0..103).map(|i| 10 + (i * 37) % 90).collect();
        let plan = epoch_plan(&lengths, 4, 7, 0);
        let mut seen: Vec<usize> = plan.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..103).collect::<Vec<_>>());
        assert_eq!(plan, epoch_plan(&lengths, 4, 7, 0));
        assert_ne!(plan, epoch_plan(&lengths, 4, 7, 1));
        assert_ne!(plan, epoch_plan(&lengths, 4, 8, 0));
        // Grouping by length: padding well under that of the shuffled order.
        let padding = |p: &[Vec<usize>]| -> usize {
            p.iter()
                .map(|b| {
                    let w = b.iter().map(|&i| lengths[i]).max().unwrap_or(0);
                    b.iter().map(|&i| w - lengths[i]).sum::<usize>()
                })
                .sum()
        };
        let mut shuffled: Vec<usize> = (0..103).collect();
        SeededRng::new(1).shuffle(&mut shuffled);
        let naive: Vec<Vec<usize>> = shuffled.chunks(4).map(<[usize]>::to_vec).collect();
        assert!(
            padding(&plan) * 4 < padding(&naive),
            "{} vs {}",
            padding(&plan),
            padding(&naive)
        );
    }

    #[test]
    fn micro_batches_pad_on_the_right_and_label_only_targets() {
        let a = Example {
            ids: vec![5, 6, 7, 8],
            prompt_len: 2,
        };
        let b = Example {
            ids: vec![1, 2, 3],
            prompt_len: 2,
        };
        let mb = MicroBatch::new(&[&a, &b], 0);
        assert_eq!(mb.ids, [5, 6, 7, 8, 1, 2, 3, 0]);
        assert_eq!(mb.positions, [1, 2, 5]);
        assert_eq!(mb.labels, [7, 8, 3]);
        assert_eq!(mb.tokens(), 7);
        let hf = mb.to_hf_json();
        assert_eq!(
            hf["labels"],
            serde_json::json!([[-100, -100, 7, 8], [-100, -100, 3, -100]])
        );
        assert_eq!(
            hf["attention_mask"],
            serde_json::json!([[1, 1, 1, 1], [1, 1, 1, 0]])
        );
    }
}
