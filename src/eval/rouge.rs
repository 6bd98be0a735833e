//! ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum exactly as Google's `rouge-score` computes them with
//! `use_stemmer=True`: lowercase, every run of characters outside `[a-z0-9]` a separator, the
//! NLTK Porter stemmer on tokens longer than 3 characters, and for Lsum the summary-level
//! union-LCS over newline-separated sentences (Lin 2004, section 3.2).

use super::porter;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Precision, recall and F1 of one ROUGE variant, each in 0..1.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl RougeScore {
    fn from_counts(hits: usize, prediction_len: usize, reference_len: usize) -> Self {
        let precision = hits as f64 / prediction_len.max(1) as f64;
        let recall = hits as f64 / reference_len.max(1) as f64;
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Self {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// The four ROUGE variants of one prediction against one reference.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeScores {
    pub rouge1: RougeScore,
    pub rouge2: RougeScore,
    #[serde(rename = "rougeL")]
    pub rouge_l: RougeScore,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: RougeScore,
}

/// rouge-score's tokens of `text`: lowercased, split at anything outside `[a-z0-9]`, stemmed.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    tokenize_into(text, &mut tokens);
    tokens
}

fn tokenize_into(text: &str, out: &mut Vec<String>) {
    let lowered;
    let text = if text.is_ascii() {
        text
    } else {
        // Unicode lowercasing can yield ASCII letters (`İ` → `i̇`, the Kelvin sign → `k`).
        lowered = text.to_lowercase();
        &lowered
    };
    for raw in text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        let token = raw.to_ascii_lowercase();
        out.push(if token.len() > 3 {
            porter::stem(&token)
        } else {
            token
        });
    }
}

/// A text as token ids (shared between the two texts of a pair) and its sentence boundaries.
struct Tokens {
    ids: Vec<u32>,
    /// End index into `ids` of each newline-separated, non-empty line.
    sentence_ends: Vec<usize>,
}

fn intern(text: &str, vocab: &mut HashMap<String, u32>) -> Tokens {
    let mut ids = Vec::new();
    let mut sentence_ends = Vec::new();
    let mut buf = Vec::new();
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        buf.clear();
        tokenize_into(line, &mut buf);
        for token in buf.drain(..) {
            let next = vocab.len() as u32;
            ids.push(*vocab.entry(token).or_insert(next));
        }
        sentence_ends.push(ids.len());
    }
    Tokens { ids, sentence_ends }
}

impl Tokens {
    fn sentences(&self) -> impl Iterator<Item = &[u32]> {
        let mut start = 0;
        self.sentence_ends.iter().map(move |&end| {
            let s = &self.ids[start..end];
            start = end;
            s
        })
    }
}

/// All four ROUGE variants of `prediction` against `reference` (rouge-score's `score(target,
/// prediction)`).
pub fn rouge(reference: &str, prediction: &str) -> RougeScores {
    let mut vocab = HashMap::new();
    let r = intern(reference, &mut vocab);
    let p = intern(prediction, &mut vocab);
    let vocab_len = vocab.len();
    RougeScores {
        rouge1: unigram_score(&r.ids, &p.ids, vocab_len),
        rouge2: bigram_score(&r.ids, &p.ids),
        rouge_l: lcs_score(&r.ids, &p.ids, vocab_len),
        rouge_lsum: summary_lcs_score(&r, &p, vocab_len),
    }
}

fn unigram_score(r: &[u32], p: &[u32], vocab_len: usize) -> RougeScore {
    let mut counts = vec![0i32; vocab_len];
    for &t in r {
        counts[t as usize] += 1;
    }
    let mut hits = 0;
    for &t in p {
        if counts[t as usize] > 0 {
            counts[t as usize] -= 1;
            hits += 1;
        }
    }
    RougeScore::from_counts(hits, p.len(), r.len())
}

fn bigram_score(r: &[u32], p: &[u32]) -> RougeScore {
    let mut counts: HashMap<(u32, u32), i32> = HashMap::new();
    for w in r.windows(2) {
        *counts.entry((w[0], w[1])).or_default() += 1;
    }
    let mut hits = 0;
    for w in p.windows(2) {
        if let Some(c) = counts.get_mut(&(w[0], w[1]))
            && *c > 0
        {
            *c -= 1;
            hits += 1;
        }
    }
    let n = |len: usize| len.saturating_sub(1);
    RougeScore::from_counts(hits, n(p.len()), n(r.len()))
}

fn lcs_score(r: &[u32], p: &[u32], vocab_len: usize) -> RougeScore {
    if r.is_empty() || p.is_empty() {
        return RougeScore::default();
    }
    RougeScore::from_counts(lcs_length(r, p, vocab_len), p.len(), r.len())
}

