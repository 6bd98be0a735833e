//! Text generation with a KV cache: greedy or sampled (temperature, top-k, top-p), a repetition
//! penalty, stopping on end-of-sequence ids or when the caller says so (stop strings, cancel),
//! and a callback per token for streaming.

pub mod continuous;
pub mod score;
use crate::data::rng::SeededRng;
use crate::model::decode::{BatchStep, Decoder, gpu_batch};
use crate::model::generation::continuous::{Request, Update, decode_continuously};
use crate::model::llama::{KvCache, Llama};
use crate::model::nn::Path;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    pub max_new_tokens: usize,
    /// 0 means greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// 1.0 means none; above 1 discourages tokens already in the context.
    pub repetition_penalty: f64,
    pub seed: u64,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            seed: 42,
        }
    }
}

impl GenerationParams {
    /// Why these settings cannot sample, naming the option: a temperature that is not a
    /// number or is negative, top-k 0, top-p outside (0, 1], a repetition penalty that is not
    /// a positive number.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!(
                "temperature {}: expected 0 (greedy) or a positive number",
                self.temperature
            ));
        }
        if self.top_k == Some(0) {
            return Err("top-k 0: expected at least 1 (or leave it out)".into());
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(format!(
                "top-p {p}: expected a number above 0 and at most 1"
            ));
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return Err(format!(
                "repetition penalty {}: expected a positive number (1 for none)",
                self.repetition_penalty
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfSequence,
    MaxTokens,
    /// The callback asked to stop (a stop string, a cancel).
    Caller,
    /// The model's context is full.
    ContextFull,
}

impl StopReason {
    /// Whether the output was cut off before the model ended it: a reader sees text that stops
    /// mid-way.
    pub fn cut(self) -> bool {
        matches!(self, StopReason::MaxTokens | StopReason::ContextFull)
    }
}

/// What the per-token callback answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub ids: Vec<u32>,
    pub stop: StopReason,
}

/// Picks the next token from the last position's logits.
pub struct Sampler {
    params: GenerationParams,
    rng: SeededRng,
}

impl Sampler {
    pub fn new(params: &GenerationParams) -> Self {
        Self {
            params: params.clone(),
            rng: SeededRng::new(params.seed),
        }
    }

    pub fn next(&mut self, logits: &[f32], context: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        let penalty = self.params.repetition_penalty as f32;
        if penalty != 1.0 {
            for &t in context {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
                }
            }
        }
        if self.params.temperature <= 0.0 {
            return argmax(&logits);
        }
        let t = self.params.temperature as f32;
        let mut ranked: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u32, l / t))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = self.params.top_k.filter(|k| *k > 0) {
            ranked.truncate(k);
        }
        let max = ranked.first().map_or(0.0, |r| r.1);
        let mut probs: Vec<f64> = ranked
            .iter()
            .map(|(_, l)| f64::from(l - max).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(top_p) = self.params.top_p.filter(|p| *p < 1.0) {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    acc += p;
                    acc >= top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        ranked[self.rng.weighted(&probs)].0
    }
}

/// The index of the largest value (the first of equal ones).
pub(crate) fn argmax(values: &[f32]) -> u32 {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if *v > best.1 { (i, *v) } else { best }
        })
        .0 as u32
}

/// Tokens and time of a generation, for tokens/s: prefill is the forward over the prompts up to
/// the first new token's logits and the decoder's setup from its cache (with sequences joining
/// while others decode, every step that prefills a prompt), decode the rest. `decoded_tokens`
/// are the new tokens that came out of the decode steps: `decoded_tokens / decode` is the rate
/// of decoding alone.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub decoded_tokens: usize,
    pub prefill: Duration,
    pub decode: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// One per prompt, in order.
    pub outputs: Vec<Generated>,
    pub timing: Timing,
}

