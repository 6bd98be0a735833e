//! The bias audit: a per-example metric of a prediction set sliced by gender, age group,
//! ethnicity and their pairwise intersections; each slice's mean with a seeded bootstrap
//! interval, its gap and ratio to the overall value, a permutation test against the rest with
//! Benjamini-Hochberg q-values, and a flag when the gap is large, significant and against the
//! group. Writes the `bias.json` of DESIGN.md's files section.

pub mod counterfactual;
pub mod job;
mod report;
pub mod stats;

pub use report::{findings, mitigations};
pub use stats::Disparity;

use crate::data::record::{AgeGroup, Demographic};
use crate::data::rng::SeededRng;
use crate::eval::bootstrap::{interval_with_seed, mean_of};
use crate::project::predictions::{PredictionRow, higher_is_worse};
use rayon::prelude::*;
use serde::Serialize;
use serde::ser::SerializeMap;
use std::collections::{BTreeMap, BTreeSet};

pub const BIAS_FILE: &str = "bias.json";

/// The metrics the issue names, in the user's words; any other metric of the file works too.
pub const COMMON_METRICS: [&str; 6] = [
    "rougeL.fmeasure",
    "rouge1.fmeasure",
    "bleu",
    "fkgl",
    "meds.hallucinated",
    "loss",
];

/// How the audit slices and when it flags.
#[derive(Debug, Clone, PartialEq)]
pub struct BiasOptions {
    /// A metric name as `predictions.jsonl` has it (`rougeL.fmeasure`) or a short name
    /// (`rougeL`, `grade`, `hallucinated`): see `resolve_metric`.
    pub metric: String,
    /// The dimensions sliced alone; their pairs too when `intersections`.
    pub dims: Vec<Demographic>,
    pub intersections: bool,
    /// The relative gap to overall (0.10: 10%) beyond which a significant slice is flagged.
    pub threshold: f64,
    /// Slices with fewer examples are shown but neither tested nor flagged.
    pub min_size: usize,
    /// The q-value under which a gap counts as significant.
    pub alpha: f64,
    pub permutations: usize,
    /// Seeds the bootstrap and the permutations.
    pub seed: u64,
}

impl Default for BiasOptions {
    fn default() -> Self {
        Self {
            metric: "rougeL.fmeasure".into(),
            dims: Demographic::ALL.to_vec(),
            intersections: true,
            threshold: 0.10,
            min_size: 20,
            alpha: 0.05,
            permutations: 9_999,
            seed: crate::eval::bootstrap::SEED,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BiasError {
    #[error("no record has metric {metric:?}; the metrics found are: {}", found.join(", "))]
    UnknownMetric { metric: String, found: Vec<String> },
    #[error("no dimension to slice by; expected some of gender, age_group, ethnicity")]
    NoDimensions,
    #[error("threshold {0} must be a number from 0 to 1 (0.1 is 10%)")]
    BadThreshold(f64),
}

/// The groups a slice covers, one value per dimension, in the order the dimensions were given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SliceKey(pub Vec<(Demographic, String)>);

impl SliceKey {
    pub fn get(&self, dim: Demographic) -> Option<&str> {
        self.0
            .iter()
            .find(|(d, _)| *d == dim)
            .map(|(_, v)| v.as_str())
    }

    pub fn dims(&self) -> Vec<Demographic> {
        self.0.iter().map(|(d, _)| *d).collect()
    }

    /// `F × 65+`.
    pub fn label(&self) -> String {
        self.0
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(" × ")
    }

    /// `gender F × age group 65+`.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(d, v)| format!("{} {v}", d.name().replace('_', " ")))
            .collect::<Vec<_>>()
            .join(" × ")
    }

    fn matches(&self, row: &PredictionRow) -> bool {
        self.0
            .iter()
            .all(|(d, v)| group_of(row, *d).as_deref() == Some(v.as_str()))
    }
}

impl Serialize for SliceKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (d, v) in &self.0 {
            map.serialize_entry(d.name(), v)?;
        }
        map.end()
    }
}

/// The name of a set of dimensions in `between_groups`: `gender` or `gender,age_group`.
pub fn dims_name(dims: &[Demographic]) -> String {
    dims.iter().map(|d| d.name()).collect::<Vec<_>>().join(",")
}

