//! A task record as the model sees it: the chat template renders the system prompt and the
//! input as the prompt, the reference as the assistant's answer; the loss covers the answer only.
//! An example too long for its room loses the end of its input, never the template or the start
//! of the answer.

use super::Tokenizer;
use super::chat::{ChatMessage, ChatTemplate};
use crate::data::record::{Record, Task};
use crate::data::template::system_prompt;

/// Token ids of one example and where the answer starts: `ids[prompt_len..]` is the target
/// (empty when there is none).
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
) -> Result<Example, ExampleError> {
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
    Ok(Example { ids, prompt_len })
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
}
