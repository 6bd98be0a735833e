//! Case-insensitive matching of multi-word phrases on word boundaries, with byte offsets into
//! the original text: the drug lexicon and the emergency-symptom list both use it.

use std::collections::HashMap;

/// A word of a text: a run of ASCII letters and digits, lowercased, with its byte span.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// The words of `text` (runs of ASCII alphanumerics), lowercased.
pub fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (c.is_ascii_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(Word {
                    text: text[s..i].to_ascii_lowercase(),
                    start: s,
                    end: i,
                });
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// The lowercase words of a phrase, joined by single spaces (the matcher's key).
pub fn key(phrase: &str) -> String {
    words(phrase)
        .into_iter()
        .map(|w| w.text)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One match: which phrase (its value) and the byte span in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a, T> {
    pub value: &'a T,
    pub start: usize,
    pub end: usize,
}

/// Phrases to find, each with a value; the longest phrase starting at a word wins.
#[derive(Debug, Clone)]
pub struct PhraseMatcher<T> {
    phrases: HashMap<String, T>,
    max_words: usize,
}

impl<T> Default for PhraseMatcher<T> {
    fn default() -> Self {
        Self {
            phrases: HashMap::new(),
            max_words: 0,
        }
    }
}

impl<T> PhraseMatcher<T> {
    /// Adds a phrase; a phrase without words is ignored, a repeated one keeps its first value.
    pub fn insert(&mut self, phrase: &str, value: T) {
        let k = key(phrase);
        if k.is_empty() {
            return;
        }
        self.max_words = self.max_words.max(k.split(' ').count());
        self.phrases.entry(k).or_insert(value);
    }

    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.phrases.is_empty()
    }

    /// Every non-overlapping match in `text`, left to right. Words of a phrase may be separated
    /// by spaces, hyphens or slashes only, so a match never spans a line or a sentence.
    pub fn find_all<'a>(&'a self, text: &str) -> Vec<Match<'a, T>> {
        let ws = words(text);
        let mut out = Vec::new();
        let mut i = 0;
        while i < ws.len() {
            let mut found = None;
            let mut k = String::new();
            for n in 1..=self.max_words.min(ws.len() - i) {
                let w = &ws[i + n - 1];
                if n > 1 {
                    let gap = &text[ws[i + n - 2].end..w.start];
                    if gap.is_empty()
                        || gap.len() > 2
                        || !gap.chars().all(|c| matches!(c, ' ' | '-' | '/'))
                    {
                        break;
                    }
                    k.push(' ');
                }
                k.push_str(&w.text);
                if let Some(value) = self.phrases.get(&k) {
                    found = Some((n, value));
                }
            }
            match found {
                Some((n, value)) => {
                    out.push(Match {
                        value,
                        start: ws[i].start,
                        end: ws[i + n - 1].end,
                    });
                    i += n;
                }
                None => i += 1,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_phrase_on_word_boundaries() {
        let mut m = PhraseMatcher::default();
        m.insert("insulin", 1);
        m.insert("insulin glargine", 2);
        m.insert("Toprol XL", 3);
        let text = "Insulin  glargine 10 units; insulin-glargine; insulinx; TOPROL-XL 50 mg; insulin\nglargine";
        let found: Vec<(i32, &str)> = m
            .find_all(text)
            .iter()
            .map(|f| (*f.value, &text[f.start..f.end]))
            .collect();
        assert_eq!(
            found,
            [
                (2, "Insulin  glargine"),
                (2, "insulin-glargine"),
                (3, "TOPROL-XL"),
                (1, "insulin")
            ]
        );
    }
}
