//! Word-level diff of a model output against its reference (Myers' O(ND) algorithm over
//! words), for the Compare panel's highlighting. Words are compared without case and without
//! the punctuation around them, so "Daily." matches "daily".

use std::ops::Range;

/// One step of an edit script between an old and a new sequence, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Same { old: usize, new: usize },
    Removed { old: usize },
    Added { new: usize },
}

/// A shortest edit script turning `old` into `new`, in order. It keeps a longest common
/// subsequence as `Same`, preferring removals before additions at each change.
pub fn diff<T: PartialEq>(old: &[T], new: &[T]) -> Vec<Edit> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (mid_old, mid_new) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut edits: Vec<Edit> = (0..prefix).map(|i| Edit::Same { old: i, new: i }).collect();
    edits.extend(myers(mid_old, mid_new).into_iter().map(|e| match e {
        Edit::Same { old, new } => Edit::Same {
            old: old + prefix,
            new: new + prefix,
        },
        Edit::Removed { old } => Edit::Removed { old: old + prefix },
        Edit::Added { new } => Edit::Added { new: new + prefix },
    }));
    let (o, n) = (old.len() - suffix, new.len() - suffix);
    edits.extend((0..suffix).map(|i| Edit::Same {
        old: o + i,
        new: n + i,
    }));
    edits
}

/// Myers' greedy forward search, keeping for each edit count `d` the furthest x reached on the
/// diagonals `-d-1..=d+1` (all that backtracking reads), then walking back from the end.
fn myers<T: PartialEq>(a: &[T], b: &[T]) -> Vec<Edit> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = n + m;
    let offset = max + 1;
    let mut v = vec![0isize; 2 * max as usize + 3];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut found = false;
    for d in 0..=max {
        trace.push(v[(offset - d - 1) as usize..=(offset + d + 1) as usize].to_vec());
        for k in (-d..=d).step_by(2) {
            let at = |k: isize| v[(offset + k) as usize];
            let mut x = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
                at(k + 1)
            } else {
                at(k - 1) + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[(offset + k) as usize] = x;
            if x >= n && y >= m {
                found = true;
                break;
            }
        }
        if found {
            break;
        }
    }
    let mut edits = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, saved) in trace.iter().enumerate().rev() {
        let d = d as isize;
        // `saved[0]` is diagonal -d-1.
        let at = |k: isize| saved[(k + d + 1) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = at(prev_k);
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            edits.push(Edit::Same {
                old: x as usize,
                new: y as usize,
            });
        }
        if d > 0 {
            edits.push(if x == prev_x {
                Edit::Added {
                    new: prev_y as usize,
                }
            } else {
                Edit::Removed {
                    old: prev_x as usize,
                }
            });
        }
        (x, y) = (prev_x, prev_y);
    }
    edits.reverse();
    edits
}

/// The words of `text` (runs of non-space characters) with their byte ranges.
pub fn words(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..text.len());
    }
    out
}

/// What a word is compared by: lowercase, without surrounding punctuation (unless it is all
/// punctuation).
fn word_key(word: &str) -> String {
    let trimmed = word.trim_matches(|c: char| !c.is_alphanumeric());
    if trimmed.is_empty() { word } else { trimmed }.to_lowercase()
}

/// The word diff of `output` against `reference`.
#[derive(Debug, Clone, PartialEq)]
pub struct WordDiff {
    pub reference_words: Vec<Range<usize>>,
    pub output_words: Vec<Range<usize>>,
    pub edits: Vec<Edit>,
}

impl WordDiff {
    pub fn new(reference: &str, output: &str) -> Self {
        let reference_words = words(reference);
        let output_words = words(output);
        let keys = |text: &str, ws: &[Range<usize>]| -> Vec<String> {
            ws.iter().map(|r| word_key(&text[r.clone()])).collect()
        };
        let edits = diff(
            &keys(reference, &reference_words),
            &keys(output, &output_words),
        );
        Self {
            reference_words,
            output_words,
            edits,
        }
    }