/// Generates after `prompt`; `on_token(all_generated_so_far)` runs after each new token.
pub fn generate(
    model: &Llama,
    prompt: &[u32],
    params: &GenerationParams,
    eos: &[u32],
    on_token: &mut dyn FnMut(&[u32]) -> Flow,
) -> Result<Generated> {
    let batch = generate_batch(model, &[prompt.to_vec()], params, eos, &mut |_, ids| {
        on_token(ids)
    })?;
    batch
        .outputs
        .into_iter()
        .next()
        .ok_or_else(|| candle_core::Error::Msg("no output for the prompt".into()))
}

/// Generates after every prompt at once, each row getting the tokens it would get alone.
/// `on_token(row, generated)` runs after each new token of a row; a row that stops (end of
/// sequence, its callback, max tokens) leaves the batch while the others go on.
///
/// A block-quantized model on the CPU decodes the rows as sequences of their own
/// ([`continuous`]: no padding, each prompt's prefill and every step's products shared, a row's
/// bits those it gets alone). Other models left-pad the prompts to one length and mask the
/// padding (on a GPU the decode steps then take its decoder).
pub fn generate_batch(
    model: &Llama,
    prompts: &[Vec<u32>],
    params: &GenerationParams,
    eos: &[u32],
    on_token: &mut dyn FnMut(usize, &[u32]) -> Flow,
) -> Result<Batch> {
    if prompts.iter().any(Vec::is_empty) {
        candle_core::bail!("cannot generate after an empty prompt");
    }
    if let Some(mut decoder) = Decoder::new(model, Vec::new())? {
        return generate_sequences(&mut decoder, prompts, params, eos, on_token);
    }
    generate_padded(model, prompts, params, eos, on_token)
}

/// [`generate_batch`] on the CPU decoder: every prompt a request, all of them decoding together.
fn generate_sequences(
    decoder: &mut Decoder,
    prompts: &[Vec<u32>],
    params: &GenerationParams,
    eos: &[u32],
    on_token: &mut dyn FnMut(usize, &[u32]) -> Flow,
) -> Result<Batch> {
    let started = Instant::now();
    let mut waiting = prompts.iter().enumerate();
    let mut outputs: Vec<Option<Generated>> = vec![None; prompts.len()];
    let steps = decode_continuously(
        decoder,
        prompts.len(),
        &mut |_| {
            waiting.next().map(|(i, p)| {
                let request = Request {
                    prompt: p.clone(),
                    params: params.clone(),
                    eos: eos.to_vec(),
                    adapter: 0,
                };
                (i as u64, request)
            })
        },
        &mut |id, update| match update {
            Update::Token(generated) => on_token(id as usize, generated),
            Update::Done(output, _) => {
                outputs[id as usize] = Some(output);
                Flow::Continue
            }
        },
    )?;
    let outputs: Vec<Generated> = outputs
        .into_iter()
        .map(|o| o.ok_or_else(|| candle_core::Error::Msg("a prompt got no output".into())))
        .collect::<Result<_>>()?;
    Ok(Batch {
        timing: Timing {
            prompt_tokens: prompts.iter().map(Vec::len).sum(),
            new_tokens: outputs.iter().map(|o| o.ids.len()).sum(),
            decoded_tokens: steps.decoded_tokens,
            prefill: steps.prefill,
            decode: started.elapsed().saturating_sub(steps.prefill),
        },
        outputs,
    })
}

