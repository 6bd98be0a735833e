//! The model worker: the one thread that owns the loaded model. It sends each request's text to
//! its own channel as it comes, so that a slow or vanished client never holds up the others (a
//! request whose channel is closed stops and frees its place).
//!
//! A block-quantized model on the CPU is served with continuous batching
//! ([`crate::model::generation::continuous`]): up to `max_batch` requests decode together, each
//! with its own sampling settings and model id (base or adapter), a request joins as soon as
//! there is room and leaves when it ends. Other models generate the waiting requests that use
//! the same model and sampling settings together, a batch at a time.

use super::metrics::Metrics;
use super::models::ServedModel;
use super::openai::{ApiError, Finish};
use super::prompt::{PromptInput, encode};
use super::stream::TextStream;
use crate::model::adapters::{Adapters, set_enabled};
use crate::model::decode::{AdapterSet, Decoder};
use crate::model::generation::continuous::{Request, Update, Wait, decode_continuously};
use crate::model::generation::{Flow, Generated, GenerationParams, StopReason, generate_batch};
use crate::model::llama::Llama;
use crate::model::loading::LoadedModel;
use crossbeam_channel::{Receiver, Sender};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A request for the worker.
#[derive(Debug)]
pub struct Job {
    /// Index of the served model.
    pub model: usize,
    pub prompt: PromptInput,
    /// `max_new_tokens` is this request's own; the worker leaves less where the context is full.
    pub params: GenerationParams,
    pub stop: Vec<String>,
    pub events: Sender<Event>,
}

/// What the worker tells a request, in this order: `Started` (or `Failed`), `Text` as it comes,
/// then `Done` (or `Failed`).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        prompt_tokens: usize,
        input_cut: bool,
    },
    Text(String),
    Done {
        finish: Finish,
        completion_tokens: usize,
    },
    Failed(ApiError),
}

/// Serves the queue until every sender is gone. `model` has its adapters switched off;
/// `adapters` are the served adapters, in the order of `served`.
pub fn run(
    model: &mut LoadedModel,
    served: &[ServedModel],
    adapters: &[Adapters],
    queue: &Receiver<Job>,
    max_batch: usize,
    metrics: &Metrics,
) {
    if !Decoder::applies(&model.llama) {
        return serve_in_batches(model, served, adapters, queue, max_batch, metrics);
    }
    // The CPU decoder: adapter set 0 the base model, then the adapters in the order of
    // `served`, each with its own copy of its matrices.
    let sets: candle_core::Result<Vec<AdapterSet>> = adapters
        .iter()
        .map(|a| {
            a.attach(&mut model.llama);
            AdapterSet::of(&model.llama)
        })
        .collect();
    set_enabled(&mut model.llama, false);
    match sets.and_then(|sets| Decoder::new(&model.llama, sets)) {
        Ok(Some(decoder)) => serve_continuously(decoder, model, queue, max_batch, metrics),
        Ok(None) => serve_in_batches(model, served, adapters, queue, max_batch, metrics),
        Err(e) => {
            // The decoder could not take an adapter: every request hears why.
            for job in queue.iter() {
                metrics.dequeued(1);
                let failed = ApiError::server(format!("the model could not be served: {e}"));
                job.events.send(Event::Failed(failed)).ok();
            }
        }
    }
}

/// A request being decoded with the others.
struct Serving {
    job: Job,
    stream: TextStream,
    max_new_tokens: usize,
    finish: Option<Finish>,
}

/// Continuous batching on the CPU decoder.
fn serve_continuously(
    mut decoder: Decoder,
    model: &LoadedModel,
    queue: &Receiver<Job>,
    max_batch: usize,
    metrics: &Metrics,
) {
    let eos = model.tokenizer.eos_ids();
    // Both callbacks reach the requests being served, one at a time.
    let serving: RefCell<HashMap<u64, Serving>> = RefCell::new(HashMap::new());
    let mut ids = 0u64;
    // While requests decode: when their time was last counted, for the tokens/s of `/metrics`.
    let mut mark: Option<Instant> = None;
    let result = decode_continuously(
        &mut decoder,
        max_batch,
        &mut |wait| loop {
            if let Some(since) = mark.take() {
                metrics.generated(0, since.elapsed());
            }
            let job = match wait {
                Wait::Idle => queue.recv().ok()?,
                Wait::Busy => {
                    mark = Some(Instant::now());
                    queue.try_recv().ok()?
                }
            };
            metrics.dequeued(1);
            let Some((row, prompt)) = admit(model, job) else {
                continue;
            };
            let request = Request {
                prompt,
                params: GenerationParams {
                    max_new_tokens: row.max_new_tokens,
                    ..row.job.params.clone()
                },
                eos: eos.clone(),
                adapter: row.job.model,
            };
            ids += 1;
            mark.get_or_insert_with(Instant::now);
            serving.borrow_mut().insert(ids, row);
            return Some((ids, request));
        },
        &mut |id, update| {
            let mut serving = serving.borrow_mut();
            match update {
                Update::Token(generated) => {
                    metrics.generated(1, Duration::ZERO);
                    match serving.get_mut(&id) {
                        Some(row) => stream_token(model, row, generated),
                        None => Flow::Stop,
                    }
                }
                Update::Done(out, _) => {
                    if let Some(row) = serving.remove(&id) {
                        finish(row, &out);
                    }
                    Flow::Continue
                }
            }
        },
    );
    if let Err(e) = result {
        for (_, row) in serving.borrow_mut().drain() {
            let failed = ApiError::server(format!("generation failed: {e}"));
            row.job.events.send(Event::Failed(failed)).ok();
        }
    }
}

