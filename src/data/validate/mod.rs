//! Checks a loaded dataset the way the Python pipelines did (schema valid, no nulls, no duplicates,
//! within length limits) and adds PHI and demographic coverage, as one serializable report.

mod checks;
mod duplicates;
mod lengths;

use crate::data::load::{LoadIssue, LoadedDataset, MISSING_FIELD, map_in_parallel, worker_count};
use crate::data::phi::{PhiKind, PhiSpan, find_phi};
use crate::data::record::{Demographic, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use self::duplicates::{conflicts, exact_duplicates, normalized_duplicates, normalized_hash};
use self::lengths::{length_stats, outliers};

/// How many PHI findings the report lists; the counts always cover every record.
pub const MAX_PHI_FINDINGS: usize = 500;
/// How many record ids (or duplicate groups) a list keeps; its count is always complete.
pub const MAX_LISTED: usize = 500;

/// Word-count bounds, inclusive, outside which a record is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub input_words: (usize, usize),
    pub target_words: (usize, usize),
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            input_words: (5, 4000),
            target_words: (1, 1500),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub file: PathBuf,
    pub sha256: String,
    pub limits: Limits,
    pub records: usize,
    pub lines_read: usize,
    /// Every problem met while loading; each is a schema error.
    pub issues: Vec<LoadIssue>,
    pub schema_errors: usize,
    /// Per field: records where it is absent, null or empty (for input and target, the lines
    /// dropped for lacking it count too).
    pub missing: BTreeMap<String, usize>,
    /// Records with the same input and target.
    pub exact_duplicates: Groups,
    /// The same after collapsing whitespace and lowercasing; includes the exact duplicates.
    pub normalized_duplicates: Groups,
    /// One input (normalized) with different targets.
    pub conflicts: Groups,
    pub input_words: LengthStats,
    pub target_words: LengthStats,
    pub input_too_short: IdList,
    pub input_too_long: IdList,
    pub target_too_short: IdList,
    pub target_too_long: IdList,
    /// Per demographic field (`gender`, `age_group`, `ethnicity`).
    pub coverage: BTreeMap<String, Coverage>,
    pub tasks: BTreeMap<String, usize>,
    pub phi: PhiReport,
    pub checks: Vec<Check>,
}

/// Groups of record ids that belong together, each in file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Groups {
    pub count: usize,
    /// Records beyond the first of each group (what pandas' `duplicated().sum()` counts).
    pub extra_records: usize,
    /// The first `MAX_LISTED` groups.
    pub groups: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdList {
    pub count: usize,
    /// The first `MAX_LISTED` ids.
    pub ids: Vec<String>,
}

