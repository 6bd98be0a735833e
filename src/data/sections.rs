//! Finds the clinical sections of a discharge summary (MIMIC-style headers such as
//! "Discharge Diagnosis:" or "Brief Hospital Course:") and returns their spans.

use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::LazyLock;

/// The kinds of section the workbench colours, explains and ablates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SectionKind {
    ChiefComplaint,
    Diagnosis,
    HistoryOfPresentIllness,
    PastMedicalHistory,
    Allergies,
    Results,
    HospitalCourse,
    Medications,
    Instructions,
    FollowUp,
}

impl SectionKind {
    pub const ALL: [SectionKind; 10] = [
        SectionKind::ChiefComplaint,
        SectionKind::Diagnosis,
        SectionKind::HistoryOfPresentIllness,
        SectionKind::PastMedicalHistory,
        SectionKind::Allergies,
        SectionKind::Results,
        SectionKind::HospitalCourse,
        SectionKind::Medications,
        SectionKind::Instructions,
        SectionKind::FollowUp,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SectionKind::ChiefComplaint => "Chief complaint",
            SectionKind::Diagnosis => "Diagnosis",
            SectionKind::HistoryOfPresentIllness => "History of present illness",
            SectionKind::PastMedicalHistory => "Past medical history",
            SectionKind::Allergies => "Allergies",
            SectionKind::Results => "Results",
            SectionKind::HospitalCourse => "Hospital course",
            SectionKind::Medications => "Medications",
            SectionKind::Instructions => "Instructions",
            SectionKind::FollowUp => "Follow-up",
        }
    }
}

/// One section: the header line's span and the body that follows it, as byte ranges of the note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub kind: SectionKind,
    pub header: Range<usize>,
    pub body: Range<usize>,
}

/// Header names after normalisation (lowercase, letters only, single spaces), with their kind.
/// Admission and discharge variants map to the same kind on purpose: the workbench treats
/// "Medications on Admission" and "Discharge Medications" alike when colouring, but keeps them
/// as separate spans.
const HEADERS: &[(&str, SectionKind)] = &[
    ("chief complaint", SectionKind::ChiefComplaint),
    ("reason for admission", SectionKind::ChiefComplaint),
    ("discharge diagnosis", SectionKind::Diagnosis),
    ("discharge diagnoses", SectionKind::Diagnosis),
    ("primary diagnosis", SectionKind::Diagnosis),
    ("secondary diagnosis", SectionKind::Diagnosis),
    ("secondary diagnoses", SectionKind::Diagnosis),
    ("diagnosis", SectionKind::Diagnosis),
    ("diagnoses", SectionKind::Diagnosis),
    ("admission diagnosis", SectionKind::Diagnosis),
    ("final diagnosis", SectionKind::Diagnosis),
    (
        "history of present illness",
        SectionKind::HistoryOfPresentIllness,
    ),
    ("hpi", SectionKind::HistoryOfPresentIllness),
    ("history", SectionKind::HistoryOfPresentIllness),
    ("past medical history", SectionKind::PastMedicalHistory),
    ("pmh", SectionKind::PastMedicalHistory),
    ("past surgical history", SectionKind::PastMedicalHistory),
    ("social history", SectionKind::PastMedicalHistory),
    ("family history", SectionKind::PastMedicalHistory),
    ("allergies", SectionKind::Allergies),
    ("pertinent results", SectionKind::Results),
    ("results", SectionKind::Results),
    ("labs", SectionKind::Results),
    ("physical exam", SectionKind::Results),
    ("brief hospital course", SectionKind::HospitalCourse),
    ("hospital course", SectionKind::HospitalCourse),
    ("discharge medications", SectionKind::Medications),
    ("medications on discharge", SectionKind::Medications),
    ("medications on admission", SectionKind::Medications),
    ("admission medications", SectionKind::Medications),
    ("medications", SectionKind::Medications),
    ("discharge instructions", SectionKind::Instructions),
    ("instructions", SectionKind::Instructions),
    ("patient instructions", SectionKind::Instructions),
    ("discharge condition", SectionKind::Instructions),
    ("discharge disposition", SectionKind::Instructions),
    ("followup instructions", SectionKind::FollowUp),
    ("follow up instructions", SectionKind::FollowUp),
    ("followup", SectionKind::FollowUp),
    ("follow up", SectionKind::FollowUp),
    ("follow up appointments", SectionKind::FollowUp),
];

