//! The degradation check of a promotion: the candidate and the version in production compared
//! on the same test records (the ids both evaluated, read from the predictions.jsonl each version
//! keeps) on the primary metric, with the paired bootstrap interval of the mean difference, so
//! that the user sees whether a drop is real or noise.

use super::RegisteredModel;
use super::files::{MAX_PREDICTIONS_BYTES, read_bounded};
use super::gates::MetricDef;
use crate::eval::bootstrap::{Interval, SEED, interval_with_seed, mean_of};
use crate::eval::job::PREDICTIONS_FILE;
use crate::job::JobError;
use crate::project::predictions::parse_predictions;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How the candidate compares with production on the primary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Degradation {
    /// The primary metric, and its name per record in predictions.jsonl.
    pub metric: String,
    pub per_example: String,
    pub higher_is_better: bool,
    pub production: u32,
    pub candidate: u32,
    /// Records both versions evaluated with a value of the metric.
    pub paired: usize,
    pub only_production: usize,
    pub only_candidate: usize,
    /// Means over the paired records.
    pub production_mean: Option<f64>,
    pub candidate_mean: Option<f64>,
    /// candidate − production, with its paired bootstrap 95% interval.
    pub difference: Option<Interval>,
    /// The difference relative to the production mean.
    pub relative_change: Option<f64>,
    pub max_relative_drop: f64,
    /// Worse by more than the allowed drop, or not comparable (no record in common).
    pub degraded: bool,
}

impl Degradation {
    /// `rouge1 over 40 paired records: production (v1) 0.4210, candidate (v2) 0.3904, difference
    /// -0.0306 [-0.0411, -0.0207] (-7.3%, more than the 2.0% allowed)`.
    pub fn describe(&self) -> String {
        let (Some(p), Some(c), Some(d)) =
            (self.production_mean, self.candidate_mean, self.difference)
        else {
            return format!(
                "{}: no record is in both version {}'s and version {}'s predictions with a value \
                 of it ({} only in production's, {} only in the candidate's), so the candidate \
                 cannot be compared with production; evaluate both on the same split",
                self.metric,
                self.production,
                self.candidate,
                self.only_production,
                self.only_candidate
            );
        };
        let relative = self
            .relative_change
            .map_or("-".into(), |r| format!("{:+.1}%", r * 100.0));
        let verdict = if self.degraded {
            format!(
                "worse by more than the {:.1}% allowed",
                self.max_relative_drop * 100.0
            )
        } else {
            format!("within the {:.1}% allowed", self.max_relative_drop * 100.0)
        };
        format!(
            "{} over {} paired records: production (version {}) {p:.4}, candidate (version {}) \
             {c:.4}, difference {:+.4} [{:+.4}, {:+.4}] ({relative}, {verdict})",
            self.metric, self.paired, self.production, self.candidate, d.value, d.low, d.high
        )
    }
}

/// The per-record values of `name` in a version's predictions, by record id.
fn values(
    model: &RegisteredModel,
    version: u32,
    name: &str,
) -> Result<HashMap<String, f64>, JobError> {
    let path = model.version_dir(version).join(PREDICTIONS_FILE);
    let bytes = read_bounded(&path, MAX_PREDICTIONS_BYTES)?;
    let (rows, _issues) = parse_predictions(&bytes);
    Ok(rows
        .into_iter()
        .filter_map(|r| r.metric(name).map(|v| (r.id, v)))
        .collect())
}

/// Compares `candidate` with `production` on `metric` (which has a value per record).
pub fn compare(
    model: &RegisteredModel,
    production: u32,
    candidate: u32,
    metric: &MetricDef,
    max_relative_drop: f64,
) -> Result<Degradation, JobError> {
    let per_example = metric.per_example.unwrap_or(metric.name);
    let prod = values(model, production, per_example)?;
    let cand = values(model, candidate, per_example)?;
    let mut ids: Vec<&String> = prod.keys().filter(|id| cand.contains_key(*id)).collect();
    ids.sort();
    let pairs: Vec<(f64, f64)> = ids.iter().map(|id| (prod[*id], cand[*id])).collect();
    let diffs: Vec<Option<f64>> = pairs.iter().map(|(p, c)| Some(c - p)).collect();
    let all: Vec<usize> = (0..pairs.len()).collect();
    let mean = |pick: fn(&(f64, f64)) -> f64| {
        let v: Vec<Option<f64>> = pairs.iter().map(|p| Some(pick(p))).collect();
        mean_of(&v, &all)
    };
    let production_mean = mean(|p| p.0);
    let candidate_mean = mean(|p| p.1);
    let difference = interval_with_seed(pairs.len(), SEED, |ix| mean_of(&diffs, ix));
    let relative_change = match (production_mean, difference) {
        (Some(p), Some(d)) if p != 0.0 => Some(d.value / p.abs()),
        (Some(_), Some(d)) if d.value == 0.0 => Some(0.0),
        _ => None,
    };
    let worse = |change: f64| {
        if metric.higher_is_better {
            change < -max_relative_drop
        } else {
            change > max_relative_drop
        }
    };
    let degraded = match (relative_change, difference) {
        (Some(r), _) => worse(r),
        // Production's mean is 0: any change for the worse is more than any share of it.
        (None, Some(d)) => worse(d.value.signum()),
        (None, None) => true,
    };
    Ok(Degradation {
        metric: metric.name.to_string(),
        per_example: per_example.to_string(),
        higher_is_better: metric.higher_is_better,
        production,
        candidate,
        paired: pairs.len(),
        only_production: prod.len() - pairs.len(),
        only_candidate: cand.len() - pairs.len(),
        production_mean,
        candidate_mean,
        difference,
        relative_change,
        max_relative_drop,
        degraded,
    })
}
