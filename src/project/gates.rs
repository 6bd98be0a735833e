//! What `project.ron` says a model must reach before it serves: its quality gates (`gates: [...]`)
//! and how the registry compares a candidate with the version in production (`registry: (...)`).
//! Only the data lives here; the registry checks the names and thresholds and evaluates them.

use serde::{Deserialize, Serialize};

/// One quality gate: `(metric: "rouge1", compare: ">=", threshold: 0.30, lower_bound: true)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// A corpus metric of the evaluation (`rouge1`, `bleu`, `fkgl`, `meds.hallucinated_per_example`,
    /// ...) or `bias.flagged_slices`.
    pub metric: String,
    /// `">="`, `"<="`, `">"` or `"<"`: the measured value on the left, the threshold on the right.
    pub compare: String,
    pub threshold: f64,
    /// Compare the end of the 95% interval that is worse for the comparison (the low end for
    /// `>=` and `>`, the high end for `<=` and `<`) instead of the value itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lower_bound: bool,
}

/// How a candidate is compared with the version in production before it replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistrySettings {
    /// The metric both versions are compared on, record by record (a gate's metric name that has
    /// a value per record: `rouge1`, `rougeL`, `bleu`, `fkgl`, ...).
    pub primary_metric: String,
    /// The largest relative loss on the primary metric a promotion accepts (0.02: 2% worse).
    pub max_relative_drop: f64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            primary_metric: "rouge1".into(),
            max_relative_drop: 0.02,
        }
    }
}

impl RegistrySettings {
    /// Whether these are the defaults (then `project.ron` need not hold them).
    pub fn is_default(&self) -> bool {
        *self == RegistrySettings::default()
    }
}
