//! The parts of an input an explanation weighs: its words, its sentences or its clinical
//! sections, as byte spans; and the input with some of them removed (a LIME perturbation, a
//! section ablation, a truncation).

use crate::data::sections::parse_sections;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::LazyLock;

/// What a feature is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    #[default]
    Words,
    Sentences,
    Sections,
}

impl FeatureKind {
    pub const ALL: [FeatureKind; 3] = [
        FeatureKind::Words,
        FeatureKind::Sentences,
        FeatureKind::Sections,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FeatureKind::Words => "words",
            FeatureKind::Sentences => "sentences",
            FeatureKind::Sections => "sections",
        }
    }

    pub fn parse(text: &str) -> Option<FeatureKind> {
        Self::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// One feature: its text's byte span in the input and a label (the text, or a section's name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub label: String,
    pub start: usize,
    pub end: usize,
}

impl Feature {
    pub fn span(&self) -> Range<usize> {
        self.start..self.end
    }
}

static WORD: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"\S+").expect("static word pattern"));

/// A sentence: up to and including its end mark, or up to a line break.
static SENTENCE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"[^\s][^\n]*?(?:[.!?](?:\s|$)|\n|$)").expect("static sentence pattern")
});

fn from_matches(text: &str, re: &regex::Regex) -> Vec<Feature> {
    re.find_iter(text)
        .map(|m| {
            let s = m.as_str().trim_end();
            Feature {
                label: s.to_string(),
                start: m.start(),
                end: m.start() + s.len(),
            }
        })
        .filter(|f| f.end > f.start)
        .collect()
}

/// The words of `text` (runs of non-space characters).
pub fn words(text: &str) -> Vec<Feature> {
    from_matches(text, &WORD)
}

/// The features of `kind` in `text`, in order. Sections span header and body; text before the
/// first section is no feature (it stays in every perturbation).
pub fn features(text: &str, kind: FeatureKind) -> Vec<Feature> {
    match kind {
        FeatureKind::Words => words(text),
        FeatureKind::Sentences => from_matches(text, &SENTENCE),
        FeatureKind::Sections => parse_sections(text)
            .into_iter()
            .map(|s| Feature {
                label: s.kind.label().to_string(),
                start: s.header.start,
                end: s.body.end.max(s.header.end),
            })
            .collect(),
    }
}

/// `text` without the features whose `keep` is false; a removed feature takes the spaces
/// after it along (not a line break), so that no double spaces are left.
pub fn remove(text: &str, features: &[Feature], keep: &[bool]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (f, _) in features.iter().zip(keep).filter(|(_, k)| !**k) {
        if f.start < at {
            continue;
        }
        out.push_str(&text[at..f.start]);
        let rest = &text[f.end..];
        let spaces = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        at = f.end + spaces;
    }
    out.push_str(&text[at.min(text.len())..]);
    out
}

/// The first `fraction` of `text`'s words (at least one), cut after the last kept word.
pub fn truncate_words(text: &str, fraction: f64) -> String {
    let w = words(text);
    let keep = ((w.len() as f64 * fraction).ceil() as usize).clamp(1, w.len().max(1));
    match w.get(keep - 1) {
        Some(last) => text[..last.end].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_sentences_and_sections() {
        let text = "Diagnosis: heart failure.\nMedications: furosemide 40 mg daily. Take it.";
        let w = words(text);
        assert_eq!(w.len(), 10);
        assert_eq!(&text[w[1].span()], "heart");
        let s = features(text, FeatureKind::Sentences);
        let labels: Vec<&str> = s.iter().map(|f| f.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Diagnosis: heart failure.",
                "Medications: furosemide 40 mg daily.",
                "Take it."
            ]
        );
        let sec = features(text, FeatureKind::Sections);
        assert_eq!(sec.len(), 2);
        assert_eq!(sec[1].label, "Medications");
        assert_eq!(
            &text[sec[1].span()],
            "Medications: furosemide 40 mg daily. Take it."
        );
    }

    #[test]
    fn removal_keeps_the_rest_verbatim() {
        let text = "take  furosemide 40 mg\ndaily";
        let w = words(text);
        assert_eq!(
            remove(text, &w, &[true, false, true, true, true]),
            "take  40 mg\ndaily"
        );
        assert_eq!(
            remove(text, &w, &[true, true, true, false, false]),
            "take  furosemide 40 \n"
        );
        assert_eq!(remove(text, &w, &[true; 5]), text);
        assert_eq!(truncate_words(text, 0.5), "take  furosemide 40");
        assert_eq!(truncate_words(text, 0.01), "take");
        assert_eq!(truncate_words(text, 1.0), text);
    }
}
