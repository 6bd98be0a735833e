//! Finds and scrubs protected health information (HIPAA Safe Harbor identifiers) in clinical text,
//! so the validator can report PHI per record and datasets can be de-identified before training.
//!
//! What counts, and the calls made where Safe Harbor leaves room:
//! - names, only where the text announces one (a title, a patient or provider field, a
//!   signature, a staff role, a relative: "wife Linda"), since drugs, departments and eponyms
//!   are capitalised too;
//! - dates with a day or a month; a bare year ("in 2019") is allowed and not reported, and a
//!   month/day with no year counts after a cue word ("on 3/4") or when its day is above 10;
//! - ids: labelled values, SSNs, and any run of 7+ digits (a provider's NPI too: scrubbing one
//!   more number is cheaper than leaking an MRN);
//! - phone and fax numbers, e-mails, street addresses with their city, state and ZIP;
//! - ages over 89, the number only ("a [AGE]-year-old").
//!
//! Not found: names with no cue, a town on its own ("lives in Hanover"), institution names.
//! Text that is already scrubbed (`[NAME]`, MIMIC's `[** ... **]`) is left alone.

mod names;
mod patterns;

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The kind of identifier a span holds; its placeholder replaces it when scrubbing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhiKind {
    Name,
    Date,
    Id,
    Phone,
    Email,
    Address,
    Age,
}

impl PhiKind {
    /// Every kind, in the order `count_by_kind` reports them.
    pub const ALL: [PhiKind; 7] = [
        PhiKind::Name,
        PhiKind::Date,
        PhiKind::Id,
        PhiKind::Phone,
        PhiKind::Email,
        PhiKind::Address,
        PhiKind::Age,
    ];

    pub fn placeholder(self) -> &'static str {
        match self {
            PhiKind::Name => "[NAME]",
            PhiKind::Date => "[DATE]",
            PhiKind::Id => "[ID]",
            PhiKind::Phone => "[PHONE]",
            PhiKind::Email => "[EMAIL]",
            PhiKind::Address => "[ADDRESS]",
            PhiKind::Age => "[AGE]",
        }
    }

    /// The lowercase name used in reports and in serialized form.
    pub fn name(self) -> &'static str {
        match self {
            PhiKind::Name => "name",
            PhiKind::Date => "date",
            PhiKind::Id => "id",
            PhiKind::Phone => "phone",
            PhiKind::Email => "email",
            PhiKind::Address => "address",
            PhiKind::Age => "age",
        }
    }
}

/// One identifier found in a text: `text[start..end]` (byte offsets on char boundaries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhiSpan {
    pub kind: PhiKind,
    pub start: usize,
    pub end: usize,
}

/// Text that earlier de-identification already replaced; nothing inside it is PHI.
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    patterns::compile(r"\[\*\*.*?\*\*\]|\[(?:NAME|DATE|ID|PHONE|EMAIL|ADDRESS|AGE)\]")
});

/// All PHI spans in `text`, sorted by position and never overlapping. Where two detectors claim
/// overlapping text the longer claim wins ("12 Oak Dr., Salem, OR" is one address, not a name).
pub fn find_phi(text: &str) -> Vec<PhiSpan> {
    let mut candidates = Vec::new();
    patterns::find_structured(text, &mut candidates);
    names::find_names(text, &mut candidates);

    let scrubbed: Vec<(usize, usize)> = if text.contains('[') {
        PLACEHOLDER
            .find_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect()
    } else {
        Vec::new()
    };
    candidates.retain(|c| !scrubbed.iter().any(|&(s, e)| c.start < e && s < c.end));
    candidates.sort_by_key(|c| (c.start, std::cmp::Reverse(c.end)));

    let mut spans: Vec<PhiSpan> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        match spans.last_mut() {
            Some(last) if candidate.start < last.end => {
                if candidate.end - candidate.start > last.end - last.start {
                    *last = candidate;
                }
            }
            _ => spans.push(candidate),
        }
    }
    spans
}

/// `text` with every PHI span replaced by its kind's placeholder.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in find_phi(text) {
        out.push_str(&text[at..span.start]);
        out.push_str(span.kind.placeholder());
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// How many spans of each kind, indexed in `PhiKind::ALL` order.
pub fn count_by_kind(spans: &[PhiSpan]) -> [usize; 7] {
    let mut counts = [0; 7];
    for span in spans {
        counts[span.kind as usize] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_each_kind_with_its_placeholder() {
        let text = "Patient: Jane Doe\nMRN: 12345678\nA 92-year-old seen 03/14/2023 by Dr. Patel. \
                    Call (555) 123-4567 or jdoe@example.org. Lives at 12 Oak Street.";
        assert_eq!(
            scrub(text),
            "Patient: [NAME]\nMRN: [ID]\nA [AGE]-year-old seen [DATE] by Dr. [NAME]. \
             Call [PHONE] or [EMAIL]. Lives at [ADDRESS]."
        );
    }

    #[test]
    fn scrubbed_text_is_not_detected_again() {
        let text = "Dr. [NAME] saw [** Known lastname 2342 **] on [**2119-4-5**], MRN [ID].";
        assert_eq!(find_phi(text), vec![]);
        let once = scrub("Mr. Okafor, 93 years old, seen March 3, 2021.");
        assert_eq!(scrub(&once), once);
    }

    #[test]
    fn overlapping_claims_keep_the_longer_span() {
        let text = "lives at 12 Oak Dr. Salem, OR 97301 now";
        let spans = find_phi(text);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].kind, PhiKind::Address);
        assert_eq!(
            &text[spans[0].start..spans[0].end],
            "12 Oak Dr. Salem, OR 97301"
        );
    }

    #[test]
    fn clinical_traps_yield_no_phi() {
        let text = "Mr. in bed 4 says the Dr. will come. BP 120/80, HR 72, Tylenol 650 mg, 1/2 tablet, \
                    Norco 5/325 mg, 24/7 care. Parkinson disease since 2019, Foley catheter, Glasgow \
                    Coma Scale 15. Follow up with Cardiology. A 67-year-old, age 89. Room 4512.";
        assert_eq!(find_phi(text), vec![]);
    }

    #[test]
    fn every_prefix_and_suffix_gives_sorted_disjoint_spans_on_char_boundaries() {
        let text = "Name: Zoë Álvarez-Søren, DOB 3/14/1931 (93 y/o F)\n-- José Núñez RN\n\
                    Lives at 12 Øster Straße St., Apt 2 — call +1 (555) 123-4567 ext. 9, \
                    [** Name **] MRN#0012345 mail: zoë@x.org Sincerely,\nDr. Ōta";
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for &cut in &cuts {
            for part in [&text[..cut], &text[cut..]] {
                let spans = find_phi(part);
                for pair in spans.windows(2) {
                    assert!(pair[0].end <= pair[1].start, "{part:?}: {pair:?}");
                }
                for span in &spans {
                    assert!(span.start < span.end && part.get(span.start..span.end).is_some());
                }
            }
        }
    }

    #[test]
    fn counts_and_names_follow_kind_order() {
        let spans = find_phi("Dr. Patel and Dr. Chen, 555-123-4567, age 97");
        assert_eq!(count_by_kind(&spans), [2, 0, 0, 1, 0, 0, 1]);
        let names: Vec<&str> = PhiKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            ["name", "date", "id", "phone", "email", "address", "age"]
        );
        assert_eq!(
            serde_json::to_string(&PhiKind::Address).ok().as_deref(),
            Some("\"address\"")
        );
    }
}
