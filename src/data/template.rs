//! Prompt templates (ChatML, Llama-3, Alpaca) and the system prompt of each task: how a record
//! becomes the text a model sees, split into the prompt and the completion it must learn.

use super::record::Task;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TemplateKind {
    /// `<|im_start|>role ... <|im_end|>`, used by SmolLM2 and Qwen.
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>`, used by Llama 3.x.
    Llama3,
    /// The instruction / input / response layout of Alpaca-style datasets.
    Alpaca,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 3] = [
        TemplateKind::ChatMl,
        TemplateKind::Llama3,
        TemplateKind::Alpaca,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TemplateKind::ChatMl => "chatml",
            TemplateKind::Llama3 => "llama3",
            TemplateKind::Alpaca => "alpaca",
        }
    }

    pub fn parse(s: &str) -> Option<TemplateKind> {
        TemplateKind::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Text that ends the assistant's turn; generation stops on it.
    pub fn end_of_turn(self) -> &'static str {
        match self {
            TemplateKind::ChatMl => "<|im_end|>",
            TemplateKind::Llama3 => "<|eot_id|>",
            TemplateKind::Alpaca => "\n\n### Instruction:",
        }
    }
}

/// The instruction that frames each task; the discharge one is the Python pipeline's wording.
pub fn system_prompt(task: Task) -> &'static str {
    match task {
        Task::Discharge => {
            "You are a medical assistant. Explain this hospital discharge summary to the patient \
             in simple, everyday language. Avoid medical jargon."
        }
        Task::Soap => {
            "You are a medical scribe. Write a SOAP note with the sections Subjective, Objective, \
             Assessment and Plan from this conversation between a doctor and a patient."
        }
        Task::Qa => {
            "You are a medical expert. Answer this multiple-choice exam question with the letter \
             of the correct option, then explain your answer in one to three sentences."
        }
    }
}

/// A rendered example: the model reads `prompt` and is trained to continue with `completion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    pub prompt: String,
    pub completion: String,
}

impl RenderedPrompt {
    pub fn full_text(&self) -> String {
        format!("{}{}", self.prompt, self.completion)
    }
}

/// Renders one example. Without a target the completion is empty: the prompt is ready for
/// generation. The completion carries the end-of-turn marker so a model learns to stop.
pub fn render(kind: TemplateKind, task: Task, input: &str, target: Option<&str>) -> RenderedPrompt {
    let system = system_prompt(task);
    let prompt = match kind {
        TemplateKind::ChatMl => format!(
            "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
        ),
        TemplateKind::Llama3 => format!(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\n{input}<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        TemplateKind::Alpaca => format!(
            "Below is an instruction that describes a task, paired with an input that provides \
             further context. Write a response that appropriately completes the request.\n\n\
             ### Instruction:\n{system}\n\n### Input:\n{input}\n\n### Response:\n"
        ),
    };
    let completion = match (kind, target) {
        (_, None) => String::new(),
        (TemplateKind::ChatMl, Some(t)) => format!("{t}<|im_end|>\n"),
        (TemplateKind::Llama3, Some(t)) => format!("{t}<|eot_id|>"),
        (TemplateKind::Alpaca, Some(t)) => t.to_string(),
    };
    RenderedPrompt { prompt, completion }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_matches_smollm2_layout() {
        let r = render(
            TemplateKind::ChatMl,
            Task::Discharge,
            "Dx: CHF",
            Some("Your heart"),
        );
        assert_eq!(
            r.prompt,
            "<|im_start|>system\nYou are a medical assistant. Explain this hospital discharge \
             summary to the patient in simple, everyday language. Avoid medical jargon.<|im_end|>\n\
             <|im_start|>user\nDx: CHF<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(r.completion, "Your heart<|im_end|>\n");
    }

    #[test]
    fn llama3_and_alpaca_put_input_before_completion() {
        for kind in [TemplateKind::Llama3, TemplateKind::Alpaca] {
            let r = render(kind, Task::Qa, "Which drug?", Some("Answer: B"));
            let full = r.full_text();
            let input_at = full.find("Which drug?").unwrap_or(usize::MAX);
            let answer_at = full.find("Answer: B").unwrap_or(0);
            assert!(input_at < answer_at, "{kind:?}");
            assert!(r.prompt.contains(system_prompt(Task::Qa)));
        }
        let l3 = render(TemplateKind::Llama3, Task::Soap, "hi", None);
        assert!(l3.prompt.starts_with("<|begin_of_text|>"));
        assert!(
            l3.prompt
                .ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n")
        );
        assert!(l3.completion.is_empty());
    }

    #[test]
    fn names_round_trip() {
        for k in TemplateKind::ALL {
            assert_eq!(TemplateKind::parse(k.name()), Some(k));
        }
        assert_eq!(TemplateKind::parse("vicuna"), None);
    }
}
