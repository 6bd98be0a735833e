//! Seeded, deterministic synthetic datasets for the three tasks (discharge summaries, dialogue
//! to SOAP note, exam questions), with an optional built-in disparity for bias-audit demos.

mod conditions;
mod discharge;
mod disparity;
mod fill;
mod lexicon;
mod meds;
mod note;
mod people;
mod plain;
mod plan;
mod qa;
mod soap;

pub use disparity::{Disparity, SynthError};

use crate::data::record::{Record, Task};
use crate::data::rng::SeededRng;

/// `n` records of `task`. Record `i` depends only on `seed` and `i` (a larger `n` extends a
/// smaller one), and the same arguments always give the same records.
pub fn generate(task: Task, n: usize, seed: u64, disparity: Option<&Disparity>) -> Vec<Record> {
    let root = SeededRng::new(seed);
    let noise = root.fork(0xb1a5);
    (0..n)
        .map(|i| {
            let mut record = match task {
                Task::Discharge => discharge::record(&root, i),
                Task::Soap => soap::record(&root, i),
                Task::Qa => qa::record(&root, i),
            };
            if let Some(disparity) = disparity {
                disparity.apply(&mut record, noise.fork(i as u64));
            }
            record
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn words(text: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for word in text.split_whitespace() {
            let word: String = word
                .chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase();
            if !word.is_empty() {
                *counts.entry(word).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Share of the clean reference's words the noisy one keeps (unigram recall, as ROUGE-1).
    fn overlap(noisy: &str, clean: &str) -> f64 {
        let (noisy, clean) = (words(noisy), words(clean));
        let kept: usize = clean
            .iter()
            .map(|(w, c)| (*c).min(noisy.get(w).copied().unwrap_or(0)))
            .sum();
        kept as f64 / clean.values().sum::<usize>() as f64
    }

    #[test]
    fn same_seed_same_records_other_seed_other_records() {
        for task in Task::ALL {
            let a = generate(task, 40, 7, None);
            let b = generate(task, 40, 7, None);
            let json = |rs: &[Record]| serde_json::to_string(rs).unwrap_or_default();
            assert_eq!(json(&a), json(&b), "{task}");
            let c = generate(task, 40, 8, None);
            let same = a.iter().zip(&c).filter(|(x, y)| x.input == y.input).count();
            assert!(same < 4, "{task}: {same} identical inputs across seeds");
        }
    }

    #[test]
    fn a_longer_dataset_extends_a_shorter_one() {
        for task in Task::ALL {
            let short = generate(task, 10, 99, None);
            let long = generate(task, 50, 99, None);
            assert_eq!(short[..], long[..10], "{task}");
            let prefix = match task {
                Task::Discharge => "dis",
                Task::Soap => "soap",
                Task::Qa => "qa",
            };
            assert_eq!(long[49].id, format!("{prefix}-000049"));
        }
    }

    #[test]
    fn disparity_touches_only_its_group() {
        let disparity =
            Disparity::parse("ethnicity:Hispanic=0.6").unwrap_or_else(|e| panic!("{e}"));
        for task in Task::ALL {
            let clean = generate(task, 300, 5, None);
            let noisy = generate(task, 300, 5, Some(&disparity));
            let mut affected = 0;
            for (c, n) in clean.iter().zip(&noisy) {
                if c.ethnicity.as_deref() == Some("Hispanic") {
                    affected += 1;
                    assert_eq!(n.meta["disparity_applied"], serde_json::Value::Bool(true));
                    assert_eq!(n.meta["clean_target"].as_str(), Some(c.target.as_str()));
                    assert_ne!(n.target, c.target);
                    assert_eq!(n.input, c.input);
                } else {
                    assert_eq!(serde_json::to_string(c).ok(), serde_json::to_string(n).ok());
                }
            }
            assert!(affected > 30, "{task}: {affected}");
        }
    }

    #[test]
    fn noisier_references_lose_words_in_proportion_to_strength() {
        let mut previous = 1.0;
        for strength in [0.3, 0.6, 1.0] {
            let disparity = Disparity {
                field: crate::data::record::Demographic::Gender,
                group: "F".into(),
                strength,
            };
            let records = generate(Task::Discharge, 300, 23, Some(&disparity));
            let scores: Vec<f64> = records
                .iter()
                .filter_map(|r| Some(overlap(&r.target, r.meta.get("clean_target")?.as_str()?)))
                .collect();
            let mean = scores.iter().sum::<f64>() / scores.len() as f64;
            assert!(scores.len() > 100);
            assert!(
                mean < 1.0 - 0.3 * strength,
                "strength {strength}: overlap {mean}"
            );
            assert!(
                mean < previous,
                "stronger noise must lose more: {mean} vs {previous}"
            );
            previous = mean;
        }
    }
}