/// A row's group in one dimension (the age group's label for age).
pub fn group_of(row: &PredictionRow, dim: Demographic) -> Option<String> {
    match dim {
        Demographic::Gender => row.gender.clone(),
        Demographic::AgeGroup => row.age_group().map(|g| g.label().to_string()),
        Demographic::Ethnicity => row.ethnicity.clone(),
    }
}

/// Parses `gender,age_group` (also `sex`, `age`, `race`).
pub fn parse_dims(text: &str) -> Result<Vec<Demographic>, String> {
    let mut dims = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let dim = match part.to_ascii_lowercase().as_str() {
            "gender" | "sex" => Demographic::Gender,
            "age_group" | "age-group" | "age" => Demographic::AgeGroup,
            "ethnicity" | "race" => Demographic::Ethnicity,
            _ => {
                return Err(format!(
                    "unknown dimension {part:?}; expected gender, age_group or ethnicity"
                ));
            }
        };
        if !dims.contains(&dim) {
            dims.push(dim);
        }
    }
    Ok(dims)
}

/// The metric name a user's short name stands for among `found`: exact names first, then
/// `rougeL` → `rougeL.fmeasure`, `grade` → `fkgl`, `hallucinated` → `meds.hallucinated`.
pub fn resolve_metric(name: &str, found: &[String]) -> Option<String> {
    let alias = match name.trim() {
        "grade" | "reading_grade" | "reading-grade" => "fkgl".to_string(),
        "hallucinated" | "hallucinated_meds" | "hallucination" => "meds.hallucinated".into(),
        other => other.to_string(),
    };
    [alias.clone(), format!("{alias}.fmeasure")]
        .into_iter()
        .find(|c| found.contains(c))
}

/// Mean, interval and size of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub ci: [f64; 2],
}

/// One slice of the audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SliceReport {
    pub dims: SliceKey,
    pub n: usize,
    pub mean: f64,
    pub ci: [f64; 2],
    /// mean − overall.
    pub diff_to_overall: f64,
    /// mean / overall (`None` when the overall value is 0).
    pub ratio_to_overall: Option<f64>,
    /// (mean − overall) / |overall|: what the threshold is compared with.
    pub relative_gap: Option<f64>,
    /// Permutation-test p-value against the rest; `None` for a slice too small to test.
    pub p: Option<f64>,
    /// Benjamini-Hochberg q-value across all slices tested.
    pub q: Option<f64>,
    /// Under the minimum size: shown, never flagged.
    pub small: bool,
    /// The gap is beyond the threshold, against the group, and q < alpha.
    pub flagged: bool,
    /// The record without which a gap beyond the threshold would be within it: one record
    /// makes the group's difference, and a reader should look at it before at the group.
    pub driven_by: Option<String>,
}

impl SliceReport {
    /// Whether the slice does worse than overall (lower, or higher for grade, errors, loss).
    pub fn worse(&self, higher_worse: bool) -> bool {
        if higher_worse {
            self.diff_to_overall > 0.0
        } else {
            self.diff_to_overall < 0.0
        }
    }
}

/// What `audit` finds: the contents of `bias.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BiasReport {
    pub metric: String,
    pub higher_is_worse: bool,
    pub overall: Summary,
    pub threshold: f64,
    pub min_size: usize,
    pub alpha: f64,
    pub permutations: usize,
    pub seed: u64,
    pub dims: Vec<String>,
    pub slices: Vec<SliceReport>,
    /// `difference()` and `ratio()` with method `between_groups`, per dimension set.
    pub between_groups: BTreeMap<String, Disparity>,
    /// The same with method `to_overall`.
    pub to_overall: BTreeMap<String, Disparity>,
    /// Records without a value of the metric (left out of every slice).
    pub missing: usize,
    /// What was found, in sentences.
    pub findings: Vec<String>,
    pub mitigations: Vec<String>,
}

impl BiasReport {
    /// The slice with exactly these groups.
    pub fn slice(&self, key: &SliceKey) -> Option<&SliceReport> {
        self.slices.iter().find(|s| &s.dims == key)
    }

    pub fn flagged(&self) -> impl Iterator<Item = &SliceReport> {
        self.slices.iter().filter(|s| s.flagged)
    }
}

/// The sets of dimensions sliced: each alone, then each pair in the given order.
pub fn dimension_sets(dims: &[Demographic], intersections: bool) -> Vec<Vec<Demographic>> {
    let mut sets: Vec<Vec<Demographic>> = dims.iter().map(|d| vec![*d]).collect();
    if intersections {
        for (i, a) in dims.iter().enumerate() {
            for b in &dims[i + 1..] {
                sets.push(vec![*a, *b]);
            }
        }
    }
    sets
}

