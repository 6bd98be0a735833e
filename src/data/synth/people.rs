//! Who the synthetic patients are: demographics drawn with US-like proportions, patient ids,
//! and which records of a discharge dataset are readmissions of the same patient.

use crate::data::rng::SeededRng;

/// Gender values and their shares.
pub(super) const GENDERS: [(&str, f64); 2] = [("F", 0.52), ("M", 0.48)];

/// Ethnicity values and their shares, roughly those of US hospital admissions.
pub(super) const ETHNICITIES: [(&str, f64); 5] = [
    ("White", 0.59),
    ("Hispanic", 0.19),
    ("Black", 0.13),
    ("Asian", 0.06),
    ("Other", 0.03),
];

/// Records of one discharge patient stay inside a block of this many records, so a record's
/// patient depends on its block only and a longer dataset extends a shorter one.
const BLOCK: usize = 20;

/// Share of discharge patients with one, two or three stays.
const STAYS: [f64; 3] = [0.85, 0.11, 0.04];

pub(super) fn draw_gender(rng: &mut SeededRng) -> &'static str {
    weighted(rng, &GENDERS)
}

pub(super) fn draw_ethnicity(rng: &mut SeededRng) -> &'static str {
    weighted(rng, &ETHNICITIES)
}

fn weighted(rng: &mut SeededRng, table: &[(&'static str, f64)]) -> &'static str {
    let weights: Vec<f64> = table.iter().map(|(_, w)| *w).collect();
    table[rng.weighted(&weights)].0
}

/// An age from a clamped normal distribution.
pub(super) fn draw_age(rng: &mut SeededRng, mean: f64, sd: f64, lo: f64, hi: f64) -> u32 {
    (mean + sd * rng.normal()).round().clamp(lo, hi) as u32
}

/// A patient id like `P004217`: patient numbers are spread over the id space by a bijection
/// (7919 is coprime to 10), offset by the seed so that datasets of different seeds differ.
pub(super) fn patient_id(root: &SeededRng, number: u64) -> String {
    let offset = root.fork(0x1d).next_u64() % 1_000_000;
    format!("P{:06}", (number.wrapping_mul(7_919) + offset) % 1_000_000)
}

/// The patient behind a discharge record and which of their stays it is (1 for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stay {
    pub patient: u64,
    pub visit: u32,
}

/// Lays out the block of record `index`: patients with one to three stays fill the block's
/// slots, which are then shuffled so that readmissions do not sit next to each other.
pub(super) fn discharge_stay(root: &SeededRng, index: usize) -> Stay {
    let block = index / BLOCK;
    let mut rng = root.fork(0x5ea7).fork(block as u64);
    let mut slots: Vec<usize> = Vec::with_capacity(BLOCK);
    let mut patient = 0;
    while slots.len() < BLOCK {
        let stays = (rng.weighted(&STAYS) + 1).min(BLOCK - slots.len());
        slots.extend(std::iter::repeat_n(patient, stays));
        patient += 1;
    }
    rng.shuffle(&mut slots);
    let slot = index % BLOCK;
    let visit = slots[..slot].iter().filter(|p| **p == slots[slot]).count() as u32 + 1;
    Stay {
        patient: (block * BLOCK + slots[slot]) as u64,
        visit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_number_visits_in_record_order() {
        let root = SeededRng::new(11);
        let stays: Vec<Stay> = (0..400).map(|i| discharge_stay(&root, i)).collect();
        let mut seen = std::collections::HashMap::new();
        for stay in &stays {
            let count = seen.entry(stay.patient).or_insert(0);
            *count += 1;
            assert_eq!(stay.visit, *count);
        }
        let repeat = seen.values().filter(|c| **c > 1).count() as f64 / seen.len() as f64;
        assert!((0.09..0.22).contains(&repeat), "{repeat}");
    }

    #[test]
    fn patient_ids_are_distinct() {
        let root = SeededRng::new(1);
        let ids: std::collections::HashSet<String> =
            (0..5000).map(|n| patient_id(&root, n)).collect();
        assert_eq!(ids.len(), 5000);
    }
}
