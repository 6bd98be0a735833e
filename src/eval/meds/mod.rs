//! Medication faithfulness: drug mentions (generic and brand names from the bundled lexicon)
//! with the dose, route and frequency written after them, found in the source and in the model's
//! output and compared: drugs the output adds (hallucinated), discharge drugs it drops (omitted)
//! and doses, units, routes or frequencies it changes (mismatched).

pub mod attributes;

use crate::data::sections::{SectionKind, parse_sections};
use crate::eval::phrases::PhraseMatcher;
use attributes::{Coded, Dose};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::LazyLock;

/// The lexicon's canonical name of a drug and whether the text used a brand name.
#[derive(Debug, Clone, PartialEq)]
pub struct DrugName {
    pub generic: String,
    pub brand: bool,
}

/// Every generic and brand name of `assets/eval/medications.txt` (`generic | brand, brand`).
pub static LEXICON: LazyLock<PhraseMatcher<DrugName>> = LazyLock::new(|| {
    let mut m = PhraseMatcher::default();
    for line in include_str!("../../../assets/eval/medications.txt").lines() {
        let Some((generic, brands)) = line.split_once('|') else {
            continue;
        };
        if line.starts_with('#') {
            continue;
        }
        let generic = generic.trim().to_lowercase();
        m.insert(
            &generic,
            DrugName {
                generic: generic.clone(),
                brand: false,
            },
        );
        for brand in brands.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            m.insert(
                brand,
                DrugName {
                    generic: generic.clone(),
                    brand: true,
                },
            );
        }
    }
    m
});

/// One drug mention and what is written about it up to the end of its sentence or line (or the
/// next drug name).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prescription {
    /// The name as written.
    pub name: String,
    /// The sentence says not to take it ("Do not take", "Stop", "Avoid", "Hold").
    pub avoided: bool,
    pub generic: String,
    pub start: usize,
    pub end: usize,
    pub dose: Option<Dose>,
    pub route: Option<Coded>,
    pub frequency: Option<Coded>,
}

/// Where the sentence or line holding byte `pos` starts: after a line break, a semicolon, or a
/// full stop followed by white space.
pub fn clause_start(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    (1..=pos)
        .rev()
        .find(|&i| {
            matches!(bytes[i - 1], b'\n' | b';')
                || (i >= 2 && bytes[i - 2] == b'.' && bytes[i - 1].is_ascii_whitespace())
        })
        .unwrap_or(0)
}

/// Words before a drug in its sentence that say not to take it ("Do not take ibuprofen").
static AVOID: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)\b(?:do not|don't|dont|never|avoid|stop|stopped|discontinue|discontinued|hold|held|no longer)\b",
    )
    .expect("avoid pattern")
});

/// Where what is said about a drug ends: a line break, a semicolon, or a full stop before white
/// space (or the end) that does not close a dotted abbreviation such as "p.o." or "b.i.d.".
fn clause_end(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    for i in from..bytes.len() {
        match bytes[i] {
            b'\n' | b';' => return i,
            b'.' if bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace())
                && !(i >= from + 2 && bytes[i - 2] == b'.') =>
            {
                return i;
            }
            _ => {}
        }
    }
    bytes.len()
}

/// Every drug mention of `text` with its dose, route and frequency.
pub fn extract(text: &str) -> Vec<Prescription> {
    let found = LEXICON.find_all(text);
    found
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let next = found.get(k + 1).map_or(text.len(), |n| n.start);
            let end = clause_end(text, m.end).min(next);
            let scope = &text[m.end..end];
            Prescription {
                name: text[m.start..m.end].to_string(),
                avoided: AVOID.is_match(&text[clause_start(text, m.start)..m.start]),
                generic: m.value.generic.clone(),
                start: m.start,
                end: m.end,
                dose: attributes::dose(scope, m.end),
                route: attributes::route(scope, m.end),
                frequency: attributes::frequency(scope, m.end),
            }
        })
        .collect()
}

/// A drug mention in a report: byte offsets into the prediction (hallucinated) or the source
/// (omitted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mention {
    pub name: String,
    pub generic: String,
    pub start: usize,
    pub end: usize,
}

impl From<&Prescription> for Mention {
    fn from(p: &Prescription) -> Self {
        Self {
            name: p.name.clone(),
            generic: p.generic.clone(),
            start: p.start,
            end: p.end,
        }
    }
}

/// A field the output states differently from the source; offsets into the prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub generic: String,
    /// dose, unit, route or frequency.
    pub field: &'static str,
    pub source: String,
    pub output: String,
    pub start: usize,
    pub end: usize,
}

/// The medication comparison of one example.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MedReport {
    pub hallucinated: Vec<Mention>,
    pub omitted: Vec<Mention>,
    pub mismatched: Vec<Mismatch>,
}

/// The byte ranges of the source's discharge medication list: the medication sections whose
/// header says "discharge", else every medication section, else the whole source.
fn discharge_ranges(source: &str) -> Vec<Range<usize>> {
    let sections: Vec<_> = parse_sections(source)
        .into_iter()
        .filter(|s| s.kind == SectionKind::Medications)
        .collect();
    let discharge: Vec<Range<usize>> = sections
        .iter()
        .filter(|s| {
            source[s.header.clone()]
                .to_lowercase()
                .contains("discharge")
        })
        .map(|s| s.body.clone())
        .collect();
    if !discharge.is_empty() {
        discharge
    } else if !sections.is_empty() {
        sections.into_iter().map(|s| s.body).collect()
    } else {
        std::iter::once(0..source.len()).collect()
    }
}

