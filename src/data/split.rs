//! Patient-level, seeded train/validation/test splits: all records of a patient land in the
//! same split, and split sizes track the requested ratios within one patient's records.

use super::record::{Record, Split};
use super::rng::SeededRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How to split: percentages for train, validation and test, and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    pub ratios: [f64; 3],
    pub seed: u64,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self {
            ratios: [70.0, 15.0, 15.0],
            seed: 42,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SplitError {
    #[error("--ratios: expected three numbers like 70,15,15, got {0:?}")]
    Format(String),
    #[error("--ratios: ratios must be non-negative and sum to more than zero, got {0:?}")]
    Values(String),
}

impl SplitSpec {
    /// Parses `70,15,15` (percentages or fractions; they are normalised).
    pub fn parse_ratios(text: &str) -> Result<[f64; 3], SplitError> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        if parts.len() != 3 {
            return Err(SplitError::Format(text.to_string()));
        }
        let mut out = [0.0; 3];
        for (slot, part) in out.iter_mut().zip(&parts) {
            *slot = part
                .parse::<f64>()
                .map_err(|_| SplitError::Format(text.to_string()))?;
        }
        if !Self::ratios_valid(&out) {
            return Err(SplitError::Values(text.to_string()));
        }
        Ok(out)
    }

    /// Ratios are finite, non-negative and sum to more than zero.
    pub fn ratios_valid(ratios: &[f64; 3]) -> bool {
        ratios.iter().all(|r| r.is_finite() && *r >= 0.0) && ratios.iter().sum::<f64>() > 0.0
    }
}

/// The split of every record, index-aligned with the input slice.
pub fn assign_splits(records: &[Record], spec: &SplitSpec) -> Vec<Split> {
    // Group by patient, in order of first appearance, so the result does not depend on hashing.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut patients: Vec<Vec<usize>> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let slot = *index.entry(r.patient_key()).or_insert_with(|| {
            patients.push(Vec::new());
            patients.len() - 1
        });
        patients[slot].push(i);
    }
    // Sort by key before shuffling so that the split depends on the records, not their order.
    patients.sort_by(|a, b| records[a[0]].patient_key().cmp(records[b[0]].patient_key()));
    SeededRng::new(spec.seed).shuffle(&mut patients);

    let total: f64 = spec.ratios.iter().sum();
    let targets: Vec<f64> = spec
        .ratios
        .iter()
        .map(|r| r / total * records.len() as f64)
        .collect();
    let mut counts = [0usize; 3];
    let mut out = vec![Split::Train; records.len()];
    for patient in &patients {
        // The split furthest below its target takes the next patient.
        let chosen = (0..3)
            .filter(|&s| targets[s] > 0.0)
            .max_by(|&a, &b| {
                let da = targets[a] - counts[a] as f64;
                let db = targets[b] - counts[b] as f64;
                da.total_cmp(&db).then(b.cmp(&a))
            })
            .unwrap_or(0);
        counts[chosen] += patient.len();
        for &i in patient {
            out[i] = Split::ALL[chosen];
        }
    }
    out
}

/// The records of each split, in their original order.
pub fn partition(records: &[Record], splits: &[Split]) -> [Vec<Record>; 3] {
    let mut out: [Vec<Record>; 3] = Default::default();
    for (r, s) in records.iter().zip(splits) {
        out[*s as usize].push(r.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::record::Task;
    use std::collections::HashSet;

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                id: format!("r{i}"),
                // Patients with one, two or three records.
                patient_id: Some(format!("p{}", i / (1 + i % 3))),
                task: Task::Discharge,
                input: "x".into(),
                target: "y".into(),
                gender: None,
                age: None,
                ethnicity: None,
                meta: Default::default(),
            })
            .collect()
    }

    #[test]
    fn no_patient_in_two_splits() {
        let recs = records(1000);
        let splits = assign_splits(&recs, &SplitSpec::default());
        let mut seen: HashMap<&str, Split> = HashMap::new();
        for (r, s) in recs.iter().zip(&splits) {
            let prev = seen.insert(r.patient_key(), *s);
            assert!(
                prev.is_none() || prev == Some(*s),
                "patient {} split",
                r.patient_key()
            );
        }
    }

    #[test]
    fn sizes_within_one_patient_of_ratio() {
        let recs = records(997);
        let splits = assign_splits(&recs, &SplitSpec::default());
        let max_patient = 3.0;
        for (k, want) in [0.70, 0.15, 0.15].iter().enumerate() {
            let got = splits.iter().filter(|s| **s as usize == k).count() as f64;
            assert!(
                (got - want * 997.0).abs() <= max_patient,
                "split {k}: {got} vs {}",
                want * 997.0
            );
        }
    }

    #[test]
    fn seeded_and_order_independent() {
        let recs = records(300);
        let spec = SplitSpec::default();
        let a = assign_splits(&recs, &spec);
        let mut reversed = recs.clone();
        reversed.reverse();
        let mut b = assign_splits(&reversed, &spec);
        b.reverse();
        assert_eq!(a, b);
        let other = assign_splits(&recs, &SplitSpec { seed: 7, ..spec });
        assert_ne!(a, other);
        let test_patients: HashSet<&str> = recs
            .iter()
            .zip(&a)
            .filter(|(_, s)| **s == Split::Test)
            .map(|(r, _)| r.patient_key())
            .collect();
        assert!(!test_patients.is_empty());
    }

    #[test]
    fn ratio_parsing() {
        assert_eq!(SplitSpec::parse_ratios("70, 15,15"), Ok([70.0, 15.0, 15.0]));
        assert!(matches!(
            SplitSpec::parse_ratios("70,30"),
            Err(SplitError::Format(_))
        ));
        assert!(matches!(
            SplitSpec::parse_ratios("-1,1,1"),
            Err(SplitError::Values(_))
        ));
    }
}
