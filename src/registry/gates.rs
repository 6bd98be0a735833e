//! Quality gates: the metrics a gate may check and the values each can take, the checks that
//! refuse a gate `project.ron` defines wrongly (naming `gates[i].field`), and the evaluation of
//! the gates on what a registered version measured. A gate on a metric the evaluation did not
//! produce fails as "not measured": a gate that cannot be checked has not been passed.

use crate::job::JobError;
use crate::project::gates::{Gate, RegistrySettings};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where a metric's value is found among what a version measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A path into the `corpus` object of eval.json: `["rouge1", "fmeasure"]`.
    Corpus(&'static [&'static str]),
    /// Safety flags per output, from the per-record metrics of predictions.jsonl.
    SafetyFlags,
    /// The number of slices the bias audit flagged.
    FlaggedSlices,
}

/// The values a metric can take: a threshold outside them is a mistake, not a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    Unit,
    Percent,
    NonNegative,
    AtLeastOne,
    Any,
}

impl Range {
    fn contains(self, x: f64) -> bool {
        match self {
            Range::Unit => (0.0..=1.0).contains(&x),
            Range::Percent => (0.0..=100.0).contains(&x),
            Range::NonNegative => x >= 0.0,
            Range::AtLeastOne => x >= 1.0,
            Range::Any => true,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Range::Unit => "between 0 and 1",
            Range::Percent => "between 0 and 100",
            Range::NonNegative => "never negative",
            Range::AtLeastOne => "at least 1",
            Range::Any => "any number",
        }
    }
}

/// A metric a gate can check.
#[derive(Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub source: Source,
    /// The per-record metric of predictions.jsonl that a paired comparison reads; `None` for a
    /// metric that exists for the corpus only.
    pub per_example: Option<&'static str>,
    pub higher_is_better: bool,
    range: Range,
}

const fn corpus(
    name: &'static str,
    path: &'static [&'static str],
    per_example: Option<&'static str>,
    higher_is_better: bool,
    range: Range,
) -> MetricDef {
    MetricDef {
        name,
        source: Source::Corpus(path),
        per_example,
        higher_is_better,
        range,
    }
}

/// Every metric a gate can check: ROUGE and readability as means over the records, corpus
/// BLEU, QA accuracy and macro-F1, perplexity, medication errors and safety flags per output,
/// and the slices the bias audit flagged.
pub const METRICS: &[MetricDef] = &[
    corpus(
        "rouge1",
        &["rouge1", "fmeasure"],
        Some("rouge1.fmeasure"),
        true,
        Range::Unit,
    ),
    corpus(
        "rouge2",
        &["rouge2", "fmeasure"],
        Some("rouge2.fmeasure"),
        true,
        Range::Unit,
    ),
    corpus(
        "rougeL",
        &["rougeL", "fmeasure"],
        Some("rougeL.fmeasure"),
        true,
        Range::Unit,
    ),
    corpus(
        "rougeLsum",
        &["rougeLsum", "fmeasure"],
        Some("rougeLsum.fmeasure"),
        true,
        Range::Unit,
    ),
    corpus("bleu", &["bleu"], Some("bleu"), true, Range::Percent),
    corpus("fkgl", &["fkgl"], Some("fkgl"), false, Range::Any),
    corpus("fre", &["fre"], Some("fre"), true, Range::Any),
    corpus("smog", &["smog"], Some("smog"), false, Range::NonNegative),
    corpus(
        "accuracy",
        &["accuracy"],
        Some("correct"),
        true,
        Range::Unit,
    ),
    corpus("macro_f1", &["macro_f1"], None, true, Range::Unit),
    corpus(
        "perplexity",
        &["perplexity"],
        None,
        false,
        Range::AtLeastOne,
    ),
    corpus(
        "meds.hallucinated_per_example",
        &["meds", "hallucinated_per_example"],
        Some("meds.hallucinated"),
        false,
        Range::NonNegative,
    ),
    corpus(
        "meds.omitted_per_example",
        &["meds", "omitted_per_example"],
        Some("meds.omitted"),
        false,
        Range::NonNegative,
    ),
    corpus(
        "meds.mismatched_per_example",
        &["meds", "mismatched_per_example"],
        Some("meds.mismatched"),
        false,
        Range::NonNegative,
    ),
    MetricDef {
        name: "safety.flags_per_example",
        source: Source::SafetyFlags,
        per_example: Some("safety"),
        higher_is_better: false,
        range: Range::NonNegative,
    },
    MetricDef {
        name: "bias.flagged_slices",
        source: Source::FlaggedSlices,
        per_example: None,
        higher_is_better: false,
        range: Range::NonNegative,
    },
];

