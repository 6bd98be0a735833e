//! Which parts of the input drove a model's output. Four methods: LIME over words, sentences or
//! sections (a ridge surrogate of the answer's log-likelihood under perturbation), gradient x
//! input saliency per token (one forward and backward pass), section ablation (likelihood and
//! ROUGE without each clinical section) and input-length sensitivity (the same on truncations).
//! `run` resolves a project's run and record and writes `explain/<record>.json`.

pub mod features;
mod job;
pub mod lime;
mod methods;
pub mod scoring;

pub use features::{Feature, FeatureKind};
pub use job::{
    EXPLAIN_DIR, ExplainRequest, SplitRequest, explain_record, explain_split, explanation_path,
    read_explanation,
};
pub use methods::{Explainer, word_weights_of};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How an explanation is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    Lime,
    Saliency,
    Sections,
    Length,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::Lime,
        Method::Saliency,
        Method::Sections,
        Method::Length,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Lime => "lime",
            Method::Saliency => "saliency",
            Method::Sections => "sections",
            Method::Length => "length",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Method::Lime => "LIME",
            Method::Saliency => "Saliency (gradient x input)",
            Method::Sections => "Section importance",
            Method::Length => "Input length",
        }
    }

    pub fn parse(text: &str) -> Option<Method> {
        Self::ALL.into_iter().find(|m| m.name() == text)
    }
}

/// The text whose log-likelihood is explained.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetText {
    /// The model's own output for the record.
    #[default]
    Output,
    /// The record's reference.
    Reference,
    /// One medication mention in the model's output (matched without regard to case).
    Medication(String),
}

impl TargetText {
    /// `output`, `reference` or `medication:NAME`.
    pub fn parse(text: &str) -> Option<TargetText> {
        match text {
            "output" => Some(TargetText::Output),
            "reference" => Some(TargetText::Reference),
            _ => text
                .strip_prefix("medication:")
                .filter(|n| !n.trim().is_empty())
                .map(|n| TargetText::Medication(n.trim().to_string())),
        }
    }

    pub fn name(&self) -> String {
        match self {
            TargetText::Output => "output".into(),
            TargetText::Reference => "reference".into(),
            TargetText::Medication(n) => format!("medication:{n}"),
        }
    }
}

/// What to compute and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExplainSettings {
    pub method: Method,
    pub features: FeatureKind,
    pub target: TargetText,
    /// LIME's perturbed samples (the unperturbed input among them).
    pub samples: usize,
    pub seed: u64,
    /// Perturbed inputs scored in one forward pass.
    pub batch: usize,
    /// Longest output generated (the model's own output when the run has none for the record,
    /// and the outputs of ablated and truncated inputs).
    pub max_new_tokens: usize,
    /// Input-length sensitivity: the fractions of the input's words kept.
    pub fractions: Vec<f64>,
    /// Where to also write LIME's perturbed inputs as dataset records (benchmarks score the
    /// same sequences with `lablens score`).
    #[serde(skip)]
    pub samples_out: Option<PathBuf>,
}

impl Default for ExplainSettings {
    fn default() -> Self {
        ExplainSettings {
            method: Method::Lime,
            features: FeatureKind::Words,
            target: TargetText::Output,
            samples: 256,
            seed: 42,
            batch: 8,
            max_new_tokens: 256,
            fractions: vec![0.1, 0.25, 0.5, 0.75, 1.0],
            samples_out: None,
        }
    }
}

/// One feature's weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureWeight {
    pub label: String,
    /// Byte span in the input.
    pub start: usize,
    pub end: usize,
    pub weight: f64,
}

