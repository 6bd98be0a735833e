//! Reading level of a text the way `textstat` 0.7 computes it: Flesch–Kincaid grade, Flesch
//! reading ease and SMOG, with textstat's word and sentence counting, and syllables from the CMU
//! Pronouncing Dictionary (bundled as word → syllable count) or, for words it lacks, the TeX
//! hyphenation rules as textstat applies them through pyphen.

use super::hyphenation;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;

static CMU_SYLLABLES: LazyLock<HashMap<&'static str, u32>> = LazyLock::new(|| {
    include_str!("../../assets/eval/cmudict-syllables.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (word, n) = l.split_once(' ')?;
            Some((word, n.parse().ok()?))
        })
        .collect()
});

/// The three grade measures of one text; `None` for a text without words.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Readability {
    pub fkgl: Option<f64>,
    pub fre: Option<f64>,
    pub smog: Option<f64>,
}

/// Python's `\w` (Unicode letters and digits, and `_`).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// textstat's `list_words`: apostrophes kept only before a contraction ending (`t s d ve ll re`),
/// every other character outside `\w` and white space removed, split at white space.
pub fn words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut cleaned = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let keep = if c == '\'' {
            let next = |k: usize| chars.get(i + k).copied();
            matches!(next(1), Some('t' | 's' | 'd'))
                || matches!(
                    (next(1), next(2)),
                    (Some('v'), Some('e')) | (Some('l'), Some('l')) | (Some('r'), Some('e'))
                )
        } else {
            is_word_char(c) || c.is_whitespace()
        };
        if keep {
            cleaned.push(c);
        }
    }
    cleaned.split_whitespace().map(str::to_string).collect()
}

/// textstat's `count_sentences`: runs matched by `\b[^.!?]+[.!?]*`, not counting those of two
/// words or fewer, at least one for a non-empty text.
pub fn sentence_count(text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    let chars: Vec<char> = text.chars().collect();
    let terminal = |c: char| matches!(c, '.' | '!' | '?');
    let boundary = |j: usize| {
        let before = j > 0 && is_word_char(chars[j - 1]);
        let after = j < chars.len() && is_word_char(chars[j]);
        before != after
    };
    let (mut found, mut ignored, mut i) = (0usize, 0usize, 0);
    while i < chars.len() {
        if terminal(chars[i]) || !boundary(i) {
            i += 1;
            continue;
        }
        let mut k = i;
        while k < chars.len() && !terminal(chars[k]) {
            k += 1;
        }
        while k < chars.len() && terminal(chars[k]) {
            k += 1;
        }
        let sentence: String = chars[i..k].iter().collect();
        found += 1;
        if words(&sentence).len() <= 2 {
            ignored += 1;
        }
        i = k;
    }
    found.saturating_sub(ignored).max(1)
}

/// Syllables of one lowercase word: the CMU dictionary's first pronunciation, else its
/// hyphenation points plus one.
pub fn syllables(word: &str) -> u32 {
    if let Some(&n) = CMU_SYLLABLES.get(word) {
        return n;
    }
    hyphenation::points(word) as u32 + 1
}

/// Flesch–Kincaid grade, Flesch reading ease and SMOG of `text`.
pub fn readability(text: &str) -> Readability {
    let words = words(text);
    if words.is_empty() {
        return Readability::default();
    }
    let sentences = sentence_count(text) as f64;
    let counts: Vec<u32> = words.iter().map(|w| syllables(&w.to_lowercase())).collect();
    let syllable_total: u32 = counts.iter().sum();
    let polysyllables = counts.iter().filter(|&&n| n >= 3).count() as f64;
    let per_sentence = words.len() as f64 / sentences;
    let per_word = f64::from(syllable_total) / words.len() as f64;
    Readability {
        fkgl: Some(0.39 * per_sentence + 11.8 * per_word - 15.59),
        fre: Some(206.835 - 1.015 * per_sentence - 84.6 * per_word),
        smog: Some(1.043 * (30.0 * (polysyllables / sentences)).sqrt() + 3.1291),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_contractions_and_drop_punctuation() {
        assert_eq!(
            words("Don't stop 'taking' follow-up meds, 3,000 mg."),
            ["Don't", "stop", "'taking", "followup", "meds", "3000", "mg"]
        );
    }

    #[test]
    fn short_fragments_are_not_sentences() {
        assert_eq!(sentence_count("Call now. You were in the hospital. OK!"), 1);
        assert_eq!(sentence_count("..."), 1);
    }

    #[test]
    fn dictionary_and_hyphenation_syllables() {
        assert_eq!(syllables("medication"), 4);
        assert_eq!(syllables("don't"), 1);
        // Not in CMUdict: textstat (pyphen) counts these.
        assert_eq!(syllables("atorvastatin"), 3);
        assert_eq!(syllables("40"), 1);
    }

    #[test]
    fn empty_text_has_no_grade() {
        assert_eq!(readability("  ...  ").fkgl, None);
        assert!(readability("Take one pill each day.").fkgl.is_some());
    }
}