/// Encodes a job's prompt and tells it the generation started: the request and its prompt's
/// ids, or `None` where the prompt is refused (the job hears why) or the client is gone.
fn admit(model: &LoadedModel, job: Job) -> Option<(Serving, Vec<u32>)> {
    let encoded = match encode(model, &job.prompt, job.params.max_new_tokens) {
        Ok(e) => e,
        Err(e) => {
            job.events.send(Event::Failed(e)).ok();
            return None;
        }
    };
    let started = Event::Started {
        prompt_tokens: encoded.ids.len(),
        input_cut: encoded.input_cut,
    };
    job.events.send(started).ok()?;
    let context = model.llama.rope.max_len();
    let row = Serving {
        max_new_tokens: job.params.max_new_tokens.min(context - encoded.ids.len()),
        stream: TextStream::new(job.stop.clone()),
        finish: None,
        job,
    };
    Some((row, encoded.ids))
}

/// Streams a request's new text; whether it goes on (its client is there, no stop string, room
/// left).
fn stream_token(model: &LoadedModel, row: &mut Serving, ids: &[u32]) -> Flow {
    // Decoding the whole output each time keeps characters split across tokens whole.
    if let Ok(text) = model.tokenizer.decode(ids, true) {
        let delta = row.stream.push(&text);
        if !delta.is_empty() && row.job.events.send(Event::Text(delta)).is_err() {
            // The client is gone: its place goes to the others.
            return Flow::Stop;
        }
    }
    if row.stream.stopped() {
        row.finish = Some(Finish::Stop);
        return Flow::Stop;
    }
    if ids.len() >= row.max_new_tokens {
        row.finish = Some(Finish::Length);
        return Flow::Stop;
    }
    Flow::Continue
}

/// Sends a finished request the rest of its text and how it ended.
fn finish(mut row: Serving, out: &Generated) {
    let finish = row.finish.unwrap_or(match out.stop {
        StopReason::EndOfSequence | StopReason::Caller => Finish::Stop,
        StopReason::MaxTokens | StopReason::ContextFull => Finish::Length,
    });
    let rest = row.stream.finish();
    if !rest.is_empty() {
        row.job.events.send(Event::Text(rest)).ok();
    }
    row.job
        .events
        .send(Event::Done {
            finish,
            completion_tokens: out.ids.len(),
        })
        .ok();
}

/// The waiting requests that use the same model and sampling settings, a batch at a time.
fn serve_in_batches(
    model: &mut LoadedModel,
    served: &[ServedModel],
    adapters: &[Adapters],
    queue: &Receiver<Job>,
    max_batch: usize,
    metrics: &Metrics,
) {
    // Requests taken off the queue that did not fit the last batch, oldest first.
    let mut held: VecDeque<Job> = VecDeque::new();
    // The served model whose adapter is attached.
    let mut attached = served.iter().rposition(|s| s.adapter.is_some());
    loop {
        let first = match held.pop_front() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        for _ in 0..held.len() {
            match held.pop_front() {
                Some(job) if batch.len() < max_batch && joins(&batch[0], &job) => batch.push(job),
                Some(job) => held.push_back(job),
                None => break,
            }
        }
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) if joins(&batch[0], &job) => batch.push(job),
                Ok(job) => held.push_back(job),
                Err(_) => break,
            }
        }
        metrics.dequeued(batch.len());
        select(
            &mut model.llama,
            served,
            adapters,
            batch[0].model,
            &mut attached,
        );
        generate(model, batch, metrics);
    }
}

/// Makes `model` compute served model `m`: its adapters switched off for the base model, else
/// `m`'s adapter (`adapters` in the order of the served models that have one) switched on, put
/// in place first when another one is `attached`.
fn select(
    model: &mut Llama,
    served: &[ServedModel],
    adapters: &[Adapters],
    m: usize,
    attached: &mut Option<usize>,
) {
    if served[m].adapter.is_none() {
        set_enabled(model, false);
        return;
    }
    if *attached != Some(m) {
        let k = served[..m].iter().filter(|s| s.adapter.is_some()).count();
        adapters[k].attach(model);
        *attached = Some(m);
    }
    set_enabled(model, true);
}

/// Whether `job` can be generated with `first`: the same model and sampling (its own length).
fn joins(first: &Job, job: &Job) -> bool {
    let same = GenerationParams {
        max_new_tokens: first.params.max_new_tokens,
        ..job.params.clone()
    };
    first.model == job.model && same == first.params
}

/// Encodes the batch's prompts, generates them together and reports to each request.
fn generate(model: &LoadedModel, batch: Vec<Job>, metrics: &Metrics) {
    let mut rows = Vec::with_capacity(batch.len());
    let mut prompts = Vec::with_capacity(batch.len());
    for job in batch {
        if let Some((row, ids)) = admit(model, job) {
            rows.push(row);
            prompts.push(ids);
        }
    }
    let Some(first) = rows.first() else {
        return;
    };
    let params = GenerationParams {
        max_new_tokens: rows.iter().map(|r| r.max_new_tokens).max().unwrap_or(1),
        ..first.job.params.clone()
    };
    let eos = model.tokenizer.eos_ids();
    let started = Instant::now();
    let result = generate_batch(&model.llama, &prompts, &params, &eos, &mut |i, ids| {
        stream_token(model, &mut rows[i], ids)
    });
    match result {
        Ok(batch) => {
            metrics.generated(batch.timing.new_tokens, started.elapsed());
            for (row, out) in rows.into_iter().zip(batch.outputs) {
                finish(row, &out);
            }
        }
        Err(e) => {
            for row in rows {
                let failed = ApiError::server(format!("generation failed: {e}"));
                row.job.events.send(Event::Failed(failed)).ok();
            }
        }
    }
}
