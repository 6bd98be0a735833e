//! BLEU exactly as `sacrebleu` 2.x computes it with one reference: the `13a` tokenizer (mteval's
//! `tokenizeText`), n-grams up to 4, `exp` smoothing; sentence BLEU with effective order, corpus
//! BLEU from statistics summed over the examples (never an average of sentence scores).

use std::collections::HashMap;

const MAX_ORDER: usize = 4;

/// The sufficient statistics of one hypothesis against its reference; they add up over a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BleuStats {
    pub hyp_len: usize,
    pub ref_len: usize,
    pub correct: [usize; MAX_ORDER],
    pub total: [usize; MAX_ORDER],
}

impl std::ops::AddAssign for BleuStats {
    fn add_assign(&mut self, o: Self) {
        self.hyp_len += o.hyp_len;
        self.ref_len += o.ref_len;
        for n in 0..MAX_ORDER {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
    }
}

/// Python's `str.isspace`: Unicode white space plus the information separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// mteval-v13a punctuation that is always split off: ASCII punctuation except `'`, `,`, `-`, `.`.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// One left-to-right pass of a two-character regex substitution `(A)(B)` → `pre A mid B post`,
/// with Python's non-overlapping match semantics.
fn pair_pass(
    chars: &[char],
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    layout: [&str; 3],
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 4);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && first(chars[i]) && second(chars[i + 1]) {
            out.extend(layout[0].chars());
            out.push(chars[i]);
            out.extend(layout[1].chars());
            out.push(chars[i + 1]);
            out.extend(layout[2].chars());
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacrebleu's `Tokenizer13a` after `rstrip()`: the tokens of one segment.
pub fn tokenize_13a(text: &str) -> Vec<String> {
    let mut line = text
        .trim_end_matches(is_py_space)
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut chars: Vec<char> = Vec::with_capacity(line.len() + 2);
    chars.push(' ');
    for c in line.chars() {
        if is_13a_symbol(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    chars.push(' ');
    let digit = |c: char| c.is_ascii_digit();
    let period_comma = |c: char| c == '.' || c == ',';
    let chars = pair_pass(&chars, |c| !digit(c), period_comma, ["", " ", " "]);
    let chars = pair_pass(&chars, period_comma, |c| !digit(c), [" ", " ", ""]);
    let chars = pair_pass(&chars, digit, |c| c == '-', ["", " ", " "]);
    let text: String = chars.into_iter().collect();
    text.split(is_py_space)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn ngram_counts(tokens: &[String]) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// The BLEU statistics of `hypothesis` against `reference`.
pub fn stats(reference: &str, hypothesis: &str) -> BleuStats {
    let r = tokenize_13a(reference);
    let h = tokenize_13a(hypothesis);
    let ref_counts = ngram_counts(&r);
    let mut s = BleuStats {
        hyp_len: h.len(),
        ref_len: r.len(),
        ..BleuStats::default()
    };
    for (gram, count) in ngram_counts(&h) {
        let n = gram.len() - 1;
        s.total[n] += count;
        if let Some(rc) = ref_counts.get(gram) {
            s.correct[n] += count.min(*rc);
        }
    }
    s
}

/// sacrebleu's `compute_bleu` with `exp` smoothing, on the 0..100 scale.
pub fn score(s: &BleuStats, effective_order: bool) -> f64 {
    let bp = if s.hyp_len < s.ref_len {
        if s.hyp_len > 0 {
            (1.0 - s.ref_len as f64 / s.hyp_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    if s.correct.iter().all(|&c| c == 0) {
        return 0.0;
    }
    let mut precisions = [0.0f64; MAX_ORDER];
    let mut smooth = 1.0;
    let mut order = MAX_ORDER;
    for (n, precision) in precisions.iter_mut().enumerate() {
        if s.total[n] == 0 {
            break;
        }
        if effective_order {
            order = n + 1;
        }
        *precision = if s.correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * s.total[n] as f64)
        } else {
            100.0 * s.correct[n] as f64 / s.total[n] as f64
        };
    }
    // sacrebleu floors log(0) at -9999999999 rather than taking -inf.
    let log_sum: f64 = precisions[..order]
        .iter()
        .map(|&p| if p == 0.0 { -9_999_999_999.0 } else { p.ln() })
        .sum();
    bp * (log_sum / order as f64).exp()
}

/// Sentence BLEU (sacrebleu's `sentence_bleu`: effective order on).
pub fn sentence_bleu(reference: &str, hypothesis: &str) -> f64 {
    score(&stats(reference, hypothesis), true)
}

/// Corpus BLEU from summed statistics (sacrebleu's `corpus_bleu` defaults).
pub fn corpus_bleu<'a>(stats: impl IntoIterator<Item = &'a BleuStats>) -> f64 {
    let mut sum = BleuStats::default();
    for s in stats {
        sum += *s;
    }
    score(&sum, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_splits_like_mteval() {
        assert_eq!(
            tokenize_13a("Take 1,000 mg (twice) a day, e.g. at 8-9am.  "),
            [
                "Take", "1,000", "mg", "(", "twice", ")", "a", "day", ",", "e", ".", "g", ".",
                "at", "8", "-", "9am", "."
            ]
        );
        assert_eq!(tokenize_13a("a &amp; b&lt;c"), ["a", "&", "b", "<", "c"]);
    }

    #[test]
    fn identical_sentence_scores_100_and_disjoint_scores_0() {
        assert!(
            (sentence_bleu("the cat sat on the mat", "the cat sat on the mat") - 100.0).abs()
                < 1e-9
        );
        assert_eq!(sentence_bleu("the cat", "a dog"), 0.0);
    }
}
