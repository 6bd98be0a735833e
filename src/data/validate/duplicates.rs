//! Finds records repeated exactly or after collapsing whitespace and case, and inputs that appear
//! with different targets; hashes narrow the candidates and a full comparison confirms them.

use super::{Groups, MAX_LISTED, TextFacts};
use crate::data::record::Record;
use std::hash::{DefaultHasher, Hasher};

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

pub(super) fn normalized_hash(text: &str, buffer: &mut String) -> (usize, u64) {
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

pub(super) fn exact_duplicates(records: &[Record]) -> Groups {
    let keys: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.input.as_str(), r.target.as_str()))
        .collect();
    groups(records, equal_runs(&keys))
}

pub(super) fn normalized_duplicates(records: &[Record], facts: &[TextFacts]) -> Groups {
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

pub(super) fn conflicts(records: &[Record], facts: &[TextFacts]) -> Groups {
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

#[cfg(test)]
mod tests {
    use crate::data::validate::test_support::{INPUT, dataset, record};
    use crate::data::validate::{Limits, validate};

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
}
