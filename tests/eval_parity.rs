//! The metrics against their reference tools, on fixtures made by scripts/make-eval-fixtures.py:
//! ROUGE (rouge-score, stemmed) within 1e-9, BLEU (sacrebleu) within 1e-6, NLTK's Porter stems
//! exactly, readability (textstat) within a mean absolute difference of 0.1 grade, QA accuracy and
//! macro-F1 (scikit-learn), and the medication extractor's precision and recall on labelled
//! synthetic notes.

use lablens::eval::{bleu, meds, porter, qa, readability, rouge};
use serde_json::Value;
use std::path::Path;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eval")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn jsonl(name: &str) -> Vec<Value> {
    fixture(name)
        .lines()
        .map(|l| serde_json::from_str(l).expect("fixture line"))
        .collect()
}

fn text<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().expect("string field")
}

#[test]
fn rouge_matches_rouge_score_on_540_pairs() {
    let rows = jsonl("text_pairs.jsonl");
    assert!(rows.len() >= 500);
    let mut worst = 0.0f64;
    for row in &rows {
        let s = rouge::rouge(text(row, "reference"), text(row, "prediction"));
        for (name, got) in [
            ("rouge1", s.rouge1),
            ("rouge2", s.rouge2),
            ("rougeL", s.rouge_l),
            ("rougeLsum", s.rouge_lsum),
        ] {
            let want: Vec<f64> = row["rouge"][name]
                .as_array()
                .expect("scores")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect();
            for (g, w) in [got.precision, got.recall, got.fmeasure].iter().zip(&want) {
                worst = worst.max((g - w).abs());
                assert!(
                    (g - w).abs() <= 1e-9,
                    "{} {name}: {got:?} vs {want:?}",
                    row["id"]
                );
            }
        }
    }
    eprintln!("ROUGE: largest difference to rouge-score {worst:e}");
}

#[test]
fn bleu_matches_sacrebleu_sentence_and_corpus() {
    let rows = jsonl("text_pairs.jsonl");
    let mut stats = Vec::new();
    for row in &rows {
        let s = bleu::stats(text(row, "reference"), text(row, "prediction"));
        let got = bleu::score(&s, true);
        let want = row["bleu"].as_f64().expect("bleu");
        assert!((got - want).abs() <= 1e-6, "{}: {got} vs {want}", row["id"]);
        stats.push(s);
    }
    let corpus: Value = serde_json::from_str(&fixture("corpus_bleu.json")).expect("json");
    for (key, n) in [("all", stats.len()), ("first_100", 100)] {
        let got = bleu::corpus_bleu(&stats[..n]);
        let want = corpus[key].as_f64().expect("corpus bleu");
        assert!((got - want).abs() <= 1e-6, "corpus {key}: {got} vs {want}");
    }
}

#[test]
fn porter_stems_match_nltk() {
    let fixture = fixture("porter.tsv");
    let mut n = 0;
    for line in fixture.lines() {
        let (word, want) = line.split_once('\t').expect("word\tstem");
        assert_eq!(porter::stem(word), want, "{word}");
        n += 1;
    }
    assert!(n > 1000, "{n}");
}

#[test]
fn readability_within_a_tenth_of_a_grade_of_textstat() {
    let rows = jsonl("readability.jsonl");
    assert_eq!(rows.len(), 200);
    let (mut fkgl, mut fre, mut smog) = (0.0, 0.0, 0.0);
    for row in &rows {
        let r = readability::readability(text(row, "text"));
        fkgl += (r.fkgl.expect("fkgl") - row["fkgl"].as_f64().expect("fkgl")).abs();
        fre += (r.fre.expect("fre") - row["fre"].as_f64().expect("fre")).abs();
        smog += (r.smog.expect("smog") - row["smog"].as_f64().expect("smog")).abs();
    }
    let n = rows.len() as f64;
    let (fkgl, fre, smog) = (fkgl / n, fre / n, smog / n);
    eprintln!("readability MAD vs textstat: FKGL {fkgl:.1e}, FRE {fre:.1e}, SMOG {smog:.1e}");
    assert!(fkgl < 0.1, "FKGL MAD {fkgl}");
    assert!(smog < 0.1, "SMOG MAD {smog}");
    // Reading ease is on a 0..100 scale: 84.6 points per syllable per word against FKGL's 11.8.
    assert!(fre < 1.0, "FRE MAD {fre}");
}