/// The metric a gate or the registry settings name.
pub fn metric(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

fn metric_names() -> String {
    METRICS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a gate compares the measured value (left) with its threshold (right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    AtLeast,
    AtMost,
    Above,
    Below,
}

impl Comparison {
    pub fn parse(text: &str) -> Option<Comparison> {
        match text.trim() {
            ">=" => Some(Comparison::AtLeast),
            "<=" => Some(Comparison::AtMost),
            ">" => Some(Comparison::Above),
            "<" => Some(Comparison::Below),
            _ => None,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::AtLeast => ">=",
            Comparison::AtMost => "<=",
            Comparison::Above => ">",
            Comparison::Below => "<",
        }
    }

    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::AtLeast => value >= threshold,
            Comparison::AtMost => value <= threshold,
            Comparison::Above => value > threshold,
            Comparison::Below => value < threshold,
        }
    }

    /// The end of an interval that is worse for this comparison: the low end when the value
    /// must be large, the high end when it must be small.
    fn pessimistic(self, [low, high]: [f64; 2]) -> f64 {
        match self {
            Comparison::AtLeast | Comparison::Above => low,
            Comparison::AtMost | Comparison::Below => high,
        }
    }
}

/// A gate of `project.ron` whose metric, comparison and threshold were checked.
#[derive(Debug, Clone, Copy)]
pub struct CheckedGate {
    pub metric: &'static MetricDef,
    pub compare: Comparison,
    pub threshold: f64,
    pub lower_bound: bool,
}

/// The gates of `project.ron` (at `file`), each checked; the first wrong one is refused, naming
/// its field (`gates[1].threshold`).
pub fn check_gates(file: &Path, gates: &[Gate]) -> Result<Vec<CheckedGate>, JobError> {
    let wrong = |i: usize, field: &str, message: String| {
        JobError::Usage(format!(
            "{}: field \"gates[{i}].{field}\": {message}",
            file.display()
        ))
    };
    gates
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let metric = metric(g.metric.trim()).ok_or_else(|| {
                wrong(
                    i,
                    "metric",
                    format!(
                        "{:?} is not a metric a gate can check; they are: {}",
                        g.metric,
                        metric_names()
                    ),
                )
            })?;
            let compare = Comparison::parse(&g.compare).ok_or_else(|| {
                wrong(
                    i,
                    "compare",
                    format!("{:?} is not one of \">=\", \"<=\", \">\", \"<\"", g.compare),
                )
            })?;
            if !g.threshold.is_finite() {
                return Err(wrong(
                    i,
                    "threshold",
                    format!(
                        "{} is not a number a value can be compared with",
                        g.threshold
                    ),
                ));
            }
            if !metric.range.contains(g.threshold) {
                return Err(wrong(
                    i,
                    "threshold",
                    format!(
                        "{}: {} is {}, so this gate can never mean anything",
                        g.threshold,
                        metric.name,
                        metric.range.describe()
                    ),
                ));
            }
            if g.lower_bound && metric.source == Source::FlaggedSlices {
                return Err(wrong(
                    i,
                    "lower_bound",
                    format!("{} is a count with no interval", metric.name),
                ));
            }
            Ok(CheckedGate {
                metric,
                compare,
                threshold: g.threshold,
                lower_bound: g.lower_bound,
            })
        })
        .collect()
}