/// Word counts; quantiles interpolate linearly, as numpy and pandas do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthStats {
    pub min: usize,
    pub mean: f64,
    pub median: f64,
    pub p95: f64,
    pub max: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    pub values: BTreeMap<String, usize>,
    pub missing: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhiReport {
    /// Spans found per kind name, over every record.
    pub by_kind: BTreeMap<String, usize>,
    pub records_with_phi: usize,
    /// The first `MAX_PHI_FINDINGS` spans in file order.
    pub findings: Vec<PhiFinding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhiFinding {
    pub id: String,
    pub field: String,
    pub kind: PhiKind,
    /// The span with a little text either side, on one line.
    pub snippet: String,
}

/// One pass/fail line, as the Python pipelines printed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// What one pass over a record's text finds; computed in parallel, then aggregated in order.
struct TextFacts {
    input_words: usize,
    target_words: usize,
    input_hash: u64,
    target_hash: u64,
    /// (`true` for the target, span).
    phi: Vec<(bool, PhiSpan)>,
}

pub fn validate(ds: &LoadedDataset, limits: &Limits) -> ValidationReport {
    let records = &ds.records;
    let facts = text_facts(records);
    let input_words: Vec<usize> = facts.iter().map(|f| f.input_words).collect();
    let target_words: Vec<usize> = facts.iter().map(|f| f.target_words).collect();
    let (input_min, input_max) = limits.input_words;
    let (target_min, target_max) = limits.target_words;
    let mut report = ValidationReport {
        file: ds.path.clone(),
        sha256: ds.sha256.clone(),
        limits: *limits,
        records: records.len(),
        lines_read: ds.lines_read,
        issues: ds.issues.clone(),
        schema_errors: ds.issues.len(),
        missing: missing_counts(ds),
        exact_duplicates: exact_duplicates(records),
        normalized_duplicates: normalized_duplicates(records, &facts),
        conflicts: conflicts(records, &facts),
        input_words: length_stats(&input_words),
        target_words: length_stats(&target_words),
        input_too_short: outliers(records, &input_words, |w| w < input_min),
        input_too_long: outliers(records, &input_words, |w| w > input_max),
        target_too_short: outliers(records, &target_words, |w| w < target_min),
        target_too_long: outliers(records, &target_words, |w| w > target_max),
        coverage: coverage(records),
        tasks: task_counts(records),
        phi: phi_report(records, &facts),
        checks: Vec::new(),
    };
    report.checks = checks::checks(&report);
    report
}

fn text_facts(records: &[Record]) -> Vec<TextFacts> {
    let chunk = records.len().div_ceil(worker_count()).max(1);
    let chunks: Vec<&[Record]> = records.chunks(chunk).collect();
    let per_chunk = map_in_parallel(&chunks, |chunk| {
        let mut buffer = String::new();
        chunk
            .iter()
            .map(|record| {
                let (input_words, input_hash) = normalized_hash(&record.input, &mut buffer);
                let (target_words, target_hash) = normalized_hash(&record.target, &mut buffer);
                let phi = find_phi(&record.input)
                    .into_iter()
                    .map(|span| (false, span))
                    .chain(
                        find_phi(&record.target)
                            .into_iter()
                            .map(|span| (true, span)),
                    )
                    .collect();
                TextFacts {
                    input_words,
                    target_words,
                    input_hash,
                    target_hash,
                    phi,
                }
            })
            .collect::<Vec<_>>()
    });
    per_chunk.into_iter().flatten().collect()
}

fn missing_counts(ds: &LoadedDataset) -> BTreeMap<String, usize> {
    let dropped = |field: &str| {
        ds.issues
            .iter()
            .filter(|i| i.field.as_deref() == Some(field) && i.message == MISSING_FIELD)
            .count()
    };
    let count = |absent: &dyn Fn(&Record) -> bool| ds.records.iter().filter(|r| absent(r)).count();
    BTreeMap::from([
        (
            "input".to_string(),
            dropped("input") + count(&|r| r.input.trim().is_empty()),
        ),
        (
            "target".to_string(),
            dropped("target") + count(&|r| r.target.trim().is_empty()),
        ),
        ("patient_id".to_string(), count(&|r| r.patient_id.is_none())),
        ("gender".to_string(), count(&|r| r.gender.is_none())),
        ("age".to_string(), count(&|r| r.age.is_none())),
        ("ethnicity".to_string(), count(&|r| r.ethnicity.is_none())),
    ])
}

fn coverage(records: &[Record]) -> BTreeMap<String, Coverage> {
    Demographic::ALL
        .iter()
        .map(|&field| {
            let mut coverage = Coverage::default();
            for record in records {
                match record.demographic(field) {
                    Some(value) => *coverage.values.entry(value).or_default() += 1,
                    None => coverage.missing += 1,
                }
            }
            (field.name().to_string(), coverage)
        })
        .collect()
}

fn task_counts(records: &[Record]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in records {
        *counts.entry(record.task.name().to_string()).or_default() += 1;
    }
    counts
}

fn phi_report(records: &[Record], facts: &[TextFacts]) -> PhiReport {
    let mut report = PhiReport::default();
    for (record, fact) in records.iter().zip(facts) {
        if !fact.phi.is_empty() {
            report.records_with_phi += 1;
        }
        for (in_target, span) in &fact.phi {
            *report
                .by_kind
                .entry(span.kind.name().to_string())
                .or_default() += 1;
            if report.findings.len() < MAX_PHI_FINDINGS {
                let (field, text) = if *in_target {
                    ("target", &record.target)
                } else {
                    ("input", &record.input)
                };
                report.findings.push(PhiFinding {
                    id: record.id.clone(),
                    field: field.to_string(),
                    kind: span.kind,
                    snippet: snippet(text, span),
                });
            }
        }
    }
    report
}

/// The span with up to 20 characters either side, whitespace runs shown as one space.
fn snippet(text: &str, span: &PhiSpan) -> String {
    const CONTEXT: usize = 20;
    let (Some(before), Some(after)) = (text.get(..span.start), text.get(span.end..)) else {
        return String::new();
    };
    let start = before
        .char_indices()
        .rev()
        .nth(CONTEXT - 1)
        .map_or(0, |(i, _)| i);
    let end = after
        .char_indices()
        .nth(CONTEXT)
        .map_or(text.len(), |(i, _)| span.end + i);
    text[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl ValidationReport {
    /// The report for a person: what was read, the length and coverage figures, then each check.
    pub fn summary_lines(&self) -> Vec<String> {
        let tasks: Vec<String> = self.tasks.iter().map(|(t, n)| format!("{t} {n}")).collect();
        let stats = |name: &str, s: &LengthStats| {
            format!(
                "{name} words: min {}, median {:.0}, mean {:.1}, p95 {:.0}, max {}",
                s.min, s.median, s.mean, s.p95, s.max
            )
        };
        let mut lines = vec![
            format!(
                "{}: {} records from {} lines (sha256 {})",
                self.file.display(),
                self.records,
                self.lines_read,
                self.sha256.get(..12).unwrap_or(&self.sha256)
            ),
            format!("tasks: {}", tasks.join(", ")),
            stats("input", &self.input_words),
            stats("target", &self.target_words),
        ];
        for (field, coverage) in &self.coverage {
            let values: Vec<String> = coverage
                .values
                .iter()
                .map(|(v, n)| format!("{v} {n}"))
                .collect();
            lines.push(format!(
                "{field}: {}; missing {}",
                values.join(", "),
                coverage.missing
            ));
        }
        for check in &self.checks {
            let mark = if check.passed { "PASS" } else { "FAIL" };
            lines.push(format!("{mark} {}: {}", check.name, check.detail));
        }
        lines
    }
}

/// Records and datasets built in code, so each test states exactly what it validates.
#[cfg(test)]
mod test_support {
    use super::{LoadIssue, LoadedDataset, Record};
    use crate::data::record::Task;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    pub(super) fn record(id: &str, input: &str, target: &str) -> Record {
        Record {
            id: id.to_string(),
            patient_id: Some(format!("p-{id}")),
            task: Task::Discharge,
            input: input.to_string(),
            target: target.to_string(),
            gender: Some("F".to_string()),
            age: Some(40),
            ethnicity: Some("White".to_string()),
            meta: BTreeMap::new(),
        }
    }

    pub(super) fn dataset(records: Vec<Record>, issues: Vec<LoadIssue>) -> LoadedDataset {
        LoadedDataset {
            path: PathBuf::from("d.jsonl"),
            record_lines: (1..=records.len()).collect(),
            records,
            issues,
            lines_read: 0,
            sha256: "0".repeat(64),
        }
    }

    pub(super) const INPUT: &str = "Patient admitted with chest pain and discharged home";
}

#[cfg(test)]
mod tests {
    use super::test_support::{INPUT, dataset, record};
    use super::*;
    use crate::data::record::Task;

    #[test]
    fn coverage_missing_counts_and_tasks() {
        let mut records: Vec<Record> = (0..4)
            .map(|i| record(&i.to_string(), INPUT, &format!("t{i}")))
            .collect();
        records[1].gender = Some("M".to_string());
        records[2].gender = None;
        records[2].age = Some(70);
        records[3].age = None;
        records[3].task = Task::Qa;
        records[3].target = "  ".to_string();
        let dropped = LoadIssue {
            file: PathBuf::from("d.jsonl"),
            line: 9,
            field: Some("input".to_string()),
            message: MISSING_FIELD.to_string(),
        };
        let report = validate(&dataset(records, vec![dropped]), &Limits::default());
        let gender = &report.coverage["gender"];
        assert_eq!(
            gender.values,
            BTreeMap::from([("F".to_string(), 2), ("M".to_string(), 1)])
        );
        assert_eq!(gender.missing, 1);
        let ages = &report.coverage["age_group"];
        assert_eq!(
            ages.values,
            BTreeMap::from([("35-50".to_string(), 2), ("65+".to_string(), 1)])
        );
        assert_eq!(report.missing["input"], 1);
        assert_eq!(report.missing["target"], 1);
        assert_eq!(report.missing["age"], 1);
        assert_eq!(
            report.tasks,
            BTreeMap::from([("discharge".to_string(), 3), ("qa".to_string(), 1)])
        );
        assert_eq!(report.schema_errors, 1);
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "schema valid",
                "no nulls",
                "within length limits",
                "demographics present"
            ]
        );
    }

    #[test]
    fn phi_is_counted_per_kind_and_record() {
        let records = vec![
            record(
                "a",
                "Call the clinic at 617-555-0142 or write to jo@example.org today.",
                "Call us.",
            ),
            record("b", INPUT, "Nothing private here at all."),
            record("c", INPUT, "Reach the nurse at 617-555-0199."),
        ];
        let report = validate(&dataset(records, Vec::new()), &Limits::default());
        assert_eq!(report.phi.records_with_phi, 2);
        assert_eq!(report.phi.by_kind.get("phone"), Some(&2));
        assert_eq!(report.phi.by_kind.get("email"), Some(&1));
        let first = &report.phi.findings[0];
        assert_eq!(
            (first.id.as_str(), first.field.as_str(), first.kind),
            ("a", "input", PhiKind::Phone)
        );
        assert!(first.snippet.contains("617-555-0142"), "{}", first.snippet);
        assert_eq!(report.phi.findings[2].field, "target");
        assert!(!report.checks[4].passed);
    }

    #[test]
    fn a_clean_dataset_passes_and_the_report_round_trips() {
        let records = vec![
            record("a", INPUT, "You had chest pain."),
            record(
                "b",
                "A different admission for a broken arm",
                "Your arm was set.",
            ),
        ];
        let report = validate(&dataset(records, Vec::new()), &Limits::default());
        assert!(
            report.checks.iter().all(|c| c.passed),
            "{:?}",
            report.checks
        );
        assert_eq!(report.checks.len(), 7);
        let json = serde_json::to_string(&report).expect("serialize");
        let back: ValidationReport = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, report);
    }
}
