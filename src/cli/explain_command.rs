//! `lablens explain`: which parts of a record's input drove the model's output (LIME, saliency,
//! section ablation, input length), written to the run's `explain/<record>.json`; with
//! `--method sections --split S` section importance averaged over a split.

use super::CliError;
use super::eval_command::TargetArgs;
use super::progress::{JobBar, job_err};
use crate::analysis::explain::{
    ExplainRequest, ExplainSettings, Explanation, FeatureKind, FeatureWeight, Method, SplitRequest,
    TargetText, explain_record, explain_split,
};
use crate::data::record::Split;
use crate::job::{Job, Progress};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub model: TargetArgs,
    /// The record's id in the run's dataset.
    #[arg(long, required_unless_present = "split")]
    pub record: Option<String>,
    /// lime, saliency, sections or length.
    #[arg(long, default_value = "lime")]
    pub method: String,
    /// LIME's perturbed samples.
    #[arg(long, default_value_t = 256)]
    pub samples: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// output (the model's own), reference, or medication:NAME (one mention in the output).
    #[arg(long, default_value = "output")]
    pub target: String,
    /// LIME's features: words, sentences or sections.
    #[arg(long, default_value = "words")]
    pub features: String,
    /// With --method sections: average over this split (train, validation, test) instead of
    /// explaining one record.
    #[arg(long, conflicts_with = "record")]
    pub split: Option<String>,
    /// With --split: at most this many records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Perturbed inputs scored in one forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// A dataset of the project by name; default: the run's.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Also write LIME's perturbed inputs as dataset records (for scripts/bench-explain.sh).
    #[arg(long, hide = true)]
    pub write_samples: Option<PathBuf>,
}

fn settings(args: &ExplainArgs) -> Result<ExplainSettings, CliError> {
    let method = Method::parse(&args.method).ok_or_else(|| {
        CliError::usage(format!(
            "--method: {:?} is not lime, saliency, sections or length",
            args.method
        ))
    })?;
    let target = TargetText::parse(&args.target).ok_or_else(|| {
        CliError::usage(format!(
            "--target: {:?} is not output, reference or medication:NAME",
            args.target
        ))
    })?;
    let features = FeatureKind::parse(&args.features).ok_or_else(|| {
        CliError::usage(format!(
            "--features: {:?} is not words, sentences or sections",
            args.features
        ))
    })?;
    if args.batch == 0 {
        return Err(CliError::usage("--batch must be at least 1"));
    }
    Ok(ExplainSettings {
        method,
        features,
        target,
        samples: args.samples,
        seed: args.seed,
        batch: args.batch,
        max_new_tokens: args.max_new_tokens,
        samples_out: args.write_samples.clone(),
        ..ExplainSettings::default()
    })
}

pub fn explain_cmd(args: &ExplainArgs, json_out: bool) -> Result<(), CliError> {
    let settings = settings(args)?;
    let target = args.model.target();
    let bar = JobBar::new("");
    let mut show = |p: &Progress| bar.show(p);
    if let Some(split) = &args.split {
        if settings.method != Method::Sections {
            return Err(CliError::usage("--split goes with --method sections"));
        }
        let split = Split::ALL
            .into_iter()
            .find(|s| s.name() == split)
            .ok_or_else(|| {
                CliError::usage(format!(
                    "--split: {split:?} is not train, validation or test"
                ))
            })?;
        let request = SplitRequest {
            project_dir: args.model.project.clone(),
            target,
            split,
            limit: args.limit,
            settings,
            dataset: args.dataset.clone(),
        };
        let result = explain_split(&request, None, &mut Job::unstopped(&mut show));
        drop(bar);
        let (report, file) = result.map_err(job_err)?;
        eprintln!("{}: {} records", file.display(), report.records);
        for s in &report.sections {
            eprintln!(
                "  {:28} n={:3}  log-likelihood {:+9.3}  ROUGE-L {:+.4}",
                s.section, s.n, s.loglik_change, s.rouge_l_change
            );
        }
        if json_out {
            print_json(serde_json::json!({"file": file, "report": report}))?;
        }
        return Ok(());
    }
    let request = ExplainRequest {
        project_dir: args.model.project.clone(),
        target,
        record: args.record.clone().unwrap_or_default(),
        settings: settings.clone(),
        dataset: args.dataset.clone(),
    };
    let result = explain_record(&request, None, &mut Job::unstopped(&mut show));
    drop(bar);
    let (explanation, file) = result.map_err(job_err)?;
    eprintln!("{}", file.display());
    summarize(&explanation, settings.method);
    if json_out {
        let mut value =
            serde_json::to_value(&explanation).map_err(|e| CliError::failed(e.to_string()))?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("file".into(), serde_json::json!(file));
            fields.insert("method".into(), serde_json::json!(settings.method.name()));
        }
        print_json(value)?;
    }
    Ok(())
}

fn print_json(value: serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(&value).map_err(|e| CliError::failed(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// The ten strongest weights, strongest first.
fn top(weights: &[FeatureWeight]) -> Vec<&FeatureWeight> {
    let mut sorted: Vec<&FeatureWeight> = weights.iter().collect();
    sorted.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
    sorted.truncate(10);
    sorted
}

fn print_top(weights: &[FeatureWeight]) {
    for w in top(weights) {
        let label: String = w.label.chars().take(60).collect();
        eprintln!("  {:+10.4}  {label}", w.weight);
    }
}

/// What the method found, for a reader on stderr.
fn summarize(e: &Explanation, method: Method) {
    match method {
        Method::Lime => {
            if let Some(l) = &e.lime {
                let s = &l.result.scoring;
                eprintln!(
                    "LIME ({} {}, {} samples): intercept {:.3}, weighted R^2 {:.3}; scored {} tokens in {:.1}s ({:.0} tokens/s)",
                    l.result.weights.len(),
                    l.result.features.name(),
                    l.result.samples,
                    l.result.intercept,
                    l.result.r2,
                    s.tokens,
                    s.seconds,
                    s.tokens_per_s
                );
                print_top(&l.result.weights);
            }
        }
        Method::Saliency => {
            if let Some(s) = &e.saliency {
                eprintln!(
                    "saliency over {} input tokens in {:.2}s",
                    s.result.tokens.len(),
                    s.result.seconds
                );
                print_top(&s.result.words);
            }
        }
        Method::Sections => {
            if let Some(s) = &e.sections {
                eprintln!("{}", s.result.summary());
                for i in &s.result.sections {
                    eprintln!(
                        "  without {:28} log-likelihood {:+9.3}  ROUGE-L {:+.4}",
                        i.section, i.loglik_change, i.rouge_l_change
                    );
                }
            }
        }
        Method::Length => {
            if let Some(l) = &e.length {
                for p in &l.result.points {
                    eprintln!(
                        "  {:>4.0}% ({:4} words): log-likelihood/token {:8.4}  ROUGE-L {:.4}",
                        p.fraction * 100.0,
                        p.words,
                        p.loglik_per_token,
                        p.rouge_l
                    );
                }
            }
        }
    }
}
