//! Evaluation metrics as pure functions: each example's scores (`score_example`) and the corpus
//! summary with bootstrap intervals (`corpus`), serialized as `ExampleMetrics` and the `corpus`
//! object of eval.json. Each metric follows a reference tool: ROUGE `rouge-score` (stemmed),
//! BLEU `sacrebleu`, readability `textstat`; the fixtures under tests/fixtures/eval check it.

pub mod bleu;
pub mod bootstrap;
pub mod hyphenation;
pub mod job;
pub mod meds;
pub mod names;
pub mod pairs;
pub mod phrases;
pub mod porter;
pub mod qa;
pub mod readability;
pub mod rouge;
pub mod safety;

use crate::data::record::Task;
use bleu::BleuStats;
use bootstrap::{Interval, interval, mean_of};
use meds::MedReport;
use rouge::{RougeScore, RougeScores};
use safety::Flag;
use serde::Serialize;

/// One example to score. `source` enables the medication and emergency checks; `task` qa adds
/// the answer-letter check. Emergency checks run for discharge (and unknown) tasks only: a QA
/// vignette is not the patient's, and a SOAP note is written for clinicians.
#[derive(Debug, Clone, Copy)]
pub struct ExampleInput<'a> {
    pub prediction: &'a str,
    pub reference: &'a str,
    pub source: Option<&'a str>,
    pub task: Option<Task>,
}

/// The per-example metrics of the contract (predictions.jsonl's "metrics").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExampleMetrics {
    #[serde(flatten)]
    pub rouge: RougeScores,
    /// Sentence BLEU, 0..100.
    pub bleu: f64,
    /// Reading level of the prediction; null for a prediction without words.
    pub fkgl: Option<f64>,
    pub fre: Option<f64>,
    pub smog: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meds: Option<MedReport>,
    pub safety: Vec<Flag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
}

/// An example's metrics plus what the corpus summary needs besides them.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleScore {
    pub metrics: ExampleMetrics,
    pub bleu_stats: BleuStats,
    /// Predicted and gold answer letter, for QA examples whose reference has a letter.
    pub answer: Option<qa::AnswerPair>,
}

/// Scores one example.
pub fn score_example(input: &ExampleInput) -> ExampleScore {
    let bleu_stats = bleu::stats(input.reference, input.prediction);
    let read = readability::readability(input.prediction);
    let output_meds = meds::extract(input.prediction);
    let source_meds = input.source.map(meds::extract).unwrap_or_default();
    let is_qa = input.task == Some(Task::Qa);
    let answer = is_qa
        .then(|| qa::answer_letter(input.reference))
        .flatten()
        .map(|gold| (qa::answer_letter(input.prediction), gold));
    ExampleScore {
        metrics: ExampleMetrics {
            rouge: rouge::rouge(input.reference, input.prediction),
            bleu: bleu::score(&bleu_stats, true),
            fkgl: read.fkgl,
            fre: read.fre,
            smog: read.smog,
            meds: input.source.map(|s| meds::compare(s, input.prediction)),
            safety: safety::flags(
                input.source,
                input.prediction,
                &source_meds,
                &output_meds,
                matches!(input.task, None | Some(Task::Discharge)),
            ),
            correct: answer.map(|(p, g)| p == Some(g)),
        },
        bleu_stats,
        answer,
    }
}

/// Precision, recall and F1 of one ROUGE variant over a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RougeInterval {
    pub precision: Interval,
    pub recall: Interval,
    pub fmeasure: Interval,
}

/// Medication errors per example over the examples that have a source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MedRates {
    pub hallucinated_per_example: Interval,
    pub omitted_per_example: Interval,
    pub mismatched_per_example: Interval,
}

/// The "corpus" object of eval.json: every value with its 95% bootstrap interval. ROUGE and
/// readability are means of the per-example values; BLEU is corpus BLEU from summed statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusMetrics {
    pub rouge1: RougeInterval,
    pub rouge2: RougeInterval,
    #[serde(rename = "rougeL")]
    pub rouge_l: RougeInterval,
    #[serde(rename = "rougeLsum")]
    pub rouge_lsum: RougeInterval,
    pub bleu: Interval,
    pub fkgl: Option<Interval>,
    pub fre: Option<Interval>,
    pub smog: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meds: Option<MedRates>,
}

/// Teacher-forced loss of one example: summed negative log-likelihood and its token count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLoss {
    pub nll: f64,
    pub tokens: usize,
}

