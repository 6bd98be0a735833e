//! `lablens metrics`: the evaluation metrics of given prediction/reference pairs, no model; and
//! the hidden `bench-rouge` that times the four stemmed ROUGE variants for the benchmark script.

use super::CliError;
use crate::data::record::Task;
use crate::eval::pairs::{PairRow, read_pairs};
use crate::eval::{
    CorpusMetrics, ExampleInput, ExampleMetrics, ExampleScore, corpus, rouge, score_example,
};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::time::Instant;

#[derive(Serialize)]
struct ExampleRow<'a> {
    id: &'a str,
    #[serde(flatten)]
    metrics: &'a ExampleMetrics,
}

fn read_rows(pred: &Path) -> Result<(Vec<PairRow>, Vec<String>), CliError> {
    let file = read_pairs(pred).map_err(|e| CliError::usage(e.to_string()))?;
    let issues: Vec<String> = file.issues.iter().map(ToString::to_string).collect();
    for issue in &issues {
        eprintln!("{issue}");
    }
    if file.rows.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no line with a prediction and a reference to score",
            pred.display()
        )));
    }
    Ok((file.rows, issues))
}

pub fn metrics_cmd(pred: &Path, task: Option<&str>, json: bool) -> Result<(), CliError> {
    let default_task = task
        .map(|t| {
            Task::parse(t).ok_or_else(|| {
                CliError::usage(format!(
                    "--task: unknown task {t:?}; expected discharge, soap or qa"
                ))
            })
        })
        .transpose()?;
    let (rows, issues) = read_rows(pred)?;
    let started = Instant::now();
    let scores: Vec<ExampleScore> = rows
        .iter()
        .map(|r| {
            score_example(&ExampleInput {
                prediction: &r.prediction,
                reference: &r.reference,
                source: r.source.as_deref(),
                task: r.task.or(default_task),
            })
        })
        .collect();
    let summary = corpus(&scores, None)
        .ok_or_else(|| CliError::failed("no corpus metrics could be computed"))?;
    eprintln!(
        "scored {} examples in {:.2}s{}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        if issues.is_empty() {
            String::new()
        } else {
            format!(" ({} lines with problems, listed above)", issues.len())
        }
    );
    if json {
        let examples: Vec<ExampleRow> = rows
            .iter()
            .zip(&scores)
            .map(|(r, s)| ExampleRow {
                id: &r.id,
                metrics: &s.metrics,
            })
            .collect();
        let doc = json!({"corpus": summary, "examples": examples, "issues": issues});
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| CliError::failed(format!("could not write JSON: {e}")))?;
        println!("{text}");
    } else {
        print_table(&rows, &scores, &summary);
    }
    Ok(())
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.1}"))
}

fn print_table(rows: &[PairRow], scores: &[ExampleScore], c: &CorpusMetrics) {
    println!(
        "{:<16} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>5} {:>5} {:>5} {:>5}",
        "id", "R1", "R2", "RL", "RLsum", "BLEU", "FKGL", "hall", "omit", "mism", "flags"
    );
    for (r, s) in rows.iter().zip(scores) {
        let m = &s.metrics;
        let meds = |f: fn(&crate::eval::meds::MedReport) -> usize| {
            m.meds
                .as_ref()
                .map_or("-".to_string(), |r| f(r).to_string())
        };
        println!(
            "{:<16} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.1} {:>5} {:>5} {:>5} {:>5} {:>5}",
            r.id.chars().take(16).collect::<String>(),
            m.rouge.rouge1.fmeasure,
            m.rouge.rouge2.fmeasure,
            m.rouge.rouge_l.fmeasure,
            m.rouge.rouge_lsum.fmeasure,
            m.bleu,
            opt(m.fkgl),
            meds(|r| r.hallucinated.len()),
            meds(|r| r.omitted.len()),
            meds(|r| r.mismatched.len()),
            m.safety.len()
        );
    }
    println!(
        "\ncorpus (n = {}), value [95% bootstrap interval]:",
        rows.len()
    );
    let line = |name: &str, i: &crate::eval::bootstrap::Interval| {
        println!(
            "  {name:<28} {:>8.4} [{:.4}, {:.4}]",
            i.value, i.low, i.high
        );
    };
    for (name, r) in [
        ("ROUGE-1", &c.rouge1),
        ("ROUGE-2", &c.rouge2),
        ("ROUGE-L", &c.rouge_l),
        ("ROUGE-Lsum", &c.rouge_lsum),
    ] {
        line(&format!("{name} F1"), &r.fmeasure);
    }
    line("BLEU (corpus)", &c.bleu);
    for (name, i) in [
        ("Flesch-Kincaid grade", &c.fkgl),
        ("Flesch reading ease", &c.fre),
        ("SMOG", &c.smog),
        ("QA accuracy", &c.accuracy),
        ("QA macro-F1", &c.macro_f1),
    ] {
        if let Some(i) = i {
            line(name, i);
        }
    }
    if let Some(m) = &c.meds {
        line("hallucinated meds / example", &m.hallucinated_per_example);
        line("omitted meds / example", &m.omitted_per_example);
        line("mismatched fields / example", &m.mismatched_per_example);
    }
}

/// Times the four stemmed ROUGE variants over every pair of `pairs` on one thread.
pub fn bench_rouge_cmd(pairs: &Path) -> Result<(), CliError> {
    let (rows, _) = read_rows(pairs)?;
    let started = Instant::now();
    let scores: Vec<_> = rows
        .iter()
        .map(|r| rouge::rouge(&r.reference, &r.prediction))
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    let n = scores.len() as f64;
    let mean = |f: fn(&rouge::RougeScores) -> f64| scores.iter().map(f).sum::<f64>() / n;
    let doc = json!({
        "pairs": scores.len(),
        "seconds": seconds,
        "mean_fmeasure": {
            "rouge1": mean(|s| s.rouge1.fmeasure),
            "rouge2": mean(|s| s.rouge2.fmeasure),
            "rougeL": mean(|s| s.rouge_l.fmeasure),
            "rougeLsum": mean(|s| s.rouge_lsum.fmeasure),
        },
    });
    println!("{doc}");
    Ok(())
}
