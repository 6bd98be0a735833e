//! The decisions of one discharge that both its note and its explanation are written from, and
//! the writer both are written with, so that the two texts agree.

use super::conditions::{Condition, Wording};
use super::fill::Filler;
use super::meds::Prescription;
use crate::data::rng::SeededRng;

/// The kind of identifier a leaky note keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Phi {
    Name,
    Date,
    Mrn,
    Phone,
}

impl Phi {
    pub fn label(self) -> &'static str {
        match self {
            Phi::Name => "name",
            Phi::Date => "date",
            Phi::Mrn => "mrn",
            Phi::Phone => "phone",
        }
    }
}

/// A follow-up appointment: the clinic as written in the note, as said to the patient, and when.
pub(super) struct Visit {
    pub clinic: &'static str,
    pub plain: &'static str,
    pub days: i64,
}

/// The decisions of one stay that both the note and the explanation are written from.
pub(super) struct Plan {
    pub condition: &'static Condition,
    pub diagnosis: String,
    pub history: Vec<String>,
    pub prescriptions: Vec<Prescription>,
    pub warnings: Vec<Wording>,
    pub tips: Vec<Wording>,
    pub visits: Vec<Visit>,
}

/// One stay being written: the shared template variables and the record's random stream.
pub(super) struct Writer {
    pub rng: SeededRng,
    pub filler: Filler,
    pub age: u32,
    pub gender: &'static str,
    pub visit: u32,
    pub phi: Option<Phi>,
}

impl Writer {
    pub fn fill(&mut self, template: &str) -> String {
        self.filler.fill(&mut self.rng, template)
    }

    pub fn pick(&mut self, options: &[&'static str]) -> &'static str {
        options[self.rng.below(options.len())]
    }

    pub fn fill_any(&mut self, options: &[&'static str]) -> String {
        let template = self.pick(options);
        self.fill(template)
    }

    /// Each item kept with probability `p`, order preserved, at least `min` of them.
    pub fn some<T: Copy>(&mut self, items: &[T], p: f64, min: usize) -> Vec<T> {
        let mut kept: Vec<T> = items
            .iter()
            .copied()
            .filter(|_| self.rng.chance(p))
            .collect();
        if kept.len() < min.min(items.len()) {
            kept = items[..min.min(items.len())].to_vec();
        }
        kept
    }
}

/// "5 days", "1 week", "3 weeks".
pub(super) fn time_text(days: i64) -> String {
    match days {
        7 => "1 week".to_string(),
        d if d % 7 == 0 => format!("{} weeks", d / 7),
        d => format!("{d} days"),
    }
}
