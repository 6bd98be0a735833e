//! From prompts to text, the one way everything that generates does it (`lablens generate`, the
//! playground, evaluation, explanations, the bias counterfactual test): each prompt rendered
//! with the model's chat template (or taken raw), fitted into the context with room left for
//! `max_new_tokens` (the input loses its end, never the instruction or the template), generated
//! together (greedy or sampled, cancellable, streamed when asked) and decoded.

use crate::data::record::Task;
use crate::model::generation::{Flow, GenerationParams, StopReason, Timing, generate_batch};
use crate::model::loading::LoadedModel;
use crate::model::tokenizer::example::{ExampleError, encode_example, fit};

#[cfg(test)]
mod tests;

/// What to generate after.
#[derive(Debug, Clone, Copy)]
pub enum Prompt<'a> {
    /// A task input in the model's chat template, with the task's system prompt (`None`: the
    /// input alone as the user's message).
    Chat { task: Option<Task>, input: &'a str },
    /// Text given to the model as it is.
    Raw(&'a str),
}

/// A prompt's token ids, and whether its input lost its end to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    pub ids: Vec<u32>,
    pub input_cut: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Prompt `index` (of those given) could not be rendered or encoded.
    #[error("{source}")]
    Prompt {
        index: usize,
        #[source]
        source: ExampleError,
    },
    #[error("{0}")]
    Model(#[from] candle_core::Error),
    #[error("tokenizer: {0}")]
    Decode(String),
}

/// `prompt` as token ids, its input cut where it would leave less than `max_new_tokens` of the
/// model's context (at least one token is always left for the answer).
pub fn fit_prompt(
    model: &LoadedModel,
    prompt: Prompt<'_>,
    max_new_tokens: usize,
) -> Result<Fitted, ExampleError> {
    let room = model
        .llama
        .rope
        .max_len()
        .saturating_sub(max_new_tokens)
        .max(1);
    let ids = match prompt {
        Prompt::Raw(text) => model
            .tokenizer
            .encode(text, true)
            .map_err(|e| ExampleError::Tokenizer(e.to_string()))?,
        Prompt::Chat { task, input } => {
            let encode =
                |input: &str| encode_example(&model.tokenizer, &model.template, task, input, None);
            let ids = encode(input)?.ids;
            if ids.len() > room {
                let fitted = fit(&ids, ids.len(), &encode("")?.ids, room).ids;
                return Ok(Fitted {
                    ids: fitted,
                    input_cut: true,
                });
            }
            ids
        }
    };
    let input_cut = ids.len() > room;
    Ok(Fitted {
        ids: ids[..ids.len().min(room)].to_vec(),
        input_cut,
    })
}

/// Called with `(row, text so far)` after each new token of a row.
pub type OnText<'a> = &'a mut dyn FnMut(usize, &str);

/// How a generation runs beyond its parameters.
pub struct Run<'a> {
    pub params: &'a GenerationParams,
    /// Stop a row at the model's end-of-sequence tokens (off: always `max_new_tokens`, for
    /// benchmarks).
    pub stop_at_eos: bool,
    /// Checked after every token: every row stops once it answers true.
    pub cancelled: &'a dyn Fn() -> bool,
    /// `(row, text so far)` after each new token of a row, for streaming.
    pub on_text: Option<OnText<'a>>,
}

impl<'a> Run<'a> {
    /// Stopping at the end of sequence, not streamed.
    pub fn new(params: &'a GenerationParams, cancelled: &'a dyn Fn() -> bool) -> Self {
        Run {
            params,
            stop_at_eos: true,
            cancelled,
            on_text: None,
        }
    }
}

/// One prompt's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new tokens decoded, special tokens left out.
    pub text: String,
    pub ids: Vec<u32>,
    pub stop: StopReason,
    /// The prompt's input lost its end to fit the context.
    pub input_cut: bool,
}

/// Every prompt's output, in order, and the batch's timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Generations {
    pub outputs: Vec<Generation>,
    pub timing: Timing,
}

/// Generates after every prompt together (each gets what it would alone).
pub fn generate(
    model: &LoadedModel,
    prompts: &[Prompt<'_>],
    run: Run<'_>,
) -> Result<Generations, GenerateError> {
    let mut fitted = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.iter().enumerate() {
        fitted.push(
            fit_prompt(model, *prompt, run.params.max_new_tokens)
                .map_err(|source| GenerateError::Prompt { index, source })?,
        );
    }
    let eos = if run.stop_at_eos {
        model.tokenizer.eos_ids()
    } else {
        Vec::new()
    };
    let (ids, cut): (Vec<Vec<u32>>, Vec<bool>) =
        fitted.into_iter().map(|f| (f.ids, f.input_cut)).unzip();
    let (cancelled, mut on_text) = (run.cancelled, run.on_text);
    let batch = generate_batch(&model.llama, &ids, run.params, &eos, &mut |row, ids| {
        if cancelled() {
            return Flow::Stop;
        }
        // Decoding the whole output each time keeps characters split across tokens whole.
        if let Some(f) = on_text.as_mut()
            && let Ok(text) = model.tokenizer.decode(ids, true)
        {
            f(row, &text);
        }
        Flow::Continue
    })?;
    let outputs = batch
        .outputs
        .into_iter()
        .zip(cut)
        .map(|(out, input_cut)| {
            let text = model
                .tokenizer
                .decode(&out.ids, true)
                .map_err(|e| GenerateError::Decode(e.to_string()))?;
            Ok(Generation {
                text,
                ids: out.ids,
                stop: out.stop,
                input_cut,
            })
        })
        .collect::<Result<_, GenerateError>>()?;
    Ok(Generations {
        outputs,
        timing: batch.timing,
    })
}
