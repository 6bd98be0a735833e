//! The pass/fail lines of a report, worded and ordered as the Python pipelines printed them.

use super::{Check, IdList, PhiReport, ValidationReport};
use crate::data::load::{LoadIssue, RENAMED, REPEATED_ID};

fn check(name: &str, passed: bool, detail: String) -> Check {
    Check {
        name: name.to_string(),
        passed,
        detail,
    }
}

/// The pass/fail lines, in the order the Python pipelines printed them, then the ids' own.
pub(super) fn checks(report: &ValidationReport) -> Vec<Check> {
    vec![
        schema_check(report),
        nulls_check(report),
        duplicates_check(report),
        lengths_check(report),
        phi_check(&report.phi),
        demographics_check(report),
        ids_check(report),
    ]
}

fn schema_check(report: &ValidationReport) -> Check {
    // Repeated ids have their own check.
    let issues: Vec<&LoadIssue> = report.issues.iter().filter(|i| !repeated_id(i)).collect();
    let detail = match issues.first() {
        None => format!("all {} records parsed", report.records),
        Some(first) => format!("{} issues while loading; first: {first}", issues.len()),
    };
    check("schema valid", issues.is_empty(), detail)
}

fn repeated_id(issue: &LoadIssue) -> bool {
    issue.field.as_deref() == Some("id") && issue.message.contains(REPEATED_ID)
}

fn nulls_check(report: &ValidationReport) -> Check {
    let missing = |field: &str| report.missing.get(field).copied().unwrap_or(0);
    let (input, target) = (missing("input"), missing("target"));
    let detail = format!("{input} missing or empty inputs, {target} missing or empty targets");
    check("no nulls", input + target == 0, detail)
}

fn ids_check(report: &ValidationReport) -> Check {
    let repeats: Vec<&LoadIssue> = report.issues.iter().filter(|i| repeated_id(i)).collect();
    let renamed = repeats
        .iter()
        .filter(|i| i.message.contains(RENAMED))
        .count();
    let skipped = repeats.len() - renamed;
    let detail = match repeats.first() {
        None => "every record's id is its own".to_string(),
        Some(first) => format!(
            "{} records repeat an earlier record's id ({skipped} skipped, {renamed} renamed); \
             first: {first}",
            repeats.len()
        ),
    };
    check("unique ids", skipped == 0, detail)
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

#[cfg(test)]
mod tests {
    use crate::data::validate::test_support::dataset;
    use crate::data::validate::{LengthStats, Limits, validate};

    #[test]
    fn an_empty_dataset_does_not_pass() {
        let report = validate(&dataset(Vec::new(), Vec::new()), &Limits::default());
        assert_eq!(report.input_words, LengthStats::default());
        assert!(!report.checks[5].passed);
    }
}
