//! Checks a loaded dataset the way the Python pipelines did (schema valid, no nulls, no duplicates,
//! within length limits) and adds PHI and demographic coverage, as one serializable report.

use crate::data::load::{LoadIssue, LoadedDataset, MISSING_FIELD, map_in_parallel, worker_count};
use crate::data::phi::{PhiKind, PhiSpan, find_phi};
use crate::data::record::{Demographic, Record};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hasher};
use std::path::PathBuf;

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
    let outside = |words: &[usize], keep: &dyn Fn(usize) -> bool| {
        id_list(records, (0..records.len()).filter(|&i| keep(words[i])))
    };
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
        input_too_short: outside(&input_words, &|w| w < input_min),
        input_too_long: outside(&input_words, &|w| w > input_max),
        target_too_short: outside(&target_words, &|w| w < target_min),
        target_too_long: outside(&target_words, &|w| w > target_max),
        coverage: coverage(records),
        tasks: task_counts(records),
        phi: phi_report(records, &facts),
        checks: Vec::new(),
    };
    report.checks = checks(&report);
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

/// Writes `text` with whitespace runs collapsed to one space, trimmed and lowercased into
/// `buffer`, and returns its word count.
fn normalize_into(text: &str, buffer: &mut String) -> usize {
    buffer.clear();
    let mut words = 0;
    for word in text.split_whitespace() {
        if words > 0 {
            buffer.push(' ');
        }
        if word.is_ascii() {
            buffer.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            buffer.extend(word.chars().flat_map(char::to_lowercase));
        }
        words += 1;
    }
    words
}

fn normalized_hash(text: &str, buffer: &mut String) -> (usize, u64) {
    let words = normalize_into(text, buffer);
    let mut hasher = DefaultHasher::new();
    hasher.write(buffer.as_bytes());
    (words, hasher.finish())
}

fn normalized_equal(a: &str, b: &str) -> bool {
    let (mut left, mut right) = (String::new(), String::new());
    normalize_into(a, &mut left);
    normalize_into(b, &mut right);
    left == right
}

/// Indices of records sharing a key, in groups of two or more, each group and the list in file order.
fn equal_runs<K: Ord>(keys: &[K]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]).then(a.cmp(&b)));
    let mut runs: Vec<Vec<usize>> = order
        .chunk_by(|&a, &b| keys[a] == keys[b])
        .filter(|run| run.len() > 1)
        .map(<[usize]>::to_vec)
        .collect();
    runs.sort_by_key(|run| run[0]);
    runs
}

/// Splits a run found by hash into the groups whose members really are equal.
fn refine(run: Vec<usize>, same: impl Fn(usize, usize) -> bool) -> Vec<Vec<usize>> {
    let mut classes: Vec<Vec<usize>> = Vec::new();
    for index in run {
        match classes.iter_mut().find(|class| same(class[0], index)) {
            Some(class) => class.push(index),
            None => classes.push(vec![index]),
        }
    }
    classes.retain(|class| class.len() > 1);
    classes
}

fn groups(records: &[Record], runs: Vec<Vec<usize>>) -> Groups {
    Groups {
        count: runs.len(),
        extra_records: runs.iter().map(|run| run.len() - 1).sum(),
        groups: runs
            .iter()
            .take(MAX_LISTED)
            .map(|run| run.iter().map(|&i| records[i].id.clone()).collect())
            .collect(),
    }
}

fn exact_duplicates(records: &[Record]) -> Groups {
    let keys: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.input.as_str(), r.target.as_str()))
        .collect();
    groups(records, equal_runs(&keys))
}

fn normalized_duplicates(records: &[Record], facts: &[TextFacts]) -> Groups {
    let keys: Vec<(u64, u64)> = facts
        .iter()
        .map(|f| (f.input_hash, f.target_hash))
        .collect();
    let same = |a: usize, b: usize| {
        normalized_equal(&records[a].input, &records[b].input)
            && normalized_equal(&records[a].target, &records[b].target)
    };
    let runs = equal_runs(&keys)
        .into_iter()
        .flat_map(|run| refine(run, same))
        .collect();
    groups(records, runs)
}

