//! Continuous batching on the CPU decoder: requests join while others decode, each a sequence
//! with its own cache, positions and adapter, and leave when they stop, so that a step always
//! decodes every sequence that has work. A joining prompt is prefilled in stretches of at most
//! [`PREFILL_TOKENS_PER_STEP`] tokens within the same steps, so the sequences already decoding
//! wait at most one such stretch. Each request gets the tokens it would get alone.

use super::{Flow, Generated, GenerationParams, Row, StopReason, Timing};
use crate::model::decode::{Decoder, Feed, Sequence, with_team};
use candle_core::{Result, bail};
use std::time::{Duration, Instant};

/// Prompt tokens one step prefills at most, over all the joining sequences.
pub const PREFILL_TOKENS_PER_STEP: usize = 256;

/// A prompt and how to continue it.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub params: GenerationParams,
    /// Ids that end the output (not part of it).
    pub eos: Vec<u32>,
    /// The decoder's adapter set the request uses (0: the model as loaded).
    pub adapter: usize,
}

/// Whether sequences are decoding when the scheduler asks for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Nothing is decoding: the source may block until a request comes, or say `None` to end.
    Idle,
    /// Sequences are decoding: the source answers at once (`None`: nothing waiting now).
    Busy,
}

/// What the scheduler reports about a request.
#[derive(Debug)]
pub enum Update<'a> {
    /// Every token generated so far, after a new one; the answer can stop the request.
    Token(&'a [u32]),
    /// The request's output and timing: prefill from joining to its first token, decode the
    /// rest.
    Done(Generated, Timing),
}

/// A request being served.
struct Active {
    id: u64,
    prompt: Vec<u32>,
    prefilled: usize,
    eos: Vec<u32>,
    max_new_tokens: usize,
    row: Row,
    sequence: Sequence,
    /// The token the next decode step feeds.
    next: [u32; 1],
    joined: Instant,
    prefill: Option<Duration>,
}

/// What one step feeds an active request.
enum Part {
    Prompt(usize),
    Token,
}

/// What the steps of [`decode_continuously`] did: the time of those that prefilled a prompt
/// (while the other sequences decoded), and the new tokens of the steps that only decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Steps {
    pub prefill: Duration,
    pub decoded_tokens: usize,
}

