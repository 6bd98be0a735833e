//! From task records to training batches: the chat template applied, the loss on the target
//! tokens only, over-long examples cut in their input (never at the target's start), and
//! micro-batches of similar lengths in an order fixed by the seed and the epoch.

use crate::data::record::Record;
use crate::data::rng::SeededRng;
use crate::model::chat::ChatTemplate;
use crate::model::example::{ExampleError, encode_example};
use crate::model::tokenizer::Tokenizer;

/// One training example: `ids[prompt_len..]` is the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub prompt_len: usize,
}

impl Example {
    /// Tokens the loss is taken on.
    pub fn target_tokens(&self) -> usize {
        self.ids.len() - self.prompt_len
    }
}

#[derive(Debug, Default)]
pub struct Encoded {
    pub examples: Vec<Example>,
    /// Examples whose input was cut to fit.
    pub cut_input: usize,
    /// Examples whose target's end was cut too (the template and target alone were too long).
    pub cut_target: usize,
    /// `(record id, why)` for records that could not be used.
    pub skipped: Vec<(String, String)>,
}

/// Encodes every record with a non-empty target, fitting each into `max_len` tokens.
pub fn encode_records(
    records: &[Record],
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    max_len: usize,
) -> Result<Encoded, ExampleError> {
    let mut out = Encoded::default();
    for r in records {
        if r.target.trim().is_empty() {
            out.skipped.push((r.id.clone(), "empty target".into()));
            continue;
        }
        let full = encode_example(tokenizer, template, Some(r.task), &r.input, Some(&r.target))?;
        if full.ids.len() == full.prompt_len {
            out.skipped
                .push((r.id.clone(), "the target encodes to no tokens".into()));
            continue;
        }
        if full.ids.len() <= max_len {
            out.examples.push(Example {
                ids: full.ids,
                prompt_len: full.prompt_len,
            });
            continue;
        }
        let empty = encode_example(tokenizer, template, Some(r.task), "", None)?;
        let fitted = fit(&full.ids, full.prompt_len, &empty.ids, max_len);
        if fitted.ids.len() - fitted.prompt_len < full.ids.len() - full.prompt_len {
            out.cut_target += 1;
        } else {
            out.cut_input += 1;
        }
        out.examples.push(fitted);
    }
    Ok(out)
}

/// Cuts the input tokens of an example (the part of the prompt that differs from the prompt of
/// an empty input) from their end until the example fits; when the template and the target
/// alone do not fit, keeps no input and cuts the target's end.
pub fn fit(ids: &[u32], prompt_len: usize, empty_prompt: &[u32], max_len: usize) -> Example {
    let prompt = &ids[..prompt_len];
    let target = &ids[prompt_len..];
    let head = prompt
        .iter()
        .zip(empty_prompt)
        .take_while(|(a, b)| a == b)
        .count();
    let tail = prompt[head..]
        .iter()
        .rev()
        .zip(empty_prompt[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let input = &prompt[head..prompt.len() - tail];
    let frame = head + tail;
    let keep_input = max_len
        .saturating_sub(frame + target.len())
        .min(input.len());
    let mut out: Vec<u32> = prompt[..head].to_vec();
    out.extend_from_slice(&input[..keep_input]);
    out.extend_from_slice(&prompt[prompt.len() - tail..]);
    let prompt_len = out.len();
    let room = max_len.saturating_sub(prompt_len).max(1);
    out.extend_from_slice(&target[..target.len().min(room)]);
    Example {
        ids: out,
        prompt_len,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_cuts_the_input_and_keeps_the_template_and_target() {
        // Prompt = [1, 2] frame head, input 10..20, [3] frame tail; target [7, 8, 9].
        let mut ids = vec![1, 2];
        ids.extend(10..20);
        ids.push(3);
        let prompt_len = ids.len();
        ids.extend([7, 8, 9]);
        let e = fit(&ids, prompt_len, &[1, 2, 3], 10);
        assert_eq!(e.ids, [1, 2, 10, 11, 12, 13, 3, 7, 8, 9]);
        assert_eq!(e.prompt_len, 7);
        // Too small for the frame and the target: no input, the target's end cut.
        let e = fit(&ids, prompt_len, &[1, 2, 3], 5);
        assert_eq!(e.ids, [1, 2, 3, 7, 8]);
        assert_eq!(e.target_tokens(), 2);
    }

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