/// The order groups are shown in: age groups youngest first, other values alphabetically.
fn group_rank(dim: Demographic, value: &str) -> (usize, String) {
    match dim {
        Demographic::AgeGroup => (
            AgeGroup::ALL
                .iter()
                .position(|g| g.label() == value)
                .unwrap_or(usize::MAX),
            String::new(),
        ),
        _ => (0, value.to_string()),
    }
}

/// The slices of one dimension set that have values, in display order.
fn slices_of(rows: &[&PredictionRow], dims: &[Demographic]) -> Vec<SliceKey> {
    let keys: BTreeSet<Vec<(usize, String, String)>> = rows
        .iter()
        .filter_map(|r| {
            dims.iter()
                .map(|d| {
                    let v = group_of(r, *d)?;
                    let (rank, sort) = group_rank(*d, &v);
                    Some((rank, sort, v))
                })
                .collect::<Option<Vec<_>>>()
        })
        .collect();
    keys.into_iter()
        .map(|k| {
            SliceKey(
                dims.iter()
                    .copied()
                    .zip(k.into_iter().map(|p| p.2))
                    .collect(),
            )
        })
        .collect()
}

/// A stream per slice, so that a slice's test does not depend on which others are tested.
fn slice_rng(seed: u64, key: &SliceKey) -> SeededRng {
    let text = format!("{key:?}");
    // FNV-1a: stable across platforms and releases, unlike std's hasher.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    SeededRng::new(seed).fork(hash)
}

/// Fewer values than this give no interval worth a number: a bootstrap of four values
/// resamples a handful of distinct means.
pub const MIN_INTERVAL_N: usize = 5;

/// Whether an interval was estimated: a slice too small for one (n < 5) has bounds that are not
/// numbers (null in JSON).
pub fn interval_estimable(ci: [f64; 2]) -> bool {
    ci[0].is_finite() && ci[1].is_finite()
}

/// `95% interval 0.265 to 0.347`, or `not estimable (n < 5)` where the slice is too small to
/// estimate one.
pub fn interval_text(ci: [f64; 2], value: impl Fn(f64) -> String) -> String {
    if interval_estimable(ci) {
        format!("95% interval {} to {}", value(ci[0]), value(ci[1]))
    } else {
        format!("not estimable (n < {MIN_INTERVAL_N})")
    }
}

fn summary(values: &[f64], seed: u64) -> Summary {
    let defined: Vec<Option<f64>> = values.iter().copied().map(Some).collect();
    let iv = interval_with_seed(values.len(), seed, |ix| mean_of(&defined, ix));
    let (mean, mut ci) = iv.map_or((f64::NAN, [f64::NAN; 2]), |i| (i.value, [i.low, i.high]));
    if values.len() < MIN_INTERVAL_N {
        ci = [f64::NAN; 2];
    }
    Summary {
        n: values.len(),
        mean,
        ci,
    }
}

