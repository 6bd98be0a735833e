//! What each stretch of a shown text is marked with: words an output adds to the reference,
//! reference words it drops (shown struck through where they would be), medications the
//! source does not support, doses that differ, safety problems, and in the source the
//! medications an output left out. Pure: text and findings in, styled pieces out.

use super::super::diff::{Edit, WordDiff};
use crate::project::predictions::{PredictionRow, span_in};
use std::ops::Range;

/// Marks of a stretch of text, as bits.
pub const ADDED: u8 = 1;
pub const HALLUCINATED: u8 = 2;
pub const MISMATCHED: u8 = 4;
pub const SAFETY: u8 = 8;
pub const OMITTED: u8 = 16;

/// A stretch of the shown text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes of the text itself with their marks.
    Text { range: Range<usize>, marks: u8 },
    /// A word of the other text (the reference) that this one dropped, by its bytes there.
    Removed(Range<usize>),
}

/// `text` cut where its marks change, with `removed` words inserted before the byte each names.
/// Spans that do not fall on character boundaries inside `text` are ignored.
pub fn pieces(
    text: &str,
    spans: &[(Range<usize>, u8)],
    removed: &[(usize, Range<usize>)],
) -> Vec<Piece> {
    let mut marks = vec![0u8; text.len()];
    for (range, mark) in spans {
        if range.end <= text.len() && span_in(text, range.start, range.end).is_some() {
            for m in &mut marks[range.clone()] {
                *m |= mark;
            }
        }
    }
    let mut out = Vec::new();
    let mut removed = removed.iter().peekable();
    let mut start = 0;
    for i in 0..=text.len() {
        let boundary = i == text.len()
            || (i > start && marks[i] != marks[start])
            || removed.peek().is_some_and(|(at, _)| *at == i);
        if !boundary || !text.is_char_boundary(i) {
            continue;
        }
        if i > start {
            out.push(Piece::Text {
                range: start..i,
                marks: marks[start],
            });
            start = i;
        }
        while let Some((_, word)) = removed.next_if(|(at, _)| *at == i) {
            out.push(Piece::Removed(word.clone()));
        }
    }
    out
}

/// The marks of an output: its diff against the reference and its medication and safety
/// findings; with `show_removed`, the reference words it dropped, where they would stand.
pub fn output_pieces(row: &PredictionRow, diff: &WordDiff, show_removed: bool) -> Vec<Piece> {
    let mut spans: Vec<(Range<usize>, u8)> = Vec::new();
    let mut removed = Vec::new();
    let mut pending = Vec::new();
    for edit in &diff.edits {
        match *edit {
            Edit::Removed { old } => pending.push(diff.reference_words[old].clone()),
            Edit::Same { new, .. } | Edit::Added { new } => {
                let at = diff.output_words[new].start;
                removed.extend(pending.drain(..).map(|w| (at, w)));
                if matches!(edit, Edit::Added { .. }) {
                    spans.push((diff.output_words[new].clone(), ADDED));
                }
            }
        }
    }
    let end = row.prediction.len();
    removed.extend(pending.into_iter().map(|w| (end, w)));
    if let Some(meds) = &row.meds {
        spans.extend(
            meds.hallucinated
                .iter()
                .map(|m| (m.start..m.end, HALLUCINATED)),
        );
        spans.extend(meds.mismatched.iter().map(|m| (m.start..m.end, MISMATCHED)));
    }
    spans.extend(
        row.safety
            .iter()
            .filter_map(|f| f.span.map(|(s, e)| (s..e, SAFETY))),
    );
    if !show_removed {
        removed.clear();
    }
    pieces(&row.prediction, &spans, &removed)
}

/// The source with the medications the given outputs left out marked.
pub fn source_pieces<'r>(
    source: &str,
    outputs: impl Iterator<Item = &'r PredictionRow>,
) -> Vec<Piece> {
    let spans: Vec<(Range<usize>, u8)> = outputs
        .filter_map(|r| r.meds.as_ref())
        .flat_map(|m| m.omitted.iter().map(|o| (o.start..o.end, OMITTED)))
        .collect();
    pieces(source, &spans, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::predictions::{BASE, parse_predictions};

    fn texts<'t>(text: &'t str, other: &'t str, pieces: &[Piece]) -> Vec<(&'t str, u8)> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Text { range, marks } => (&text[range.clone()], *marks),
                Piece::Removed(r) => (&other[r.clone()], 255),
            })
            .collect()
    }

    #[test]
    fn cuts_where_marks_change_and_inserts_removed_words() {
        let text = "Take Lasix 20 mg";
        let got = pieces(
            text,
            &[(5..10, HALLUCINATED), (11..16, MISMATCHED)],
            &[(11, 0..2)],
        );
        assert_eq!(
            texts(text, "40 mg", &got),
            [
                ("Take ", 0),
                ("Lasix", HALLUCINATED),
                (" ", 0),
                ("40", 255),
                ("20 mg", MISMATCHED)
            ]
        );
        let bad = pieces(
            "café",
            &[(0..3, ADDED), (0..4, SAFETY), (2..9, SAFETY)],
            &[],
        );
        assert_eq!(texts("café", "", &bad), [("caf", ADDED), ("é", 0)]);
    }

    #[test]
    fn an_output_shows_its_diff_and_medication_findings() {
        let (rows, _) = parse_predictions(
            crate::project::predictions::tests::sample_line(1, BASE)
                .to_string()
                .as_bytes(),
        );
        let row = &rows[0];
        assert_eq!(
            row.prediction,
            "You had heart failure 1. Take Lasix 20 mg and warfarin daily."
        );
        let diff = WordDiff::new(&row.reference, &row.prediction);
        let got = output_pieces(row, &diff, true);
        let shown = texts(&row.prediction, &row.reference, &got);
        assert_eq!(
            shown,
            [
                ("You ", 0),
                ("were", 255),
                ("treated", 255),
                ("for", 255),
                ("had", ADDED),
                (" heart failure 1. Take ", 0),
                ("furosemide", 255),
                ("40", 255),
                ("Lasix", ADDED),
                (" ", 0),
                ("20", ADDED | MISMATCHED),
                (" mg", MISMATCHED),
                (" ", 0),
                ("and", ADDED),
                (" ", 0),
                ("warfarin", ADDED | HALLUCINATED),
                (" daily.", 0),
            ]
        );
        let hidden = output_pieces(row, &diff, false);
        assert!(hidden.iter().all(|p| matches!(p, Piece::Text { .. })));
    }
}