fn conflicts(records: &[Record], facts: &[TextFacts]) -> Groups {
    let keys: Vec<u64> = facts.iter().map(|f| f.input_hash).collect();
    let same = |a: usize, b: usize| normalized_equal(&records[a].input, &records[b].input);
    let runs = equal_runs(&keys)
        .into_iter()
        .flat_map(|run| refine(run, same))
        .filter(|run| {
            run.iter()
                .any(|&i| facts[i].target_hash != facts[run[0]].target_hash)
        })
        .collect();
    groups(records, runs)
}

fn id_list(records: &[Record], indices: impl Iterator<Item = usize>) -> IdList {
    let mut list = IdList::default();
    for index in indices {
        list.count += 1;
        if list.ids.len() < MAX_LISTED {
            list.ids.push(records[index].id.clone());
        }
    }
    list
}

fn length_stats(words: &[usize]) -> LengthStats {
    let mut sorted = words.to_vec();
    sorted.sort_unstable();
    let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else {
        return LengthStats::default();
    };
    let quantile = |q: f64| {
        let position = q * (sorted.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        let fraction = position - low as f64;
        sorted[low] as f64 + (sorted[high] as f64 - sorted[low] as f64) * fraction
    };
    LengthStats {
        min,
        mean: sorted.iter().sum::<usize>() as f64 / sorted.len() as f64,
        median: quantile(0.5),
        p95: quantile(0.95),
        max,
    }
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

fn check(name: &str, passed: bool, detail: String) -> Check {
    Check {
        name: name.to_string(),
        passed,
        detail,
    }
}

/// The pass/fail lines, in the order the Python pipelines printed them.
fn checks(report: &ValidationReport) -> Vec<Check> {
    vec![
        schema_check(report),
        nulls_check(report),
        duplicates_check(report),
        lengths_check(report),
        phi_check(&report.phi),
        demographics_check(report),
    ]
}

fn schema_check(report: &ValidationReport) -> Check {
    let detail = match report.issues.first() {
        None => format!("all {} records parsed", report.records),
        Some(first) => format!(
            "{} issues while loading; first: {first}",
            report.issues.len()
        ),
    };
    check("schema valid", report.issues.is_empty(), detail)
}

fn nulls_check(report: &ValidationReport) -> Check {
    let missing = |field: &str| report.missing.get(field).copied().unwrap_or(0);
    let (input, target) = (missing("input"), missing("target"));
    let detail = format!("{input} missing or empty inputs, {target} missing or empty targets");
    check("no nulls", input + target == 0, detail)
}

fn duplicates_check(report: &ValidationReport) -> Check {
    let detail = format!(
        "{} exact duplicates, {} after collapsing whitespace and case; {} inputs with conflicting targets",
        report.exact_duplicates.extra_records,
        report.normalized_duplicates.extra_records,
        report.conflicts.count
    );
    check(
        "no duplicates",
        report.normalized_duplicates.count == 0,
        detail,
    )
}

fn lengths_check(report: &ValidationReport) -> Check {
    let describe = |name: &str, (low, high): (usize, usize), short: &IdList, long: &IdList| {
        format!(
            "{name} {low}-{high} words: {} too short, {} too long",
            short.count, long.count
        )
    };
    let input = describe(
        "input",
        report.limits.input_words,
        &report.input_too_short,
        &report.input_too_long,
    );
    let target = describe(
        "target",
        report.limits.target_words,
        &report.target_too_short,
        &report.target_too_long,
    );
    let passed = [
        &report.input_too_short,
        &report.input_too_long,
        &report.target_too_short,
        &report.target_too_long,
    ]
    .iter()
    .all(|list| list.count == 0);
    check("within length limits", passed, format!("{input}; {target}"))
}

fn phi_check(phi: &PhiReport) -> Check {
    let kinds: Vec<String> = phi
        .by_kind
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let detail = match phi.records_with_phi {
        0 => "no PHI found".to_string(),
        n => format!("{n} records hold PHI ({})", kinds.join(", ")),
    };
    check("no PHI", phi.records_with_phi == 0, detail)
}

/// Passes when every record carries every demographic, so no record drops out of a bias slice.
fn demographics_check(report: &ValidationReport) -> Check {
    let known: Vec<String> = report
        .coverage
        .iter()
        .map(|(field, c)| {
            format!(
                "{field} {:.1}%",
                percent(report.records - c.missing, report.records)
            )
        })
        .collect();
    let passed = report.records > 0 && report.coverage.values().all(|c| c.missing == 0);
    check(
        "demographics present",
        passed,
        format!("known for {} of records", known.join(", ")),
    )
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::record::Task;

    fn record(id: &str, input: &str, target: &str) -> Record {
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

    fn dataset(records: Vec<Record>, issues: Vec<LoadIssue>) -> LoadedDataset {
        LoadedDataset {
            path: PathBuf::from("d.jsonl"),
            records,
            issues,
            lines_read: 0,
            sha256: "0".repeat(64),
        }
    }

    const INPUT: &str = "Patient admitted with chest pain and discharged home";

    #[test]
    fn exact_and_normalized_duplicates_and_conflicts() {
        let records = vec![
            record("a", INPUT, "You had chest pain."),
            record("b", INPUT, "You had chest pain."),
            record(
                "c",
                "patient  ADMITTED with chest pain\nand discharged home ",
                "you had chest  pain.",
            ),
            record("d", INPUT, "Your heart is fine."),
            record("e", "Something else entirely was written here", "Other."),
        ];
        let report = validate(&dataset(records, Vec::new()), &Limits::default());
        assert_eq!(report.exact_duplicates.groups, [["a", "b"]]);
        assert_eq!(report.exact_duplicates.extra_records, 1);
        assert_eq!(report.normalized_duplicates.groups, [["a", "b", "c"]]);
        assert_eq!(report.normalized_duplicates.extra_records, 2);
        assert_eq!(report.conflicts.groups, [["a", "b", "c", "d"]]);
        let check = &report.checks[2];
        assert_eq!(
            (check.name.as_str(), check.passed),
            ("no duplicates", false)
        );
        assert!(
            report
                .summary_lines()
                .iter()
                .any(|l| l.starts_with("FAIL no duplicates"))
        );
    }

    #[test]
    fn length_outliers_and_stats() {
        let words = |n: usize| vec!["word"; n].join(" ");
        let records: Vec<Record> = [1, 2, 3, 4, 100]
            .iter()
            .map(|&n| record(&format!("r{n}"), &words(n), &words(n)))
            .collect();
        let limits = Limits {
            input_words: (2, 50),
            target_words: (1, 3),
        };
        let report = validate(&dataset(records, Vec::new()), &limits);
        assert_eq!(report.input_too_short.ids, ["r1"]);
        assert_eq!(report.input_too_long.ids, ["r100"]);
        assert_eq!(report.target_too_long.ids, ["r4", "r100"]);
        assert_eq!(report.target_too_short.count, 0);
        // numpy.percentile([1, 2, 3, 4, 100], [50, 95]) == [3.0, 80.8]
        let stats = &report.input_words;
        assert_eq!(
            (stats.min, stats.max, stats.median, stats.mean),
            (1, 100, 3.0, 22.0)
        );
        assert!((stats.p95 - 80.8).abs() < 1e-9);
        assert!(!report.checks[3].passed);
    }

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
        assert_eq!(report.checks.len(), 6);
        let json = serde_json::to_string(&report).expect("serialize");
        let back: ValidationReport = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, report);
    }

    #[test]
    fn an_empty_dataset_does_not_pass() {
        let report = validate(&dataset(Vec::new(), Vec::new()), &Limits::default());
        assert_eq!(report.input_words, LengthStats::default());
        assert!(!report.checks[5].passed);
    }
}