/// Audits `rows` for metric `opts.metric`.
pub fn audit(rows: &[PredictionRow], opts: &BiasOptions) -> Result<BiasReport, BiasError> {
    if opts.dims.is_empty() {
        return Err(BiasError::NoDimensions);
    }
    if !(0.0..=1.0).contains(&opts.threshold) {
        return Err(BiasError::BadThreshold(opts.threshold));
    }
    let found: Vec<String> = rows
        .iter()
        .flat_map(|r| r.metrics.iter().map(|(n, _)| n.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let metric = resolve_metric(&opts.metric, &found).ok_or_else(|| BiasError::UnknownMetric {
        metric: opts.metric.clone(),
        found: found.clone(),
    })?;
    let scored: Vec<(&PredictionRow, f64)> = rows
        .iter()
        .filter_map(|r| r.metric(&metric).map(|v| (r, v)))
        .collect();
    let values: Vec<f64> = scored.iter().map(|(_, v)| *v).collect();
    let with_rows: Vec<&PredictionRow> = scored.iter().map(|(r, _)| *r).collect();
    let overall = summary(&values, opts.seed);
    let keys: Vec<SliceKey> = dimension_sets(&opts.dims, opts.intersections)
        .iter()
        .flat_map(|dims| slices_of(&with_rows, dims))
        .collect();
    let mut slices: Vec<SliceReport> = keys
        .into_par_iter()
        .map(|key| measure(&key, &with_rows, &values, overall.mean, opts))
        .collect();
    let tested: Vec<usize> = (0..slices.len())
        .filter(|&i| slices[i].p.is_some())
        .collect();
    let p: Vec<f64> = tested.iter().filter_map(|&i| slices[i].p).collect();
    for (&i, q) in tested.iter().zip(stats::benjamini_hochberg(&p)) {
        slices[i].q = Some(q);
    }
    let higher_worse = higher_is_worse(&metric);
    for s in &mut slices {
        s.flagged = !s.small
            && s.q.is_some_and(|q| q < opts.alpha)
            && s.worse(higher_worse)
            && s.relative_gap.is_some_and(|g| g.abs() > opts.threshold);
    }
    let (between_groups, to_overall) = group_disparities(&slices, opts, overall.mean);
    let mut report = BiasReport {
        metric,
        higher_is_worse: higher_worse,
        overall,
        threshold: opts.threshold,
        min_size: opts.min_size,
        alpha: opts.alpha,
        permutations: opts.permutations,
        seed: opts.seed,
        dims: opts.dims.iter().map(|d| d.name().to_string()).collect(),
        slices,
        between_groups,
        to_overall,
        missing: rows.len() - values.len(),
        findings: Vec::new(),
        mitigations: Vec::new(),
    };
    report.findings = findings(&report);
    report.mitigations = mitigations(&report);
    Ok(report)
}

/// One slice's statistics (its q-value and flag come later, from all slices).
fn measure(
    key: &SliceKey,
    rows: &[&PredictionRow],
    values: &[f64],
    overall: f64,
    opts: &BiasOptions,
) -> SliceReport {
    let members: Vec<usize> = (0..rows.len()).filter(|&i| key.matches(rows[i])).collect();
    let own: Vec<f64> = members.iter().map(|&i| values[i]).collect();
    let s = summary(&own, opts.seed);
    let small = own.len() < opts.min_size;
    let p = if small {
        None
    } else {
        let mut rng = slice_rng(opts.seed, key);
        stats::permutation_p(values, &members, opts.permutations, &mut rng)
    };
    let diff = s.mean - overall;
    let relative_gap = (overall != 0.0).then(|| diff / overall.abs());
    let driven_by = relative_gap
        .filter(|g| g.abs() > opts.threshold && own.len() >= 2)
        .and_then(|_| one_record_gap(&own, overall, values.len(), opts.threshold))
        .map(|k| rows[members[k]].id.clone());
    SliceReport {
        dims: key.clone(),
        n: s.n,
        mean: s.mean,
        ci: s.ci,
        diff_to_overall: diff,
        ratio_to_overall: (overall != 0.0).then(|| s.mean / overall),
        relative_gap,
        p,
        q: None,
        small,
        flagged: false,
        driven_by,
    }
}

/// The index of the one value of `own` whose removal from the data (the slice and the
/// `total` values whose mean is `overall`) brings the slice's gap within `threshold`, if
/// there is one.
fn one_record_gap(own: &[f64], overall: f64, total: usize, threshold: f64) -> Option<usize> {
    if total < 3 {
        return None;
    }
    let (n, all) = (own.len() as f64, total as f64);
    let sum: f64 = own.iter().sum();
    let gap_without = |v: f64| {
        let rest = (overall * all - v) / (all - 1.0);
        (((sum - v) / (n - 1.0) - rest) / rest.abs()).abs()
    };
    let (k, gap) = own
        .iter()
        .map(|&v| gap_without(v))
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    (gap <= threshold).then_some(k)
}

type Disparities = (BTreeMap<String, Disparity>, BTreeMap<String, Disparity>);

/// Fairlearn's disparities of every dimension set, over all its groups (small ones included).
fn group_disparities(slices: &[SliceReport], opts: &BiasOptions, overall: f64) -> Disparities {
    let mut between = BTreeMap::new();
    let mut to_overall = BTreeMap::new();
    for dims in dimension_sets(&opts.dims, opts.intersections) {
        let means: Vec<f64> = slices
            .iter()
            .filter(|s| s.dims.dims() == dims)
            .map(|s| s.mean)
            .collect();
        if let Some((b, t)) = stats::disparities(&means, overall) {
            between.insert(dims_name(&dims), b);
            to_overall.insert(dims_name(&dims), t);
        }
    }
    (between, to_overall)
}

#[cfg(test)]
mod tests;