/// Summarizes scored examples (at least one). `losses`, one per example when given, adds
/// perplexity: exp of the total NLL over the total token count.
pub fn corpus(examples: &[ExampleScore], losses: Option<&[TokenLoss]>) -> Option<CorpusMetrics> {
    let n = examples.len();
    let mean = |get: &dyn Fn(&ExampleMetrics) -> Option<f64>| {
        let values: Vec<Option<f64>> = examples.iter().map(|e| get(&e.metrics)).collect();
        interval(n, |ix| mean_of(&values, ix))
    };
    let rouge = |pick: fn(&RougeScores) -> RougeScore| -> Option<RougeInterval> {
        Some(RougeInterval {
            precision: mean(&|m| Some(pick(&m.rouge).precision))?,
            recall: mean(&|m| Some(pick(&m.rouge).recall))?,
            fmeasure: mean(&|m| Some(pick(&m.rouge).fmeasure))?,
        })
    };
    let bleu = interval(n, |ix| {
        Some(bleu::corpus_bleu(
            ix.iter().map(|&i| &examples[i].bleu_stats),
        ))
    })?;
    let perplexity = losses.filter(|l| l.len() == n).and_then(|l| {
        interval(n, |ix| {
            let tokens: usize = ix.iter().map(|&i| l[i].tokens).sum();
            let nll: f64 = ix.iter().map(|&i| l[i].nll).sum();
            (tokens > 0).then(|| (nll / tokens as f64).exp())
        })
    });
    let answers: Vec<Option<qa::AnswerPair>> = examples.iter().map(|e| e.answer).collect();
    let qa_stat = |f: fn(&[qa::AnswerPair]) -> Option<f64>| {
        interval(n, |ix| {
            let pairs: Vec<_> = ix.iter().filter_map(|&i| answers[i]).collect();
            f(&pairs)
        })
    };
    let med_rate = |get: fn(&MedReport) -> usize| mean(&|m| m.meds.as_ref().map(|r| get(r) as f64));
    let meds = (|| {
        Some(MedRates {
            hallucinated_per_example: med_rate(|r| r.hallucinated.len())?,
            omitted_per_example: med_rate(|r| r.omitted.len())?,
            mismatched_per_example: med_rate(|r| r.mismatched.len())?,
        })
    })();
    Some(CorpusMetrics {
        rouge1: rouge(|r| r.rouge1)?,
        rouge2: rouge(|r| r.rouge2)?,
        rouge_l: rouge(|r| r.rouge_l)?,
        rouge_lsum: rouge(|r| r.rouge_lsum)?,
        bleu,
        fkgl: mean(&|m| m.fkgl),
        fre: mean(&|m| m.fre),
        smog: mean(&|m| m.smog),
        perplexity,
        accuracy: qa_stat(qa::accuracy),
        macro_f1: qa_stat(qa::macro_f1),
        meds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_serializes_as_the_contract_says() {
        let s = score_example(&ExampleInput {
            prediction: "Answer: B. Take Lasix 40 mg daily.",
            reference: "Answer: B. Furosemide.",
            source: Some("Furosemide 40 mg PO daily"),
            task: Some(Task::Qa),
        });
        let v = serde_json::to_value(&s.metrics).expect("json");
        for key in [
            "rouge1",
            "rouge2",
            "rougeL",
            "rougeLsum",
            "bleu",
            "fkgl",
            "fre",
            "smog",
            "meds",
            "safety",
            "correct",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["rougeL"].as_object().map(|o| o.len()), Some(3));
        assert_eq!(v["correct"], true);
        let empty = score_example(&ExampleInput {
            prediction: "",
            reference: "x",
            source: None,
            task: None,
        });
        let v = serde_json::to_value(&empty.metrics).expect("json");
        assert!(v["fkgl"].is_null() && v.get("meds").is_none() && v.get("correct").is_none());
    }

    #[test]
    fn corpus_bleu_sums_statistics_and_has_intervals() {
        let pairs = [
            ("the cat sat on the mat", "the cat sat on a mat"),
            ("a b c d e", "a b c x y"),
        ];
        let scored: Vec<ExampleScore> = pairs
            .iter()
            .map(|(r, p)| {
                score_example(&ExampleInput {
                    prediction: p,
                    reference: r,
                    source: None,
                    task: None,
                })
            })
            .collect();
        let c = corpus(&scored, None).expect("corpus");
        let stats: Vec<_> = scored.iter().map(|s| s.bleu_stats).collect();
        assert_eq!(c.bleu.value, bleu::corpus_bleu(&stats));
        assert!(c.rouge1.fmeasure.low <= c.rouge1.fmeasure.value);
        assert!(c.accuracy.is_none() && c.meds.is_none() && c.perplexity.is_none());
    }
}