/// Counts of one field: (predicted and right, predicted, labelled).
#[derive(Default, Debug)]
struct Counts {
    right: usize,
    predicted: usize,
    labelled: usize,
}

impl Counts {
    fn add(&mut self, got: Option<String>, want: Option<String>) {
        self.predicted += got.is_some() as usize;
        self.labelled += want.is_some() as usize;
        self.right += (got.is_some() && got == want) as usize;
    }

    fn precision(&self) -> f64 {
        self.right as f64 / self.predicted.max(1) as f64
    }

    fn recall(&self) -> f64 {
        self.right as f64 / self.labelled.max(1) as f64
    }
}

#[test]
fn medication_extractor_precision_and_recall_on_labelled_notes() {
    let notes = jsonl("med_notes.jsonl");
    assert!(notes.len() >= 100);
    let (mut drugs, mut doses, mut routes, mut freqs) = (
        Counts::default(),
        Counts::default(),
        Counts::default(),
        Counts::default(),
    );
    for note in &notes {
        let found = meds::extract(text(note, "text"));
        let labels = note["labels"].as_array().expect("labels");
        drugs.predicted += found.len();
        drugs.labelled += labels.len();
        for label in labels {
            let start = label["start"].as_u64().expect("start") as usize;
            let hit = found.iter().find(|p| {
                p.start == start && Some(p.generic.as_str()) == label["generic"].as_str()
            });
            let Some(p) = hit else {
                // A missed drug also misses its attributes.
                doses.add(None, label["dose"].as_f64().map(|v| v.to_string()));
                routes.add(None, label["route"].as_str().map(String::from));
                freqs.add(None, label["frequency"].as_str().map(String::from));
                continue;
            };
            drugs.right += 1;
            let want_dose = label["dose"]
                .as_f64()
                .map(|v| format!("{v} {}", label["unit"].as_str().unwrap_or("")));
            doses.add(
                p.dose.as_ref().map(|d| format!("{} {}", d.value, d.unit)),
                want_dose,
            );
            routes.add(
                p.route.as_ref().map(|r| r.code.clone()),
                label["route"].as_str().map(String::from),
            );
            freqs.add(
                p.frequency.as_ref().map(|f| f.code.clone()),
                label["frequency"].as_str().map(String::from),
            );
        }
    }
    for (name, c) in [
        ("drug", &drugs),
        ("dose", &doses),
        ("route", &routes),
        ("frequency", &freqs),
    ] {
        eprintln!(
            "{name:<9} precision {:.3} recall {:.3} ({} right, {} found, {} labelled)",
            c.precision(),
            c.recall(),
            c.right,
            c.predicted,
            c.labelled
        );
    }
    assert!(
        drugs.precision() >= 0.99 && drugs.recall() >= 0.99,
        "{drugs:?}"
    );
    for c in [&doses, &routes, &freqs] {
        assert!(c.precision() >= 0.99 && c.recall() >= 0.99, "{c:?}");
    }
}

#[test]
fn answer_letters_accuracy_and_macro_f1_match_scikit_learn() {
    let doc: Value = serde_json::from_str(&fixture("qa_answers.json")).expect("json");
    let items = doc["items"].as_array().expect("items");
    assert_eq!(items.len(), 300);
    let mut pairs = Vec::new();
    for item in items {
        let predicted = qa::answer_letter(text(item, "prediction"));
        let want = item["letter"].as_str().and_then(|l| l.chars().next());
        assert_eq!(predicted, want, "{}", text(item, "prediction"));
        let gold = qa::answer_letter(text(item, "reference")).expect("gold letter");
        assert_eq!(Some(gold), text(item, "gold").chars().next());
        pairs.push((predicted, gold));
    }
    let accuracy = qa::accuracy(&pairs).expect("accuracy");
    let f1 = qa::macro_f1(&pairs).expect("macro-F1");
    assert!((accuracy - doc["accuracy"].as_f64().expect("accuracy")).abs() < 1e-12);
    assert!(
        (f1 - doc["macro_f1"].as_f64().expect("f1")).abs() < 1e-12,
        "{f1}"
    );
}
