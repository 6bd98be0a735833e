//! `lablens eval`: generate over a split with a run's adapter (or the base model), score every
//! output, and write predictions.jsonl and eval.json; progress on stderr, summary on stdout.

use super::CliError;
use super::progress::{JobBar, job_err};
use crate::data::record::Split;
use crate::eval::job::target::Target;
use crate::eval::job::{EvalOptions, evaluate};
use crate::job::{Job, Progress};
use std::path::PathBuf;

/// A project and which of its models: a run's adapter or the base model.
#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    /// The project folder.
    #[arg(long)]
    pub project: PathBuf,
    /// A run id under the project's runs/ (as a model: its final adapter, else its last
    /// checkpoint).
    #[arg(long, conflicts_with = "base", required_unless_present = "base")]
    pub run: Option<String>,
    /// The project's model without an adapter (its files are in the project's base/).
    #[arg(long)]
    pub base: bool,
}

impl TargetArgs {
    pub fn target(&self) -> Target {
        match &self.run {
            Some(run) => Target::Run(run.clone()),
            None => Target::Base,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// train, validation or test.
    #[arg(long, default_value = "test")]
    pub split: String,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Records generated together (each gets what it would alone; scripts/bench-eval.sh
    /// measures batches against one at a time).
    #[arg(long, default_value_t = crate::eval::job::DEFAULT_BATCH)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// A dataset of the project by name; default: the run's.
    #[arg(long)]
    pub dataset: Option<String>,
}

fn split_of(name: &str) -> Result<Split, CliError> {
    Split::ALL
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            CliError::usage(format!(
                "--split: {name:?} is not train, validation or test"
            ))
        })
}

pub fn eval_cmd(args: &EvalArgs, json_out: bool) -> Result<(), CliError> {
    let project = super::commands::open_project(&args.target.project)?;
    let target = args.target.target();
    let opts = EvalOptions {
        dataset: args.dataset.clone(),
        ..EvalOptions::with(
            split_of(&args.split)?,
            args.limit,
            args.batch,
            args.max_new_tokens,
        )
    };
    let bar = JobBar::new("records");
    let mut show = |p: &Progress| bar.show(p);
    let summary = evaluate(
        &project,
        &target,
        &opts,
        None,
        &mut Job::unstopped(&mut show),
    )
    .map_err(job_err)?;
    drop(bar);
    let c = &summary.corpus;
    eprintln!(
        "{}: {} records, ROUGE-L F1 {:.4} [{:.4}, {:.4}], BLEU {:.2}, reading grade {}, {:.1} records/min",
        summary.out_dir.display(),
        summary.n,
        c.rouge_l.fmeasure.value,
        c.rouge_l.fmeasure.low,
        c.rouge_l.fmeasure.high,
        c.bleu.value,
        c.fkgl.map_or("-".into(), |g| format!("{:.1}", g.value)),
        summary.records_per_minute,
    );
    if summary.outputs_cut > 0 {
        eprintln!(
            "{} of {} outputs stopped at --max-new-tokens {} (or the model's context) before the \
             model ended them: they are marked as cut",
            summary.outputs_cut, summary.n, args.max_new_tokens
        );
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| CliError::failed(e.to_string()))?
        );
    }
    Ok(())
}