/// [`generate_batch`] with the prompts left-padded to one length and masked.
fn generate_padded(
    model: &Llama,
    prompts: &[Vec<u32>],
    params: &GenerationParams,
    eos: &[u32],
    on_token: &mut dyn FnMut(usize, &[u32]) -> Flow,
) -> Result<Batch> {
    let started = Instant::now();
    let b = prompts.len();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows: Vec<Row> = prompts
        .iter()
        .map(|p| Row::new(p.clone(), params))
        .collect();
    let (pads, padded) = left_padded(prompts);
    let mut cache = KvCache::with_left_padding(pads);
    let mut input = Tensor::from_vec(padded, (b, longest), model.device())?;
    let mut offset = 0;
    let mut prefill = None;
    // After the prefill, the decode steps take the GPU's decoder where the model is on one.
    let mut decoder: Option<BatchStep> = None;
    // The ids fed at the last step, one per row.
    let mut fed: Vec<u32> = Vec::new();
    while rows.iter().any(|r| r.stop.is_none()) {
        let t = input.dim(1)?;
        if offset + t > model.rope.max_len() {
            rows.iter_mut()
                .filter(|r| r.stop.is_none())
                .for_each(|r| r.stop = Some(StopReason::ContextFull));
            break;
        }
        let logits = match decoder.as_mut() {
            Some(step) => step(&fed)?,
            // On a pool thread: the step's many parallel products then start from inside the
            // pool instead of each waking it from outside, which costs more than a small product.
            None => rayon::scope(|_| -> Result<Vec<Vec<f32>>> {
                let hidden = model.hidden(&input, offset, Some(&mut cache), Path::Infer)?;
                model
                    .logits(&hidden.narrow(1, t - 1, 1)?, Path::Infer)?
                    .squeeze(1)?
                    .to_vec2::<f32>()
            })?,
        };
        if prefill.is_none() {
            // Setting the decoder up from the prefill's cache counts as prefill.
            decoder = gpu_batch(model, &cache, longest + params.max_new_tokens)?;
            prefill = Some(started.elapsed());
        }
        offset += t;
        fed = rows
            .iter_mut()
            .zip(&logits)
            .enumerate()
            .map(|(i, (row, l))| row.step(l, eos, params.max_new_tokens, &mut |g| on_token(i, g)))
            .collect();
        input = Tensor::from_vec(fed.clone(), (b, 1), model.device())?;
    }
    let prefill = prefill.unwrap_or_default();
    let outputs: Vec<Generated> = rows
        .into_iter()
        .map(|r| Generated {
            ids: r.generated,
            stop: r.stop.unwrap_or(StopReason::MaxTokens),
        })
        .collect();
    let new_tokens = outputs.iter().map(|o| o.ids.len()).sum();
    // Each row's first token came out of the prefill.
    let first_tokens = outputs.iter().filter(|o| !o.ids.is_empty()).count();
    Ok(Batch {
        timing: Timing {
            prompt_tokens: prompts.iter().map(Vec::len).sum(),
            new_tokens,
            decoded_tokens: new_tokens - first_tokens,
            prefill,
            decode: started.elapsed().saturating_sub(prefill),
        },
        outputs,
    })
}

/// Each prompt's left padding to the longest one's length, and the prompts so padded, one after
/// another (the padding repeats a prompt's first id; the mask hides it).
pub(crate) fn left_padded(prompts: &[Vec<u32>]) -> (Vec<usize>, Vec<u32>) {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let padded = prompts
        .iter()
        .zip(&pads)
        .flat_map(|(p, &pad)| std::iter::repeat_n(p[0], pad).chain(p.iter().copied()))
        .collect();
    (pads, padded)
}

/// One prompt of a batch.
pub(crate) struct Row {
    context: Vec<u32>,
    generated: Vec<u32>,
    stop: Option<StopReason>,
    sampler: Sampler,
}

impl Row {
    pub(crate) fn new(prompt: Vec<u32>, params: &GenerationParams) -> Row {
        Row {
            context: prompt,
            generated: Vec::new(),
            stop: (params.max_new_tokens == 0).then_some(StopReason::MaxTokens),
            sampler: Sampler::new(params),
        }
    }