/// Length of the longest common subsequence, bit-parallel (Hyyrö 2004): one pass over `b` with
/// `a`'s positions packed in 64-bit words.
fn lcs_length(a: &[u32], b: &[u32], vocab_len: usize) -> usize {
    let words = a.len().div_ceil(64);
    let mut present: HashMap<u32, Vec<u64>> = HashMap::with_capacity(vocab_len.min(a.len()));
    for (i, &t) in a.iter().enumerate() {
        present.entry(t).or_insert_with(|| vec![0; words])[i / 64] |= 1 << (i % 64);
    }
    let mut v = vec![u64::MAX; words];
    for t in b {
        let Some(m) = present.get(t) else { continue };
        let mut carry = 0u64;
        for k in 0..words {
            let u = v[k] & m[k];
            let (sum, c1) = v[k].overflowing_add(u);
            let (sum, c2) = sum.overflowing_add(carry);
            carry = (c1 | c2) as u64;
            v[k] = sum | (v[k] & !m[k]);
        }
    }
    // Zero bits at positions of `a` (bits above `a.len()` in the last word are not positions).
    let tail = a.len() % 64;
    v.iter()
        .enumerate()
        .map(|(k, w)| {
            let mask = if k + 1 == words && tail != 0 {
                (1u64 << tail) - 1
            } else {
                u64::MAX
            };
            (!w & mask).count_ones() as usize
        })
        .sum()
}

/// Summary-level LCS: for each reference sentence the union of its LCS with every prediction
/// sentence, each token counted at most as often as it occurs in both texts.
fn summary_lcs_score(r: &Tokens, p: &Tokens, vocab_len: usize) -> RougeScore {
    let (m, n) = (r.ids.len(), p.ids.len());
    if r.sentence_ends.is_empty() || p.sentence_ends.is_empty() || m == 0 || n == 0 {
        return RougeScore::default();
    }
    let mut count_r = vec![0i32; vocab_len];
    let mut count_p = vec![0i32; vocab_len];
    for &t in &r.ids {
        count_r[t as usize] += 1;
    }
    for &t in &p.ids {
        count_p[t as usize] += 1;
    }
    let mut table = Vec::new();
    let mut in_union = Vec::new();
    let mut hits = 0;
    for ref_sentence in r.sentences() {
        in_union.clear();
        in_union.resize(ref_sentence.len(), false);
        for pred_sentence in p.sentences() {
            mark_lcs(ref_sentence, pred_sentence, &mut table, &mut in_union);
        }
        for (i, _) in in_union.iter().enumerate().filter(|(_, u)| **u) {
            let t = ref_sentence[i] as usize;
            if count_p[t] > 0 && count_r[t] > 0 {
                hits += 1;
                count_p[t] -= 1;
                count_r[t] -= 1;
            }
        }
    }
    RougeScore::from_counts(hits, n, m)
}

/// Marks in `marked` the positions of `r` on the LCS that rouge-score's backtrack picks (on a
/// tie it moves up in `r`, which decides which of several LCSs enters the union).
fn mark_lcs(r: &[u32], c: &[u32], table: &mut Vec<u32>, marked: &mut [bool]) {
    if r.is_empty() || c.is_empty() {
        return;
    }
    let cols = c.len() + 1;
    table.clear();
    table.resize((r.len() + 1) * cols, 0);
    for i in 1..=r.len() {
        for j in 1..=c.len() {
            table[i * cols + j] = if r[i - 1] == c[j - 1] {
                table[(i - 1) * cols + j - 1] + 1
            } else {
                table[(i - 1) * cols + j].max(table[i * cols + j - 1])
            };
        }
    }
    let (mut i, mut j) = (r.len(), c.len());
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            marked[i - 1] = true;
            i -= 1;
            j -= 1;
        } else if table[i * cols + j - 1] > table[(i - 1) * cols + j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_lowercases_splits_and_stems() {
        assert_eq!(
            tokenize("The patients' Medications: 40mg, İNR"),
            ["the", "patient", "medic", "40mg", "i", "nr"]
        );
    }

    #[test]
    fn bit_parallel_lcs_matches_the_table_across_word_boundaries() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32 % 5
        };
        for len in [1, 63, 64, 65, 130] {
            let a: Vec<u32> = (0..len).map(|_| next()).collect();
            let b: Vec<u32> = (0..len + 3).map(|_| next()).collect();
            let mut table = Vec::new();
            let mut marked = vec![false; a.len()];
            mark_lcs(&a, &b, &mut table, &mut marked);
            let by_table = table[table.len() - 1] as usize;
            assert_eq!(lcs_length(&a, &b, 5), by_table, "len {len}");
        }
    }

    #[test]
    fn identical_texts_score_one_and_empty_scores_zero() {
        let s = rouge(
            "Take aspirin daily.\nSee your doctor.",
            "Take aspirin daily.\nSee your doctor.",
        );
        assert_eq!(s.rouge_lsum.fmeasure, 1.0);
        assert_eq!(s.rouge2.recall, 1.0);
        let e = rouge("", "something");
        assert_eq!(e.rouge_l, RougeScore::default());
    }
}