/// Compares the medications of `output` with those of `source`.
pub fn compare(source: &str, output: &str) -> MedReport {
    let src = extract(source);
    let out = extract(output);
    let in_source: HashSet<&str> = src.iter().map(|p| p.generic.as_str()).collect();
    let in_output: HashSet<&str> = out.iter().map(|p| p.generic.as_str()).collect();
    let ranges = discharge_ranges(source);
    let discharge: Vec<&Prescription> = src
        .iter()
        .filter(|p| ranges.iter().any(|r| r.contains(&p.start)))
        .collect();

    // A drug the output tells the patient not to take is advice, not a prescription.
    let hallucinated = out
        .iter()
        .filter(|p| !p.avoided && !in_source.contains(p.generic.as_str()))
        .map(Mention::from)
        .collect();
    let mut seen = HashSet::new();
    let omitted = discharge
        .iter()
        .filter(|p| !in_output.contains(p.generic.as_str()) && seen.insert(p.generic.as_str()))
        .map(|p| Mention::from(*p))
        .collect();

    // What the source says about each drug: its discharge list entries first, then the rest.
    let mut said: HashMap<&str, Vec<&Prescription>> = HashMap::new();
    for p in discharge.iter().copied().chain(src.iter()) {
        let entries = said.entry(p.generic.as_str()).or_default();
        if !entries.iter().any(|e| std::ptr::eq(*e, p)) {
            entries.push(p);
        }
    }
    let mismatched = out
        .iter()
        .filter(|p| !p.avoided)
        .filter_map(|p| Some((p, said.get(p.generic.as_str())?)))
        .flat_map(|(p, entries)| mismatches(p, entries))
        .collect();
    MedReport {
        hallucinated,
        omitted,
        mismatched,
    }
}

/// The fields of output mention `p` that no source mention of the same drug agrees with. A field
/// the output leaves out, or that the source never states, is not a mismatch.
fn mismatches(p: &Prescription, entries: &[&Prescription]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mismatch = |field, source: String, output: String, start, end| Mismatch {
        generic: p.generic.clone(),
        field,
        source,
        output,
        start,
        end,
    };
    if let Some(d) = &p.dose {
        let stated: Vec<&Dose> = entries.iter().filter_map(|e| e.dose.as_ref()).collect();
        if let Some(first) = stated.first()
            && !stated.iter().any(|s| s.same_amount(d))
        {
            let field = if stated
                .iter()
                .any(|s| s.value == d.value && s.unit != d.unit)
            {
                "unit"
            } else {
                "dose"
            };
            out.push(mismatch(
                field,
                first.text.clone(),
                d.text.clone(),
                d.start,
                d.end,
            ));
        }
    }
    for (field, mine, theirs) in [
        (
            "route",
            &p.route,
            entries.iter().map(|e| &e.route).collect::<Vec<_>>(),
        ),
        (
            "frequency",
            &p.frequency,
            entries.iter().map(|e| &e.frequency).collect(),
        ),
    ] {
        let Some(mine) = mine else { continue };
        let stated: Vec<&Coded> = theirs.into_iter().flatten().collect();
        if let Some(first) = stated.first()
            && !stated.iter().any(|s| s.code == mine.code)
        {
            out.push(mismatch(
                field,
                first.text.clone(),
                mine.text.clone(),
                mine.start,
                mine.end,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicon_has_500_names_with_brands_mapped_to_generics() {
        assert!(LEXICON.len() >= 500, "{}", LEXICON.len());
        let p = extract("Lasix 40 mg p.o. b.i.d. Aspirin.");
        assert_eq!(p[0].generic, "furosemide");
        assert_eq!(
            p[0].frequency.as_ref().map(|f| f.code.as_str()),
            Some("2/day")
        );
        assert_eq!(p[1].generic, "aspirin");
    }

    #[test]
    fn hallucinated_omitted_and_mismatched() {
        let source = "Discharge Medications:\nFurosemide 40 mg PO daily\nLisinopril 10 mg PO daily\n\nDischarge Instructions:\nTake your medicines.";
        let output =
            "Take Lasix 20 mg by mouth once a day. Take ibuprofen 400 mg three times a day.";
        let r = compare(source, output);
        assert_eq!(r.hallucinated.len(), 1);
        assert_eq!(r.hallucinated[0].generic, "ibuprofen");
        assert_eq!(
            &output[r.hallucinated[0].start..r.hallucinated[0].end],
            "ibuprofen"
        );
        assert_eq!(r.omitted.len(), 1);
        assert_eq!(&source[r.omitted[0].start..r.omitted[0].end], "Lisinopril");
        assert_eq!(r.mismatched.len(), 1, "{:?}", r.mismatched);
        let m = &r.mismatched[0];
        assert_eq!(
            (m.field, m.source.as_str(), m.output.as_str()),
            ("dose", "40 mg", "20 mg")
        );
        assert_eq!(&output[m.start..m.end], "20 mg");
    }

    #[test]
    fn a_drug_the_output_says_to_avoid_is_not_hallucinated() {
        let r = compare(
            "Apixaban 5 mg PO BID. Avoid ibuprofen.",
            "Take apixaban 5 mg two times a day. Do not take ibuprofen or naproxen.",
        );
        assert!(r.hallucinated.is_empty(), "{r:?}");
    }

    #[test]
    fn plain_wording_of_the_same_prescription_is_not_a_mismatch() {
        let source = "Discharge Medications:\nAcetaminophen 650 mg PO Q6H PRN pain\nEnoxaparin 40 mg SC DAILY x 18 days\n";
        let output = "Take acetaminophen 650 mg by mouth every 6 hours if you need it for pain. Do not take more than 3,000 mg in one day.\nInject enoxaparin 40 mg under your skin once a day for 18 more days.";
        let r = compare(source, output);
        assert_eq!(r, MedReport::default());
    }
}