    /// Share of output words that are also in the reference, in order.
    pub fn kept_share(&self) -> Option<f64> {
        let same = self
            .edits
            .iter()
            .filter(|e| matches!(e, Edit::Same { .. }))
            .count();
        (!self.output_words.is_empty()).then(|| same as f64 / self.output_words.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rng::SeededRng;

    /// Longest common subsequence length by dynamic programming: the reference for Myers.
    fn lcs<T: PartialEq>(a: &[T], b: &[T]) -> usize {
        let mut row = vec![0usize; b.len() + 1];
        for x in a {
            let mut diag = 0;
            for (j, y) in b.iter().enumerate() {
                let up = row[j + 1];
                row[j + 1] = if x == y {
                    diag + 1
                } else {
                    row[j + 1].max(row[j])
                };
                diag = up;
            }
        }
        row[b.len()]
    }

    /// Checks that `edits` turns `a` into `b` and is a shortest script.
    fn check(a: &[u8], b: &[u8], edits: &[Edit]) {
        let (mut i, mut j) = (0, 0);
        for e in edits {
            match *e {
                Edit::Same { old, new } => {
                    assert_eq!((old, new), (i, j));
                    assert_eq!(a[old], b[new]);
                    i += 1;
                    j += 1;
                }
                Edit::Removed { old } => {
                    assert_eq!(old, i);
                    i += 1;
                }
                Edit::Added { new } => {
                    assert_eq!(new, j);
                    j += 1;
                }
            }
        }
        assert_eq!((i, j), (a.len(), b.len()), "{a:?} → {b:?}");
        let same = edits
            .iter()
            .filter(|e| matches!(e, Edit::Same { .. }))
            .count();
        assert_eq!(
            same,
            lcs(a, b),
            "{a:?} → {b:?}: not a longest common subsequence"
        );
    }

    #[test]
    fn scripts_are_shortest_on_random_sequences() {
        let mut rng = SeededRng::new(6);
        for _ in 0..2000 {
            let seq = |rng: &mut SeededRng| -> Vec<u8> {
                let len = (rng.next_u64() % 12) as usize;
                (0..len).map(|_| (rng.next_u64() % 4) as u8).collect()
            };
            let (a, b) = (seq(&mut rng), seq(&mut rng));
            check(&a, &b, &diff(&a, &b));
        }
        check(&[], &[], &diff::<u8>(&[], &[]));
        check(&[1, 2], &[], &diff(&[1, 2], &[]));
        check(&[], &[3], &diff(&[], &[3]));
    }

    #[test]
    fn marks_changed_words_against_the_reference() {
        let reference = "Take furosemide 40 mg daily.\nSee your doctor.";
        let output = "Take  Furosemide 20 mg daily and see your doctor";
        let d = WordDiff::new(reference, output);
        let word = |text: &'static str, r: &Range<usize>| &text[r.clone()];
        let shown: Vec<String> = d
            .edits
            .iter()
            .map(|e| match *e {
                Edit::Same { new, .. } => word(output, &d.output_words[new]).to_string(),
                Edit::Removed { old } => format!("-{}", word(reference, &d.reference_words[old])),
                Edit::Added { new } => format!("+{}", word(output, &d.output_words[new])),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "Take",
                "Furosemide",
                "-40",
                "+20",
                "mg",
                "daily",
                "+and",
                "see",
                "your",
                "doctor"
            ]
        );
        assert_eq!(d.kept_share(), Some(7.0 / 9.0));
        assert_eq!(words("  a\u{a0}b  c "), [2..3, 5..6, 8..9]);
    }

    #[test]
    fn long_texts_diff_quickly() {
        let text: Vec<String> = (0..3000).map(|i| format!("w{}", i % 97)).collect();
        let mut changed = text.clone();
        for i in (0..3000).step_by(50) {
            changed[i] = "x".into();
        }
        let started = std::time::Instant::now();
        let edits = diff(&text, &changed);
        assert!(started.elapsed().as_millis() < 500);
        let same = edits
            .iter()
            .filter(|e| matches!(e, Edit::Same { .. }))
            .count();
        assert_eq!(same, 3000 - 60);
    }
}
