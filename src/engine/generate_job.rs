//! Generation for the playground: one prompt through the engine's model, once with no adapter
//! and once per chosen PEFT adapter, each output streamed as `Event::Token` while it grows.

use super::{Event, JobContext};
use crate::data::record::Task;
use crate::job::JobError;
use crate::model::adapters::{self, load_peft};
use crate::model::generation::{GenerationParams, StopReason};
use crate::model::loading::LoadedModel;
use crate::pipeline::{self, GenerateError, Prompt, Run};
use std::path::PathBuf;
use std::time::Instant;

/// One prompt to generate after, with the project's chat template.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Picks the system prompt; `None` sends the text alone.
    pub task: Option<Task>,
    pub input: String,
    pub params: GenerationParams,
    /// One output each, in order: `None` is the base model, `Some(dir)` a PEFT adapter folder.
    pub adapters: Vec<Option<PathBuf>>,
}

/// One finished output.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOutput {
    pub text: String,
    pub new_tokens: usize,
    pub seconds: f64,
    pub stop: StopReason,
    /// The input lost its end to leave room for the output in the model's context.
    pub input_cut: bool,
}

pub(super) fn run(
    ctx: &JobContext,
    slot: &mut Option<LoadedModel>,
    request: GenerateRequest,
) -> Result<Event, JobError> {
    let model = slot
        .as_mut()
        .ok_or_else(|| JobError::Usage("no model is loaded: load one in the sidebar".into()))?;
    let result = generate_each(ctx, model, &request);
    // Later jobs expect the base model.
    adapters::remove(&mut model.llama);
    result
}

fn generate_each(
    ctx: &JobContext,
    model: &mut LoadedModel,
    request: &GenerateRequest,
) -> Result<Event, JobError> {
    let prompt = Prompt::Chat {
        task: request.task,
        input: &request.input,
    };
    for (output, adapter) in request.adapters.iter().enumerate() {
        ctx.check()?;
        match adapter {
            None => adapters::remove(&mut model.llama),
            Some(dir) => {
                load_peft(&mut model.llama, dir).map_err(|e| {
                    JobError::Usage(format!("the adapter could not be loaded: {e}"))
                })?;
            }
        }
        let started = Instant::now();
        let mut stream = |_: usize, text: &str| {
            ctx.emit(Event::Token {
                job: ctx.job,
                output,
                text: text.to_string(),
            })
        };
        let cancelled = || ctx.is_cancelled();
        let run = Run {
            on_text: Some(&mut stream),
            ..Run::new(&request.params, &cancelled)
        };
        let generated = pipeline::generate(model, &[prompt], run)
            .map_err(|e| match e {
                GenerateError::Prompt { source, .. } => {
                    JobError::Usage(format!("the prompt could not be encoded: {source}"))
                }
                e => JobError::Model(e.to_string()),
            })?
            .outputs
            .into_iter()
            .next()
            .ok_or_else(|| JobError::Model("no output for the prompt".into()))?;
        ctx.check()?;
        ctx.emit(Event::Generated {
            job: ctx.job,
            output,
            result: GenerationOutput {
                text: generated.text,
                new_tokens: generated.ids.len(),
                seconds: started.elapsed().as_secs_f64(),
                stop: generated.stop,
                input_cut: generated.input_cut,
            },
        });
    }
    Ok(Event::Message {
        job: ctx.job,
        text: format!("Generated {} outputs", request.adapters.len()),
    })
}