/// A candidate header: start of a line, optional spaces, a short label of words, a colon.
static HEADER_LINE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?m)^[ \t]*([A-Za-z][A-Za-z /&-]{1,48}?)[ \t]*:")
        .expect("static header pattern")
});

fn normalise(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for word in label
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    out
}

fn header_kind(label: &str) -> Option<SectionKind> {
    let norm = normalise(label);
    HEADERS
        .iter()
        .find(|(name, _)| *name == norm)
        .map(|(_, kind)| *kind)
}

/// Sections in order of appearance. Text before the first header belongs to no section; each
/// body runs to the next recognised header or the end, with surrounding whitespace trimmed.
pub fn parse_sections(text: &str) -> Vec<Section> {
    let headers: Vec<(SectionKind, Range<usize>)> = HEADER_LINE
        .captures_iter(text)
        .filter_map(|c| {
            let label = c.get(1)?;
            let whole = c.get(0)?;
            header_kind(label.as_str()).map(|k| (k, label.start()..whole.end()))
        })
        .collect();
    headers
        .iter()
        .enumerate()
        .map(|(i, (kind, header))| {
            let end = headers.get(i + 1).map_or(text.len(), |(_, h)| h.start);
            Section {
                kind: *kind,
                header: header.clone(),
                body: trim_range(text, header.end..end),
            }
        })
        .collect()
}

fn trim_range(text: &str, range: Range<usize>) -> Range<usize> {
    let slice = &text[range.clone()];
    let start = range.start + (slice.len() - slice.trim_start().len());
    let end = range.end - (slice.len() - slice.trim_end().len());
    start..end.max(start)
}

/// The body text of the first section of `kind`, if the note has one.
pub fn section_text(text: &str, kind: SectionKind) -> Option<&str> {
    parse_sections(text)
        .into_iter()
        .find(|s| s.kind == kind)
        .map(|s| &text[s.body])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTE: &str = "Admission Date: [**2101-3-4**]\n\
        DISCHARGE DIAGNOSIS: Congestive heart failure exacerbation\n\
        History of Present Illness:\n  72 yo woman with worsening dyspnea. BP: 150/90.\n\n\
        Brief  Hospital Course:\nDiuresed with IV furosemide.\n\
        Discharge Medications:\n1. Furosemide 40 mg PO daily\n\
        discharge instructions : Weigh yourself every morning.\n\
        Follow-up Instructions:\nCardiology in 1 week.\n";

    #[test]
    fn finds_headers_with_case_and_spacing_variants() {
        let kinds: Vec<SectionKind> = parse_sections(NOTE).iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SectionKind::Diagnosis,
                SectionKind::HistoryOfPresentIllness,
                SectionKind::HospitalCourse,
                SectionKind::Medications,
                SectionKind::Instructions,
                SectionKind::FollowUp
            ]
        );
    }

    #[test]
    fn bodies_are_trimmed_and_stop_at_next_header() {
        assert_eq!(
            section_text(NOTE, SectionKind::Diagnosis),
            Some("Congestive heart failure exacerbation")
        );
        assert_eq!(
            section_text(NOTE, SectionKind::HistoryOfPresentIllness),
            Some("72 yo woman with worsening dyspnea. BP: 150/90.")
        );
        assert_eq!(
            section_text(NOTE, SectionKind::FollowUp),
            Some("Cardiology in 1 week.")
        );
    }

    #[test]
    fn unknown_labels_and_vitals_are_not_sections() {
        assert!(parse_sections("BP: 120/80\nPlan: rest\nAdmission Date: today").is_empty());
    }

    #[test]
    fn header_span_covers_label_and_colon() {
        let s = &parse_sections(NOTE)[0];
        assert_eq!(&NOTE[s.header.clone()], "DISCHARGE DIAGNOSIS:");
    }
}