/// The primary metric and the largest relative drop of `registry: (...)` in `project.ron`.
pub fn check_settings(
    file: &Path,
    settings: &RegistrySettings,
) -> Result<(&'static MetricDef, f64), JobError> {
    let wrong = |field: &str, message: String| {
        JobError::Usage(format!(
            "{}: field \"registry.{field}\": {message}",
            file.display()
        ))
    };
    let name = settings.primary_metric.trim();
    let primary = metric(name)
        .filter(|m| m.per_example.is_some())
        .ok_or_else(|| {
            let paired: Vec<&str> = METRICS
                .iter()
                .filter(|m| m.per_example.is_some())
                .map(|m| m.name)
                .collect();
            wrong(
                "primary_metric",
                format!(
                    "{name:?} is not a metric with a value per record; it can be one of: {}",
                    paired.join(", ")
                ),
            )
        })?;
    let drop = settings.max_relative_drop;
    if !(drop.is_finite() && (0.0..1.0).contains(&drop)) {
        return Err(wrong(
            "max_relative_drop",
            format!("{drop} is not a share from 0 up to 1 (0.02 is 2% worse)"),
        ));
    }
    Ok((primary, drop))
}

/// A value a version measured, with its 95% interval where it has one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub value: f64,
    pub interval: Option<[f64; 2]>,
}

/// Whether a gate passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    #[serde(rename = "pass")]
    Pass,
    #[serde(rename = "fail")]
    Fail,
    /// The evaluation did not produce the metric (accuracy of a summary task, a bias verdict
    /// of a run never audited): the gate is not passed.
    #[serde(rename = "not measured")]
    NotMeasured,
}

/// A gate's result, as version.json and history.jsonl keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub metric: String,
    pub compare: String,
    pub threshold: f64,
    #[serde(default)]
    pub lower_bound: bool,
    /// The metric's value.
    pub value: Option<f64>,
    pub interval: Option<[f64; 2]>,
    /// What was compared with the threshold: the value, or the interval's pessimistic end.
    pub compared: Option<f64>,
    pub outcome: Outcome,
}

impl GateResult {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }

    /// `rouge1 0.2812 (low end of [0.2612, 0.3011]) >= 0.3: fail`.
    pub fn describe(&self) -> String {
        let outcome = match self.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::NotMeasured => {
                return format!(
                    "{} {} {}: not measured (the version has no {} to compare)",
                    self.metric, self.compare, self.threshold, self.metric
                );
            }
        };
        let value = self.value.map_or("-".into(), |v| format!("{v:.4}"));
        let measured = match (self.lower_bound, self.interval, self.compared) {
            (true, Some([low, high]), Some(c)) => {
                let end = if self.compare.starts_with('>') {
                    "low"
                } else {
                    "high"
                };
                format!("{c:.4} ({end} end of {value} [{low:.4}, {high:.4}])")
            }
            _ => value,
        };
        format!(
            "{} {measured} {} {}: {outcome}",
            self.metric, self.compare, self.threshold
        )
    }
}

/// Each gate evaluated on what `measure` finds of its metric.
pub fn evaluate(
    gates: &[CheckedGate],
    measure: impl Fn(&MetricDef) -> Option<Measured>,
) -> Vec<GateResult> {
    gates
        .iter()
        .map(|g| {
            let measured = measure(g.metric);
            let compared = measured.and_then(|m| match (g.lower_bound, m.interval) {
                (false, _) => Some(m.value),
                (true, Some(ci)) => Some(g.compare.pessimistic(ci)),
                (true, None) => None,
            });
            let outcome = match compared {
                Some(c) if g.compare.holds(c, g.threshold) => Outcome::Pass,
                Some(_) => Outcome::Fail,
                None => Outcome::NotMeasured,
            };
            GateResult {
                metric: g.metric.name.to_string(),
                compare: g.compare.symbol().to_string(),
                threshold: g.threshold,
                lower_bound: g.lower_bound,
                value: measured.map(|m| m.value),
                interval: measured.and_then(|m| m.interval),
                compared,
                outcome,
            }
        })
        .collect()
}
