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

/// Where each sentence or line of a text starts: at 0, and after a line break, a semicolon, or a
/// full stop followed by white space. Found in one pass, so that asking for many positions stays
/// linear in the text.
pub struct ClauseStarts(Vec<usize>);

impl ClauseStarts {
    pub fn of(text: &str) -> ClauseStarts {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        starts.extend((1..=bytes.len()).filter(|&i| {
            matches!(bytes[i - 1], b'\n' | b';')
                || (i >= 2 && bytes[i - 2] == b'.' && bytes[i - 1].is_ascii_whitespace())
        }));
        ClauseStarts(starts)
    }

    /// Where the clause holding byte `pos` starts.
    pub fn at(&self, pos: usize) -> usize {
        let after = self.0.partition_point(|&s| s <= pos);
        self.0[after.saturating_sub(1)]
    }
}

/// Words before a drug in its sentence that say not to take it ("Do not take ibuprofen").
static AVOID: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)\b(?:do not|don't|dont|never|avoid|stop|stopped|discontinue|discontinued|hold|held|no longer)\b",
    )
    .expect("avoid pattern")
});

/// Where what is said about a drug ends: a line break, a semicolon, or a full stop before white
/// space (or the end) that does not close a dotted abbreviation such as "p.o." or "b.i.d.";
/// `limit` (the next mention) at the latest.
fn clause_end(text: &str, from: usize, limit: usize) -> usize {
    let bytes = text.as_bytes();
    for i in from..limit.min(bytes.len()) {
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
    limit.min(bytes.len())
}

/// Every drug mention of `text` with its dose, route and frequency. Linear in the text: each
/// mention's scope ends at the next one, and the clause starts and the words that say not to
/// take a drug are found once for the whole text.
pub fn extract(text: &str) -> Vec<Prescription> {
    let found = LEXICON.find_all(text);
    let clauses = ClauseStarts::of(text);
    let avoid: Vec<(usize, usize)> = AVOID
        .find_iter(text)
        .map(|m| (m.start(), m.end()))
        .collect();
    // An avoid phrase between the clause's start and the mention; the phrases do not overlap, so
    // the first one at or after the clause start ends first.
    let avoided = |clause: usize, at: usize| {
        let k = avoid.partition_point(|&(start, _)| start < clause);
        avoid.get(k).is_some_and(|&(_, end)| end <= at)
    };
    found
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let next = found.get(k + 1).map_or(text.len(), |n| n.start);
            let end = clause_end(text, m.end, next);
            let scope = &text[m.end..end];
            Prescription {
                name: text[m.start..m.end].to_string(),
                avoided: avoided(clauses.at(m.start), m.start),
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

    // What the source says about each drug: its discharge list entries first, then the rest,
    // each distinct statement once (a drug repeated a thousand times with the same dose is one
    // entry, which keeps the comparison linear in the mentions).
    let mut said: HashMap<&str, Vec<&Prescription>> = HashMap::new();
    let mut stated = HashSet::new();
    for p in discharge.iter().copied().chain(src.iter()) {
        let statement = (
            p.generic.as_str(),
            p.dose
                .as_ref()
                .map(|d| (d.value.to_bits(), d.high.map(f64::to_bits), d.unit)),
            p.route.as_ref().map(|r| r.code.as_str()),
            p.frequency.as_ref().map(|f| f.code.as_str()),
        );
        if stated.insert(statement) {
            said.entry(p.generic.as_str()).or_default().push(p);
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

    /// A megabyte of one drug name, in the source and in the output, one clause: linear work,
    /// well under a second in a release build (each mention rescanning its clause, or every
    /// source mention of the drug, took minutes).
    #[test]
    fn a_drug_mentioned_sixty_thousand_times_is_compared_in_linear_time() {
        let text = "take aspirin 81 mg daily and aspirin ".repeat(30_000);
        let started = std::time::Instant::now();
        let report = compare(&text, &text);
        let seconds = started.elapsed().as_secs_f64();
        assert!(report.hallucinated.is_empty() && report.omitted.is_empty());
        assert!(
            report.mismatched.is_empty(),
            "{:?}",
            report.mismatched.first()
        );
        assert!(seconds < 5.0, "{seconds:.1} s for {} bytes", text.len());
    }

    #[test]
    fn clause_starts_follow_line_breaks_semicolons_and_full_stops() {
        let text = "a b. c; d\ne.f";
        let clauses = ClauseStarts::of(text);
        let starts: Vec<usize> = (0..text.len()).map(|i| clauses.at(i)).collect();
        assert_eq!(starts, [0, 0, 0, 0, 0, 5, 5, 7, 7, 7, 10, 10, 10]);
    }

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
