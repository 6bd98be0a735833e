//! `lablens pretrain`: trains the embedded tiny model (tokenizer and weights) on dataset files.

use super::CliError;
use super::progress::{JobBar, job_err};
use crate::job::{Job, JobError, Progress};
use crate::train::pretrain::{Corpus, PretrainOptions, pretrain};
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn pretrain_cmd(
    corpus: &[PathBuf],
    out: &Path,
    steps: usize,
    seed: u64,
    json_out: bool,
) -> Result<(), CliError> {
    let corpus = Corpus::load(corpus).map_err(|e| CliError::usage(format!("--corpus: {e}")))?;
    for issue in &corpus.issues {
        eprintln!("skipped: {issue}");
    }
    eprintln!(
        "corpus: {} records (sha256 {})",
        corpus.records.len(),
        corpus.sha256.get(..12).unwrap_or(&corpus.sha256)
    );
    let opts = PretrainOptions {
        steps,
        seed,
        ..PretrainOptions::default()
    };
    let bar = JobBar::new("steps");
    let mut show = |p: &Progress| bar.show(p);
    let report =
        pretrain(&corpus, out, &opts, &mut Job::unstopped(&mut show)).map_err(|e| match e {
            JobError::Usage(m) => CliError::usage(format!("--corpus: {m}")),
            other => job_err(other),
        })?;
    drop(bar);
    eprintln!(
        "wrote {} ({:.2}M parameters, {:.1} MB) in {:.0}s; final loss {}",
        out.display(),
        report.parameters as f64 / 1e6,
        report.bytes as f64 / 1e6,
        report.elapsed_s,
        report.final_loss.map_or("-".into(), |l| format!("{l:.4}"))
    );
    if json_out {
        let value = json!({
            "out": report.out,
            "steps": report.steps,
            "final_loss": report.final_loss,
            "tokens_per_s": report.tokens_per_s,
            "parameters": report.parameters,
            "bytes": report.bytes,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| CliError::failed(e.to_string()))?
        );
    }
    Ok(())
}
