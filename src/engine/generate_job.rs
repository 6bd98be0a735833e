//! Generation for the playground: one prompt through the engine's model, once with no adapter
//! and once per chosen PEFT adapter, each output streamed as `Event::Token` while it grows.

use super::{Event, JobContext, JobError};
use crate::data::record::Task;
use crate::model::example::encode_example;
use crate::model::generate::{Flow, GenerationParams, StopReason, generate};
use crate::model::llama::Llama;
use crate::model::load::LoadedModel;
use crate::model::lora::load_peft;
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
}

pub(super) fn run(
    ctx: &JobContext,
    slot: &mut Option<LoadedModel>,
    request: GenerateRequest,
) -> Result<Event, JobError> {
    let model = slot
        .as_mut()
        .ok_or_else(|| JobError::Failed("no model is loaded: load one in the sidebar".into()))?;
    let prompt = encode_example(
        &model.tokenizer,
        &model.template,
        request.task,
        &request.input,
        None,
    )
    .map_err(|e| JobError::Failed(format!("the prompt could not be encoded: {e}")))?
    .ids;
    let result = generate_each(ctx, model, &request, &prompt);
    // Later jobs expect the base model.
    remove_adapters(&mut model.llama);
    result
}

fn remove_adapters(llama: &mut Llama) {
    for (_, layer) in llama.linears_mut() {
        layer.lora = None;
    }
}

fn generate_each(
    ctx: &JobContext,
    model: &mut LoadedModel,
    request: &GenerateRequest,
    prompt: &[u32],
) -> Result<Event, JobError> {
    let eos = model.tokenizer.eos_ids();
    for (output, adapter) in request.adapters.iter().enumerate() {
        ctx.check()?;
        match adapter {
            None => remove_adapters(&mut model.llama),
            Some(dir) => {
                load_peft(&mut model.llama, dir).map_err(|e| {
                    JobError::Failed(format!("the adapter could not be loaded: {e}"))
                })?;
            }
        }
        let started = Instant::now();
        let generated = generate(&model.llama, prompt, &request.params, &eos, &mut |ids| {
            if ctx.is_cancelled() {
                return Flow::Stop;
            }
            // Decoding the whole output each time keeps characters split across tokens whole.
            if let Ok(text) = model.tokenizer.decode(ids, true) {
                ctx.emit(Event::Token {
                    job: ctx.job,
                    output,
                    text,
                });
            }
            Flow::Continue
        })
        .map_err(|e| JobError::Failed(super::model::first_line(&e.to_string())))?;
        ctx.check()?;
        let text = model
            .tokenizer
            .decode(&generated.ids, true)
            .map_err(|e| JobError::Failed(e.to_string()))?;
        ctx.emit(Event::Generated {
            job: ctx.job,
            output,
            result: GenerationOutput {
                text,
                new_tokens: generated.ids.len(),
                seconds: started.elapsed().as_secs_f64(),
                stop: generated.stop,
            },
        });
    }
    Ok(Event::Message {
        job: ctx.job,
        text: format!("Generated {} outputs", request.adapters.len()),
    })
}
