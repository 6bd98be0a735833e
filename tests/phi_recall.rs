//! Measures the PHI detector against the labelled synthetic notes written by
//! scripts/make-phi-fixture.py: span-level recall and precision per kind, and scan throughput.

use std::time::Instant;

use lablens::data::phi::{PhiKind, PhiSpan, find_phi};
use serde::Deserialize;

const FIXTURE: &str = include_str!("fixtures/phi_labelled.jsonl");

#[derive(Deserialize)]
struct LabelledNote {
    id: String,
    offsets: String,
    text: String,
    spans: Vec<PhiSpan>,
}

fn load_notes() -> Vec<LabelledNote> {
    FIXTURE
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let note = match serde_json::from_str::<LabelledNote>(line) {
                Ok(note) => note,
                Err(err) => panic!("phi_labelled.jsonl line {}: {err}", i + 1),
            };
            for span in &note.spans {
                assert!(
                    note.text.get(span.start..span.end).is_some(),
                    "phi_labelled.jsonl line {}: span {}..{} is not a slice of the text",
                    i + 1,
                    span.start,
                    span.end
                );
            }
            note
        })
        .collect()
}

/// The span with up to 30 bytes either side, widened to character boundaries.
fn in_context(text: &str, span: &PhiSpan) -> String {
    let mut start = span.start.saturating_sub(30);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (span.end + 30).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    format!(
        "{:?} in {:?}",
        &text[span.start..span.end],
        &text[start..end]
    )
}

fn overlap(a: &PhiSpan, b: &PhiSpan) -> usize {
    a.end.min(b.end).saturating_sub(a.start.max(b.start))
}

/// Hits and totals per kind: recall counts gold spans, precision counts predicted spans.
#[derive(Default)]
struct Tally {
    gold_found: [usize; 7],
    gold: [usize; 7],
    pred_correct: [usize; 7],
    pred: [usize; 7],
}

impl Tally {
    /// A gold span is found when one predicted span (of any kind) covers at least half of it; a
    /// predicted span is correct when it overlaps any gold span.
    fn add(&mut self, note: &LabelledNote, predicted: &[PhiSpan], misses: &mut Vec<String>) {
        for gold in &note.spans {
            let k = gold.kind as usize;
            self.gold[k] += 1;
            if predicted
                .iter()
                .any(|p| 2 * overlap(p, gold) >= gold.end - gold.start)
            {
                self.gold_found[k] += 1;
            } else {
                let context = in_context(&note.text, gold);
                misses.push(format!("{} missed {:?} {context}", note.id, gold.kind));
            }
        }
        for pred in predicted {
            let k = pred.kind as usize;
            self.pred[k] += 1;
            if note.spans.iter().any(|g| overlap(pred, g) > 0) {
                self.pred_correct[k] += 1;
            } else {
                let context = in_context(&note.text, pred);
                misses.push(format!("{} spurious {:?} {context}", note.id, pred.kind));
            }
        }
    }
}

fn ratio(hits: usize, total: usize) -> f64 {
    if total == 0 {
        1.0
    } else {
        hits as f64 / total as f64
    }
}

#[test]
fn recall_and_precision_on_labelled_notes() {
    let notes = load_notes();
    assert!(notes.len() >= 350, "fixture has only {} notes", notes.len());
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    for note in &notes {
        assert_eq!(note.offsets, "utf8-bytes", "{}: offsets field", note.id);
        tally.add(note, &find_phi(&note.text), &mut errors);
    }

    println!(
        "{:<8} {:>6} {:>8} {:>6} {:>9}",
        "kind", "gold", "recall", "pred", "precision"
    );
    for kind in PhiKind::ALL {
        let k = kind as usize;
        let recall = ratio(tally.gold_found[k], tally.gold[k]);
        let precision = ratio(tally.pred_correct[k], tally.pred[k]);
        println!(
            "{:<8} {:>6} {recall:>8.3} {:>6} {precision:>9.3}",
            kind.name(),
            tally.gold[k],
            tally.pred[k]
        );
    }
    let recall = ratio(tally.gold_found.iter().sum(), tally.gold.iter().sum());
    let precision = ratio(tally.pred_correct.iter().sum(), tally.pred.iter().sum());
    let (gold, pred): (usize, usize) = (tally.gold.iter().sum(), tally.pred.iter().sum());
    println!(
        "{:<8} {gold:>6} {recall:>8.3} {pred:>6} {precision:>9.3}",
        "overall"
    );
    for line in errors.iter().take(40) {
        println!("  {line}");
    }
    assert!(recall >= 0.98, "overall recall {recall:.3} < 0.98");
    assert!(precision >= 0.90, "overall precision {precision:.3} < 0.90");
}

/// Prints single-threaded scan speed. The fixture is far denser in PHI than real notes (about
/// one span per 60 bytes), so this is a floor. The best of several passes is reported because
/// the other test runs alongside in the same process.
#[test]
fn scan_throughput() {
    let notes = load_notes();
    let texts: Vec<&str> = notes.iter().map(|n| n.text.as_str()).collect();
    let megabytes = texts.iter().map(|t| t.len()).sum::<usize>() as f64 / 1e6;
    let spans: usize = texts.iter().map(|t| find_phi(t).len()).sum();
    let best = (0..PASSES)
        .map(|_| {
            let started = Instant::now();
            let found: usize = texts.iter().map(|t| find_phi(t).len()).sum();
            assert_eq!(found, spans, "find_phi must be deterministic");
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let rate = megabytes / best;
    println!(
        "find_phi: {megabytes:.2} MB ({spans} spans) in {best:.3} s = {rate:.1} MB/s; \
         300 MB would take {:.0} s on one thread",
        300.0 / rate
    );
    assert!(spans > 0);
}

const PASSES: usize = 8;
