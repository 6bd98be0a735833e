//! Liang's hyphenation with the American English TeX patterns (`assets/eval/hyph_en_US.dic`,
//! BSD-style licence, see README_hyph_en_US.txt beside it), exactly as `pyphen` applies them:
//! textstat counts a word missing from the CMU dictionary as its hyphenation points plus one.

use std::collections::HashMap;
use std::sync::LazyLock;

/// Pattern letters → (offset of the first non-zero value, the values from there).
struct Patterns {
    by_letters: HashMap<String, (usize, Vec<u8>)>,
    max_len: usize,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let mut by_letters = HashMap::new();
    for line in include_str!("../../assets/eval/hyph_en_US.dic")
        .lines()
        .skip(1)
    {
        let line = line.trim();
        let ignored = ["%", "#", "LEFTHYPHENMIN", "RIGHTHYPHENMIN", "COMPOUND"];
        if line.is_empty() || ignored.iter().any(|p| line.starts_with(p)) {
            continue;
        }
        let mut letters = String::new();
        let mut values = vec![0u8];
        for c in line.chars() {
            match c.to_digit(10) {
                Some(d) => *values.last_mut().unwrap_or(&mut 0) = d as u8,
                None => {
                    letters.push(c);
                    values.push(0);
                }
            }
        }
        let Some(start) = values.iter().position(|&v| v != 0) else {
            continue;
        };
        let end = values
            .iter()
            .rposition(|&v| v != 0)
            .map_or(start, |e| e + 1);
        by_letters.insert(letters, (start, values[start..end].to_vec()));
    }
    let max_len = by_letters
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0);
    Patterns {
        by_letters,
        max_len,
    }
});

/// Hyphenation points of a lowercase word that pyphen's `Pyphen(lang="en_US")` allows (at
/// least two letters on each side).
pub fn points(word: &str) -> usize {
    let p = &*PATTERNS;
    let pointed: Vec<char> = std::iter::once('.')
        .chain(word.chars())
        .chain(std::iter::once('.'))
        .collect();
    let mut refs = vec![0u8; pointed.len() + 1];
    let mut key = String::new();
    for i in 0..pointed.len() - 1 {
        key.clear();
        let stop = (i + p.max_len).min(pointed.len());
        for &c in &pointed[i..stop] {
            key.push(c);
            let Some((offset, values)) = p.by_letters.get(&key) else {
                continue;
            };
            for (k, v) in values.iter().enumerate() {
                if let Some(r) = refs.get_mut(i + offset + k) {
                    *r = (*r).max(*v);
                }
            }
        }
    }
    let n = word.chars().count();
    refs.iter()
        .enumerate()
        .filter(|&(i, r)| r % 2 == 1 && i >= 1 && (2..=n.saturating_sub(2)).contains(&(i - 1)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::points;

    #[test]
    fn points_match_pyphen() {
        // pyphen 0.18.1: len(Pyphen(lang="en_US").positions(w))
        for (word, n) in [
            ("furosemide", 0),
            ("atorvastatin", 2),
            ("hemodialysis", 2),
            ("nbsp", 1),
        ] {
            assert_eq!(points(word), n, "{word}");
        }
    }
}
