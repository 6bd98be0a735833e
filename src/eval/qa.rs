//! Multiple-choice answers: the letter a generated answer picks, accuracy and macro-F1.
//!
//! The rule, in order: (1) "answer" followed by optional "is", ":" or "-" and the letter A–E,
//! optionally in parentheses or followed by "." or ")"; (2) otherwise a line that starts with the
//! letter followed by ".", ")" or ":", or "(A)"; (3) otherwise a text that is only the letter.
//! The first match in the text counts. A text with none has no answer and is counted wrong.

use regex::Regex;
use std::collections::BTreeSet;
use std::sync::LazyLock;

static AFTER_ANSWER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\banswer\s*(?:is\s*)?[:\-]?\s*\(?([A-E])\b").expect("answer pattern")
});
static LINE_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*\(?([A-E])(?:[.):]|\))").expect("line pattern"));

/// A predicted answer letter (none when the text has none) and the gold letter.
pub type AnswerPair = (Option<char>, char);

/// The answer letter of a generated or reference answer, by the rule above.
pub fn answer_letter(text: &str) -> Option<char> {
    let letter = |c: regex::Captures| c.get(1)?.as_str().chars().next();
    if let Some(l) = AFTER_ANSWER.captures(text).and_then(letter) {
        return Some(l.to_ascii_uppercase());
    }
    if let Some(l) = LINE_START.captures(text).and_then(letter) {
        return Some(l);
    }
    let t = text
        .trim()
        .trim_end_matches(['.', ')'])
        .trim_start_matches('(');
    match t.chars().collect::<Vec<_>>()[..] {
        [c] if matches!(c.to_ascii_uppercase(), 'A'..='E') => Some(c.to_ascii_uppercase()),
        _ => None,
    }
}

/// Fraction of pairs whose predicted letter equals the gold letter.
pub fn accuracy(pairs: &[AnswerPair]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let right = pairs.iter().filter(|(p, g)| *p == Some(*g)).count();
    Some(right as f64 / pairs.len() as f64)
}

/// Macro-F1 over every label that occurs as gold or prediction ("no answer" included), as
/// scikit-learn's `f1_score(average="macro")` computes it.
pub fn macro_f1(pairs: &[AnswerPair]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let labels: BTreeSet<Option<char>> = pairs.iter().flat_map(|(p, g)| [*p, Some(*g)]).collect();
    let f1s: Vec<f64> = labels
        .iter()
        .map(|label| {
            let tp = pairs
                .iter()
                .filter(|(p, g)| p == label && Some(*g) == *label)
                .count();
            let predicted = pairs.iter().filter(|(p, _)| p == label).count();
            let actual = pairs.iter().filter(|(_, g)| Some(*g) == *label).count();
            if predicted + actual == 0 {
                0.0
            } else {
                2.0 * tp as f64 / (predicted + actual) as f64
            }
        })
        .collect();
    Some(f1s.iter().sum::<f64>() / f1s.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letter_extraction_rule() {
        assert_eq!(
            answer_letter("Answer: D. Gout\nExplanation: ..."),
            Some('D')
        );
        assert_eq!(answer_letter("The answer is (b) because"), Some('B'));
        assert_eq!(answer_letter("I think\nC) Pseudogout"), Some('C'));
        assert_eq!(answer_letter(" a. "), Some('A'));
        assert_eq!(answer_letter("Gout is likely."), None);
    }

    #[test]
    fn macro_f1_matches_scikit_learn() {
        // scikit-learn 1.9.1: f1_score(["A","B","A","C"], ["A","A","A","none"], average="macro")
        // = 0.2 (F1 of A 0.8, of B, C and "none" 0); tests/eval_parity.rs checks 300 more.
        let pairs = [
            (Some('A'), 'A'),
            (Some('A'), 'B'),
            (Some('A'), 'A'),
            (None, 'C'),
        ];
        assert!((macro_f1(&pairs).expect("f1") - 0.2).abs() < 1e-12);
        assert_eq!(accuracy(&pairs), Some(0.5));
    }
}