/// Serves requests from `next` until it says `None` while nothing is decoding: up to
/// `max_batch` sequences decode together, `on(id, ..)` hears of each new token and of each
/// finished request.
pub fn decode_continuously(
    decoder: &mut Decoder,
    max_batch: usize,
    next: &mut dyn FnMut(Wait) -> Option<(u64, Request)>,
    on: &mut dyn FnMut(u64, Update<'_>) -> Flow,
) -> Result<Steps> {
    let max_batch = max_batch.max(1);
    let context = decoder.context();
    let mut active: Vec<Active> = Vec::new();
    let mut steps = Steps::default();
    loop {
        while active.len() < max_batch {
            let wait = if active.is_empty() {
                Wait::Idle
            } else {
                Wait::Busy
            };
            let Some((id, request)) = next(wait) else {
                if active.is_empty() {
                    return Ok(steps);
                }
                break;
            };
            if request.prompt.is_empty() {
                bail!("cannot generate after an empty prompt");
            }
            let joined = Instant::now();
            let row = Row::new(request.prompt.clone(), &request.params);
            let stop = match row.stop {
                Some(stop) => Some(stop),
                None if request.prompt.len() > context => Some(StopReason::ContextFull),
                None => None,
            };
            if let Some(stop) = stop {
                let timing = Timing {
                    prompt_tokens: request.prompt.len(),
                    ..Timing::default()
                };
                on(
                    id,
                    Update::Done(
                        Generated {
                            ids: Vec::new(),
                            stop,
                        },
                        timing,
                    ),
                );
                continue;
            }
            let capacity = request.prompt.len() + request.params.max_new_tokens;
            active.push(Active {
                id,
                sequence: decoder.sequence(request.adapter, capacity)?,
                prefilled: 0,
                eos: request.eos,
                max_new_tokens: request.params.max_new_tokens,
                row,
                next: [0],
                joined,
                prefill: None,
                prompt: request.prompt,
            });
        }
        // A sequence with a full context stops before the step.
        for a in active.iter_mut() {
            if a.prefill.is_some() && a.sequence.positions() >= context {
                a.row.stop = Some(StopReason::ContextFull);
            }
        }
        finish(&mut active, on);
        if active.is_empty() {
            continue;
        }
        let mut budget = PREFILL_TOKENS_PER_STEP;
        let mut parts: Vec<(usize, Part)> = Vec::with_capacity(active.len());
        for (i, a) in active.iter().enumerate() {
            if a.prefilled < a.prompt.len() {
                let take = (a.prompt.len() - a.prefilled).min(budget);
                if take > 0 {
                    budget -= take;
                    parts.push((i, Part::Prompt(take)));
                }
            } else {
                parts.push((i, Part::Token));
            }
        }
        let prefilling = parts.iter().any(|(_, p)| matches!(p, Part::Prompt(_)));
        let started = Instant::now();
        let logits = {
            let mut feeds: Vec<Feed> = Vec::with_capacity(parts.len());
            let mut rest = active.as_mut_slice();
            let mut at = 0;
            for (i, part) in &parts {
                let (skipped, tail) = rest.split_at_mut(i - at + 1);
                rest = tail;
                at = i + 1;
                let Some(a) = skipped.last_mut() else {
                    bail!("scheduler: request {i} is not active");
                };
                let tokens = match part {
                    Part::Prompt(n) => &a.prompt[a.prefilled..a.prefilled + n],
                    Part::Token => &a.next[..],
                };
                feeds.push(Feed {
                    sequence: &mut a.sequence,
                    tokens,
                });
            }
            with_team(|team| decoder.step(team, &mut feeds))?
        };
        if prefilling {
            steps.prefill += started.elapsed();
        }
        for ((i, part), logits) in parts.iter().zip(&logits) {
            let a = &mut active[*i];
            if let Part::Prompt(n) = part {
                a.prefilled += n;
                if a.prefilled < a.prompt.len() {
                    continue;
                }
                a.prefill = Some(a.joined.elapsed());
            }
            let id = a.id;
            let before = a.row.generated.len();
            a.next = [a
                .row
                .step(logits, &a.eos, a.max_new_tokens, &mut |generated| {
                    on(id, Update::Token(generated))
                })];
            if !prefilling {
                steps.decoded_tokens += a.row.generated.len() - before;
            }
        }
        finish(&mut active, on);
    }
}

/// Reports and removes the requests that stopped.
fn finish(active: &mut Vec<Active>, on: &mut dyn FnMut(u64, Update<'_>) -> Flow) {
    let mut i = 0;
    while i < active.len() {
        let Some(stop) = active[i].row.stop else {
            i += 1;
            continue;
        };
        let a = active.remove(i);
        let prefill = a.prefill.unwrap_or_else(|| a.joined.elapsed());
        let new_tokens = a.row.generated.len();
        let timing = Timing {
            prompt_tokens: a.prompt.len(),
            new_tokens,
            decoded_tokens: new_tokens.saturating_sub(1),
            prefill,
            decode: a.joined.elapsed().saturating_sub(prefill),
        };
        let output = Generated {
            ids: a.row.generated,
            stop,
        };
        on(a.id, Update::Done(output, timing));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode::tests::{CONTEXT, quantized_model};
    use crate::model::generation::{generate, generate_batch};

    /// Every request's output when `max_batch` decode together, in the order of `requests`.
    fn serve(
        decoder: &mut Decoder,
        requests: &[Request],
        max_batch: usize,
        stop_after: Option<(u64, usize)>,
    ) -> Result<Vec<Generated>> {
        let mut waiting = requests.iter().cloned().enumerate();
        let mut asked = Vec::new();
        let mut done: Vec<Option<Generated>> = vec![None; requests.len()];
        decode_continuously(
            decoder,
            max_batch,
            &mut |wait| {
                asked.push(wait);
                waiting.next().map(|(i, r)| (i as u64, r))
            },
            &mut |id, update| match update {
                Update::Token(g) if stop_after == Some((id, g.len())) => Flow::Stop,
                Update::Token(_) => Flow::Continue,
                Update::Done(out, timing) => {
                    assert_eq!(timing.new_tokens, out.ids.len());
                    done[id as usize] = Some(out);
                    Flow::Continue
                }
            },
        )?;
        assert_eq!(asked.first(), Some(&Wait::Idle));
        Ok(done
            .into_iter()
            .map(|d| d.expect("every request finishes"))
            .collect())
    }

    #[test]
    fn requests_decoding_together_get_what_each_gets_alone() -> Result<()> {
        let m = quantized_model(false);
        let mut decoder = Decoder::new(&m, Vec::new())?.expect("applies");
        let sampled = GenerationParams {
            max_new_tokens: 9,
            temperature: 0.9,
            top_p: Some(0.9),
            seed: 5,
            ..Default::default()
        };
        let greedy = GenerationParams {
            max_new_tokens: 12,
            ..Default::default()
        };
        let requests: Vec<Request> = (0..6)
            .map(|i| Request {
                // One prompt is longer than a step's prefill: it joins over two steps.
                prompt: (0..[3, 300, 7, 1, 20, 45][i])
                    .map(|t| ((t * 13 + i * 5) % 96) as u32)
                    .collect(),
                params: if i % 2 == 0 {
                    greedy.clone()
                } else {
                    sampled.clone()
                },
                eos: Vec::new(),
                adapter: 0,
            })
            .collect();
        let alone = serve(&mut decoder, &requests, 1, None)?;
        for max_batch in [2, 4, 16] {
            assert_eq!(serve(&mut decoder, &requests, max_batch, None)?, alone);
        }
        // A request its caller stops leaves the batch; the others go on unchanged.
        let stopped = serve(&mut decoder, &requests, 3, Some((1, 4)))?;
        assert_eq!(stopped[1].ids, alone[1].ids[..4]);
        assert_eq!(stopped[1].stop, StopReason::Caller);
        assert_eq!(stopped[2..], alone[2..]);
        Ok(())
    }

    #[test]
    fn a_prompt_over_the_context_ends_without_a_token() -> Result<()> {
        let m = quantized_model(false);
        let mut decoder = Decoder::new(&m, Vec::new())?.expect("applies");
        let request = |len: usize| Request {
            prompt: (0..len).map(|t| (t % 96) as u32).collect(),
            params: GenerationParams {
                max_new_tokens: 5,
                ..Default::default()
            },
            eos: Vec::new(),
            adapter: 0,
        };
        let requests = [request(CONTEXT + 1), request(CONTEXT - 2), request(3)];
        let out = serve(&mut decoder, &requests, 4, None)?;
        assert_eq!(
            (out[0].ids.len(), out[0].stop),
            (0, StopReason::ContextFull)
        );
        assert_eq!(
            (out[1].ids.len(), out[1].stop),
            (3, StopReason::ContextFull)
        );
        assert_eq!((out[2].ids.len(), out[2].stop), (5, StopReason::MaxTokens));
        Ok(())
    }

    #[test]
    fn a_batch_on_the_decoder_generates_what_each_prompt_would_alone() -> Result<()> {
        let m = quantized_model(true);
        let params = GenerationParams {
            max_new_tokens: 10,
            ..Default::default()
        };
        let prompts = vec![vec![3u32, 9, 4, 11, 2, 6], vec![5, 1], (0..40).collect()];
        let alone: Vec<Generated> = prompts
            .iter()
            .map(|p| generate(&m, p, &params, &[], &mut |_| Flow::Continue))
            .collect::<Result<_>>()?;
        let batch = generate_batch(&m, &prompts, &params, &[], &mut |_, _| Flow::Continue)?;
        assert_eq!(batch.outputs, alone);
        assert_eq!(batch.timing.prompt_tokens, 48);
        assert_eq!(batch.timing.new_tokens, 30);
        assert!(batch.timing.prefill > Duration::ZERO);
        Ok(())
    }
}
