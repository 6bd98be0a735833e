//! What a request generates after, as token ids: a conversation in the model's chat template, a
//! text as it is, or a clinical note in the task's template (fitted as evaluation fits it).

use super::openai::ApiError;
use crate::data::record::Task;
use crate::model::loading::LoadedModel;
use crate::model::tokenizer::chat::ChatMessage;
use crate::pipeline::{Prompt, fit_prompt};

/// A request's prompt before it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// `messages` of a chat completion.
    Messages(Vec<ChatMessage>),
    /// `prompt` of a text completion, given to the model as it is.
    Text(String),
    /// A note for one of the clinical tasks, with its system prompt; a note too long for the
    /// context loses its end.
    Task { task: Task, text: String },
}

/// A prompt's ids, and whether its input lost its end to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub input_cut: bool,
}

fn too_long(param: &str, tokens: usize, context: usize) -> ApiError {
    ApiError::field(
        param,
        "context_length_exceeded",
        format!(
            "{param}: {tokens} tokens, but the model's context is {context} tokens and must \
             leave room for at least one new token"
        ),
    )
}

/// Encodes `input` for `model`, leaving `max_new_tokens` of the context for a task's answer;
/// a conversation or text that leaves no room is refused.
pub fn encode(
    model: &LoadedModel,
    input: &PromptInput,
    max_new_tokens: usize,
) -> Result<Encoded, ApiError> {
    let context = model.llama.rope.max_len();
    let tokenizer_error = |e: &dyn std::fmt::Display| ApiError::server(format!("tokenizer: {e}"));
    let (param, ids) = match input {
        PromptInput::Task { task, text } => {
            let prompt = Prompt::Chat {
                task: Some(*task),
                input: text,
            };
            let fitted = fit_prompt(model, prompt, max_new_tokens)
                .map_err(|e| ApiError::field("text", "invalid_value", format!("text: {e}")))?;
            return Ok(Encoded {
                ids: fitted.ids,
                input_cut: fitted.input_cut,
            });
        }
        PromptInput::Messages(messages) => {
            let text = model.template.render(messages, true).map_err(|e| {
                ApiError::field("messages", "invalid_value", format!("messages: {e}"))
            })?;
            // As training and evaluation encode a templated prompt.
            let mut ids: Vec<u32> = match (model.tokenizer.add_bos(), model.tokenizer.bos_id()) {
                (true, Some(bos)) => vec![bos],
                _ => Vec::new(),
            };
            ids.extend(
                model
                    .tokenizer
                    .encode(&text, true)
                    .map_err(|e| tokenizer_error(&e))?,
            );
            ("messages", ids)
        }
        PromptInput::Text(text) => {
            let ids = model
                .tokenizer
                .encode(text, true)
                .map_err(|e| tokenizer_error(&e))?;
            if ids.is_empty() {
                return Err(ApiError::field(
                    "prompt",
                    "invalid_value",
                    "prompt: expected some text to continue".into(),
                ));
            }
            ("prompt", ids)
        }
    };
    if ids.len() >= context {
        return Err(too_long(param, ids.len(), context));
    }
    Ok(Encoded {
        ids,
        input_cut: false,
    })
}