    /// Takes the next token from this row's logits; returns the id to feed next (a stopped row
    /// feeds its last token, whose outputs are ignored).
    pub(crate) fn step(
        &mut self,
        logits: &[f32],
        eos: &[u32],
        max_new_tokens: usize,
        on_token: &mut dyn FnMut(&[u32]) -> Flow,
    ) -> u32 {
        let last = self.context.last().copied().unwrap_or(0);
        if self.stop.is_some() {
            return last;
        }
        let token = self.sampler.next(logits, &self.context);
        if eos.contains(&token) {
            self.stop = Some(StopReason::EndOfSequence);
            return last;
        }
        self.generated.push(token);
        self.context.push(token);
        if on_token(&self.generated) == Flow::Stop {
            self.stop = Some(StopReason::Caller);
        } else if self.generated.len() >= max_new_tokens {
            self.stop = Some(StopReason::MaxTokens);
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::llama::tests::tiny_model;

    #[test]
    fn greedy_generation_follows_the_argmax_of_the_full_forward() -> Result<()> {
        let m = tiny_model(6);
        let prompt = [1u32, 2, 3];
        let params = GenerationParams {
            max_new_tokens: 6,
            ..Default::default()
        };
        let out = generate(&m, &prompt, &params, &[], &mut |_| Flow::Continue)?;
        assert_eq!(out.stop, StopReason::MaxTokens);
        // Re-derive each token without a cache.
        let mut seq = prompt.to_vec();
        for &tok in &out.ids {
            let input = Tensor::new(seq.as_slice(), m.device())?.unsqueeze(0)?;
            let logits = m
                .logits(&m.hidden(&input, 0, None, Path::Infer)?, Path::Infer)?
                .squeeze(0)?;
            let last = logits.get(seq.len() - 1)?.to_vec1::<f32>()?;
            assert_eq!(argmax(&last), tok);
            seq.push(tok);
        }
        Ok(())
    }

    #[test]
    fn stops_on_eos_and_on_the_callback() -> Result<()> {
        let m = tiny_model(7);
        let params = GenerationParams {
            max_new_tokens: 8,
            ..Default::default()
        };
        let first = generate(&m, &[5, 6], &params, &[], &mut |_| Flow::Continue)?.ids[0];
        let eos = generate(&m, &[5, 6], &params, &[first], &mut |_| Flow::Continue)?;
        assert_eq!((eos.ids.len(), eos.stop), (0, StopReason::EndOfSequence));
        let caller = generate(&m, &[5, 6], &params, &[], &mut |g| {
            if g.len() == 3 {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })?;
        assert_eq!((caller.ids.len(), caller.stop), (3, StopReason::Caller));
        Ok(())
    }

    #[test]
    fn a_batch_of_prompts_of_different_lengths_generates_what_each_would_alone() -> Result<()> {
        let m = tiny_model(8);
        let params = GenerationParams {
            max_new_tokens: 7,
            ..Default::default()
        };
        let prompts = vec![vec![3u32, 9, 4, 11, 2, 6], vec![5, 1], vec![30, 7, 7, 12]];
        let alone: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| generate(&m, p, &params, &[], &mut |_| Flow::Continue).map(|g| g.ids))
            .collect::<Result<_>>()?;
        // The second row stops early through its callback; the others go on.
        let batch = generate_batch(&m, &prompts, &params, &[], &mut |row, g| {
            if row == 1 && g.len() == 2 {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })?;
        assert_eq!(batch.outputs[0].ids, alone[0]);
        assert_eq!(batch.outputs[1].ids, alone[1][..2]);
        assert_eq!(batch.outputs[1].stop, StopReason::Caller);
        assert_eq!(batch.outputs[2].ids, alone[2]);
        assert_eq!(batch.timing.prompt_tokens, 12);
        assert_eq!(batch.timing.new_tokens, 16);
        Ok(())
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_k() {
        let logits = [0.0f32, 5.0, 4.9, -3.0, 1.0];
        let params = GenerationParams {
            temperature: 1.0,
            top_k: Some(2),
            seed: 3,
            ..Default::default()
        };
        let draw = |p: &GenerationParams| {
            let mut s = Sampler::new(p);
            (0..200).map(|_| s.next(&logits, &[])).collect::<Vec<_>>()
        };
        let a = draw(&params);
        assert_eq!(a, draw(&params));
        assert!(a.iter().all(|t| *t == 1 || *t == 2));
        assert!(a.contains(&1) && a.contains(&2));
        let penalised = GenerationParams {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        assert_eq!(Sampler::new(&penalised).next(&logits, &[1]), 2);
    }
}
