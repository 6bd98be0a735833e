//! A task record as the model sees it: the chat template renders the system prompt and the
//! input as the prompt, the reference as the assistant's answer; the loss covers the answer only.

use super::chat::{ChatMessage, ChatTemplate};
use super::tokenizer::Tokenizer;
use crate::data::record::Task;
use crate::data::template::system_prompt;

/// Token ids of one example and where the answer starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedExample {
    pub ids: Vec<u32>,
    /// `ids[prompt_len..]` is the answer (empty when there is no target).
    pub prompt_len: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    #[error("chat template: {0}")]
    Template(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

fn messages(task: Option<Task>, input: &str) -> Vec<ChatMessage> {
    let mut m = Vec::new();
    if let Some(t) = task {
        m.push(ChatMessage::new("system", system_prompt(t)));
    }
    m.push(ChatMessage::new("user", input));
    m
}

/// The rendered prompt (ending where the assistant's answer starts) and the rendered answer
/// (`target` with the template's end-of-turn text; empty without a target).
pub fn render_example(
    template: &ChatTemplate,
    task: Option<Task>,
    input: &str,
    target: Option<&str>,
) -> Result<(String, String), ExampleError> {
    let mut msgs = messages(task, input);
    let prompt = template
        .render(&msgs, true)
        .map_err(|e| ExampleError::Template(e.to_string()))?;
    let completion = match target {
        None => String::new(),
        Some(t) => {
            msgs.push(ChatMessage::new("assistant", t));
            let full = template
                .render(&msgs, false)
                .map_err(|e| ExampleError::Template(e.to_string()))?;
            full.strip_prefix(&prompt)
                .ok_or_else(|| {
                    ExampleError::Template(
                        "the rendered conversation does not start with the rendered prompt, so the answer cannot be separated".into(),
                    )
                })?
                .to_string()
        }
    };
    Ok((prompt, completion))
}

/// Renders and tokenizes `input` (and `target`, when given) with the model's template.
pub fn encode_example(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    task: Option<Task>,
    input: &str,
    target: Option<&str>,
) -> Result<EncodedExample, ExampleError> {
    let (prompt, completion) = render_example(template, task, input, target)?;
    let encode = |text: &str| {
        tokenizer
            .encode(text, true)
            .map_err(|e| ExampleError::Tokenizer(e.to_string()))
    };
    let mut ids = Vec::new();
    if tokenizer.add_bos()
        && let Some(bos) = tokenizer.bos_id()
    {
        ids.push(bos);
    }
    ids.extend(encode(&prompt)?);
    let prompt_len = ids.len();
    ids.extend(encode(&completion)?);
    Ok(EncodedExample { ids, prompt_len })
}