/// How fast the perturbed inputs were scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub sequences: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimeResult {
    pub features: FeatureKind,
    pub samples: usize,
    pub seed: u64,
    pub kernel_width: f64,
    /// One per feature, in input order.
    pub weights: Vec<FeatureWeight>,
    pub intercept: f64,
    /// Weighted R^2 of the surrogate on the samples.
    pub r2: f64,
    /// The target's log-likelihood with the whole input.
    pub full_loglik: f64,
    pub scoring: Throughput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaliencyResult {
    /// Input tokens (those inside the input text) with gradient x input.
    pub tokens: Vec<FeatureWeight>,
    /// Per word of the input: the sum over its tokens.
    pub words: Vec<FeatureWeight>,
    pub loglik: f64,
    pub seconds: f64,
}

/// The effect of removing one section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionImpact {
    pub section: String,
    pub start: usize,
    pub end: usize,
    /// Log-likelihood of the target without the section minus with it (negative: the section
    /// supported the target).
    pub loglik_change: f64,
    /// ROUGE-L F1 of the output generated without the section minus that of the full input.
    pub rouge_l_change: f64,
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionsResult {
    pub full_loglik: f64,
    /// ROUGE-L of the output generated here for the whole input, which each section's change
    /// is measured from (like with like: every output of the method generated the same way).
    pub full_rouge_l: f64,
    /// ROUGE-L of the explained output (the evaluated one where the run has it), the number
    /// the Compare panel shows for the record.
    #[serde(default)]
    pub output_rouge_l: f64,
    /// Whether the whole input's output generated here differs from the explained one (an
    /// evaluation's other settings, its batch's padding or its device), so that the two
    /// ROUGE-L values differ and the text says which is which.
    #[serde(default)]
    pub regenerated_differs: bool,
    pub sections: Vec<SectionImpact>,
}

impl SectionsResult {
    /// What the section bars start from, in a sentence: the whole input's log-likelihood and
    /// ROUGE-L, and which output that ROUGE-L is of when the one generated again here differs from
    /// the explained (evaluated) one.
    pub fn summary(&self) -> String {
        if self.regenerated_differs {
            format!(
                "Whole input: log-likelihood {:.2}. ROUGE-L F1 {:.3} of the output above; the sections \
                 are measured on outputs generated again here, and the whole input's one differs \
                 from it (ROUGE-L F1 {:.3}). Bars: the change from that {:.3} without each section.",
                self.full_loglik, self.output_rouge_l, self.full_rouge_l, self.full_rouge_l
            )
        } else {
            format!(
                "Whole input: log-likelihood {:.2}, ROUGE-L F1 {:.3} (the output above). Bars: the \
                 change without each section.",
                self.full_loglik, self.full_rouge_l
            )
        }
    }
}

/// The target's likelihood and the regenerated output's ROUGE-L at one input length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthPoint {
    pub fraction: f64,
    pub words: usize,
    /// Mean log-likelihood per target token.
    pub loglik_per_token: f64,
    pub rouge_l: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthResult {
    pub points: Vec<LengthPoint>,
}

/// Everything explained about one record by one model, as `explain/<record>.json` keeps it;
/// each method's latest result is kept beside the others.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Explanation {
    pub record: String,
    /// `base` or the run's id.
    pub model: String,
    pub input: String,
    pub reference: String,
    pub output: String,
    /// Where the output came from: `predictions.jsonl` or `generated`.
    pub output_source: String,
    pub lime: Option<Targeted<LimeResult>>,
    pub saliency: Option<Targeted<SaliencyResult>>,
    pub sections: Option<Targeted<SectionsResult>>,
    pub length: Option<Targeted<LengthResult>>,
}

/// A method's result with the target it explains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Targeted<T> {
    /// `output`, `reference` or `medication:NAME`.
    pub target: String,
    /// The scored text (the medication's name for a mention).
    pub target_text: String,
    /// The method's whole time (greedy outputs included).
    pub elapsed_s: f64,
    #[serde(flatten)]
    pub result: T,
}

/// Section importance over a split: per section kind, the mean changes and how many records
/// had the section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSections {
    pub model: String,
    pub split: String,
    pub records: usize,
    pub target: String,
    pub sections: Vec<SectionMean>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionMean {
    pub section: String,
    pub n: usize,
    pub loglik_change: f64,
    pub rouge_l_change: f64,
}
