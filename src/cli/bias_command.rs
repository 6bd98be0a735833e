//! `lablens bias`: the bias audit of a run's (or the base model's) predictions: slices by
//! demographic group with intervals, gaps, q-values and flags, optionally the counterfactual
//! test; writes bias.json beside predictions.jsonl, prints the report (or it as JSON).

use super::CliError;
use super::eval_command::TargetArgs;
use super::progress::{JobBar, job_err};
use crate::analysis::bias::counterfactual::CounterfactualReport;
use crate::analysis::bias::job::{BiasRequest, CounterfactualOptions, report_json, run};
use crate::analysis::bias::{BiasOptions, BiasReport, parse_dims};
use crate::eval::names::metric_label;
use crate::job::{Job, Progress};
use crate::model::generation::GenerationParams;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BiasArgs {
    /// The project, and the run (or --base) whose predictions.jsonl is audited.
    #[command(flatten)]
    pub target: TargetArgs,
    /// rougeL, rouge1, bleu, grade (fkgl), hallucinated (meds.hallucinated), loss, or any
    /// metric name of predictions.jsonl.
    #[arg(long, default_value = "rougeL")]
    pub metric: String,
    /// Relative gap to overall beyond which a significant slice is flagged (0.1 = 10%).
    #[arg(long, default_value_t = 0.10)]
    pub threshold: f64,
    /// Dimensions to slice by; their pairwise intersections are sliced too.
    #[arg(long, default_value = "gender,age_group,ethnicity")]
    pub dims: String,
    /// Only the dimensions alone, no intersections.
    #[arg(long)]
    pub no_intersections: bool,
    /// Slices with fewer records are shown but never flagged.
    #[arg(long, default_value_t = 20)]
    pub min_size: usize,
    /// Seeds the bootstrap intervals and the permutation tests.
    #[arg(long, default_value_t = crate::eval::bootstrap::SEED)]
    pub seed: u64,
    /// Random relabellings per permutation test.
    #[arg(long, default_value_t = 9_999)]
    pub permutations: usize,
    /// Also swap the demographic mentions of the inputs and generate again with the model.
    #[arg(long)]
    pub counterfactual: bool,
    /// Records the counterfactual test generates again.
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
    /// The longest output the counterfactual test generates, in tokens.
    #[arg(long, default_value_t = 160)]
    pub max_new_tokens: usize,
}

impl BiasArgs {
    fn request(&self) -> Result<BiasRequest, CliError> {
        let dims = parse_dims(&self.dims).map_err(|e| CliError::usage(format!("--dims: {e}")))?;
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(CliError::usage(format!(
                "--threshold: {} is not between 0 and 1 (0.1 is 10%)",
                self.threshold
            )));
        }
        let project = &self.target.project;
        let project_dir = match project.extension() {
            Some(e) if e == "ron" => project.parent().map(PathBuf::from).unwrap_or_default(),
            _ => project.clone(),
        };
        Ok(BiasRequest {
            project_dir,
            target: self.target.target(),
            options: BiasOptions {
                metric: self.metric.clone(),
                dims,
                intersections: !self.no_intersections,
                threshold: self.threshold,
                min_size: self.min_size,
                permutations: self.permutations,
                seed: self.seed,
                ..BiasOptions::default()
            },
            counterfactual: self.counterfactual.then(|| CounterfactualOptions {
                limit: self.limit,
                params: GenerationParams {
                    max_new_tokens: self.max_new_tokens,
                    ..GenerationParams::default()
                },
            }),
        })
    }
}

pub fn bias_cmd(args: &BiasArgs, json_out: bool) -> Result<(), CliError> {
    let request = args.request()?;
    let started = std::time::Instant::now();
    let bar = JobBar::new("records");
    let mut show = |p: &Progress| bar.show(p);
    let outcome = run(&request, None, &mut Job::unstopped(&mut show)).map_err(job_err)?;
    drop(bar);
    for issue in &outcome.issues {
        eprintln!("predictions.jsonl {issue}");
    }
    eprintln!(
        "audited {} slices of {} records in {:.2}s; wrote {}",
        outcome.report.slices.len(),
        outcome.report.overall.n,
        started.elapsed().as_secs_f64(),
        outcome.written.display()
    );
    if json_out {
        let value = report_json(&outcome.report, outcome.counterfactual.as_ref());
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| CliError::failed(format!("could not write JSON: {e}")))?;
        println!("{text}");
    } else {
        print_report(&outcome.report, outcome.counterfactual.as_ref());
    }
    Ok(())
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn print_report(r: &BiasReport, cf: Option<&CounterfactualReport>) {
    println!(
        "{} by group ({} records)",
        metric_label(&r.metric),
        r.overall.n
    );
    println!(
        "{:<40} {:>5} {:>8} {:>19} {:>8} {:>7} {:>8} {:>8}  flag",
        "slice", "n", "mean", "95% interval", "diff", "gap", "p", "q"
    );
    for s in &r.slices {
        let flag = match (s.flagged, s.small) {
            (true, _) => "FLAGGED",
            (false, true) => "small",
            _ => "",
        };
        let interval = if crate::analysis::bias::interval_estimable(s.ci) {
            format!("[{:>8.4}, {:>8.4}]", s.ci[0], s.ci[1])
        } else {
            format!("{:^20}", "not estimable")
        };
        println!(
            "{:<40} {:>5} {:>8.4} {interval} {:>+8.4} {:>7} {:>8} {:>8}  {flag}",
            s.dims.describe(),
            s.n,
            s.mean,
            s.diff_to_overall,
            s.relative_gap
                .map_or("-".into(), |g| format!("{:+.1}%", g * 100.0)),
            opt(s.p, 4),
            opt(s.q, 4)
        );
    }
    println!("\nFairlearn MetricFrame difference / ratio:");
    for (name, b) in &r.between_groups {
        let t = r.to_overall.get(name);
        println!(
            "  {name:<26} between groups {:.4} / {}   to overall {} / {}",
            b.difference,
            opt(b.ratio, 4),
            opt(t.map(|t| t.difference), 4),
            opt(t.and_then(|t| t.ratio), 4)
        );
    }
    println!();
    for line in r.findings.iter().chain(&r.mitigations) {
        println!("{line}");
    }
    if let Some(cf) = cf {
        println!(
            "\nCounterfactual test over {} records ({}):",
            cf.records,
            metric_label(&cf.metric)
        );
        for e in &cf.effects {
            println!(
                "  {:<10} {:>3} records: {:.0}% of outputs changed, output similarity {:.3}, \
                 metric shift {:+.4} (mean |shift| {:.4})",
                e.kind.name(),
                e.records,
                e.changed * 100.0,
                e.output_similarity,
                e.metric_shift,
                e.metric_abs_shift
            );
        }
    }
}
