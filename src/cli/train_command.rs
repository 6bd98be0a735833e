//! `lablens train` and `lablens runs`: LoRA training of a project's dataset from the command
//! line, with a progress bar on stderr and the run's summary as JSON on stdout.

use super::CliError;
use crate::job::Control;
use crate::project::OpenProject;
use crate::train::run::list_runs;
use crate::train::{RunOptions, TrainConfig, TrainError, TrainEvent, train};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[arg(long)]
    pub project: PathBuf,
    /// A TrainConfig in RON (see a run's config.ron); default: the preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// discharge or quick-demo (the default); its learning rate is chosen by the model's size.
    #[arg(long)]
    pub preset: Option<String>,
    /// The model to train: a Hugging Face folder, a .gguf file or `tiny` (over the preset's or
    /// the --config file's).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// A run id under the project's runs/ (or a run folder) to continue from its last checkpoint.
    #[arg(long)]
    pub resume: Option<String>,
    /// Write batches.jsonl (the token ids of every step), for reference runs in other tools.
    #[arg(long)]
    pub record_batches: bool,
}

fn open_project(path: &Path) -> Result<OpenProject, CliError> {
    crate::cli::commands::open_project(path)
}

/// The configuration: a preset (default quick-demo), then a RON file over it, then flags.
pub fn config(args: &TrainArgs) -> Result<TrainConfig, CliError> {
    let mut cfg = match &args.preset {
        Some(name) => TrainConfig::preset(name).ok_or_else(|| {
            CliError::usage(format!(
                "--preset: no preset {name:?} (there are {:?})",
                crate::train::config::PRESETS
            ))
        })?,
        None => TrainConfig::default(),
    };
    if let Some(path) = &args.config {
        let (read, warnings) = crate::train::session::read_config_noting(path)
            .map_err(|e| CliError::usage(format!("--config: {e}")))?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        cfg = read;
    }
    if args.max_steps.is_some() {
        cfg.max_steps = args.max_steps;
    }
    if let Some(model) = &args.model {
        cfg.model = model.clone();
    }
    Ok(cfg)
}

/// How `lablens train` shows a run on stderr: a bar of steps with the loss, the rate and the
/// ETA, and a line for each validation and note.
pub struct TrainBar(ProgressBar);

impl TrainBar {
    pub fn new() -> TrainBar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        TrainBar(bar)
    }

    /// A line above the bar (on stderr by itself where the bar is hidden, as in a log file).
    fn line(&self, text: impl AsRef<str>) {
        if self.0.is_hidden() {
            eprintln!("{}", text.as_ref());
        } else {
            self.0.println(text);
        }
    }

    pub fn show(&self, event: TrainEvent) {
        let bar = &self.0;
        match event {
            TrainEvent::Started {
                run_id,
                total_steps,
                resumed_from,
                notes,
                ..
            } => {
                for n in notes {
                    self.line(n);
                }
                if let Some(step) = resumed_from {
                    self.line(format!("resuming {run_id} from step {step}"));
                    bar.set_position(step as u64);
                } else {
                    self.line(format!("run {run_id}"));
                }
                bar.set_length(total_steps as u64);
            }
            TrainEvent::Step(m) => {
                bar.set_position(m.step as u64);
                bar.set_message(format!(
                    "loss {:.4}  lr {:.2e}  {:.0} tokens/s",
                    m.loss, m.lr, m.tokens_per_s
                ));
            }
            TrainEvent::Eval {
                step,
                val_loss,
                best,
            } => self.line(format!(
                "step {step}: validation loss {val_loss:.4}{}",
                if best { " (best)" } else { "" }
            )),
            TrainEvent::Validating {
                step, done, total, ..
            } => {
                if step == 0 && done == 0 {
                    self.line(format!(
                        "validating before training ({total} examples): the untrained adapter's loss"
                    ));
                }
                bar.set_message(crate::train::validating_text(step, done, total));
            }
            TrainEvent::Checkpoint { .. } => {}
        }
    }
}

impl Default for TrainBar {
    fn default() -> Self {
        TrainBar::new()
    }
}

impl Drop for TrainBar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// The run options of `args`, as `lablens train` trains with them.
pub fn run_options(args: &TrainArgs) -> RunOptions {
    RunOptions {
        resume: args.resume.clone(),
        record_batches: args.record_batches,
        // A --config file's rate is the user's; a preset's suits the model.
        suited_lr: args.config.is_none(),
    }
}

/// A training error as an exit code: 2 for bad input, 1 for the rest.
pub fn train_err(e: TrainError) -> CliError {
    if e.is_bad_input() {
        CliError::usage(e.to_string())
    } else {
        CliError::failed(e.to_string())
    }
}

pub fn train_cmd(args: &TrainArgs, json_out: bool) -> Result<(), CliError> {
    let project = open_project(&args.project)?;
    let cfg = config(args)?;
    let opts = run_options(args);
    let bar = TrainBar::new();
    let control = Control::default();
    let result = train(&project, &cfg, &opts, &control, &mut |event| {
        bar.show(event)
    });
    drop(bar);
    let summary = result.map_err(train_err)?;
    eprintln!(
        "{}: {:?} after {} steps, {:.0} tokens/s, train loss {}, validation loss {}",
        summary.run_dir.display(),
        summary.status,
        summary.steps,
        summary.tokens_per_s,
        summary
            .final_train_loss
            .map_or("-".into(), |l| format!("{l:.4}")),
        summary
            .final_val_loss
            .map_or("-".into(), |l| format!("{l:.4}")),
    );
    if json_out {
        let value = json!({
            "run_id": summary.run_id,
            "run_dir": summary.run_dir,
            "status": summary.status,
            "steps": summary.steps,
            "train_tokens": summary.train_tokens,
            "tokens_per_s": summary.tokens_per_s,
            "final_train_loss": summary.final_train_loss,
            "final_val_loss": summary.final_val_loss,
            "best_step": summary.best_step,
            "peak_rss_mb": peak_rss_mb(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| CliError::failed(e.to_string()))?
        );
    }
    Ok(())
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn runs_cmd(project: &Path, json_out: bool) -> Result<(), CliError> {
    let project = open_project(project)?;
    let runs = list_runs(&project.dir);
    if json_out {
        let rows: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                json!({"run_id": r.id, "run_dir": r.dir, "status": r.status, "message": r.message,
                       "step": r.step, "total_steps": r.total_steps,
                       "best_val_loss": r.best_val_loss, "elapsed_s": r.elapsed_s})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"runs": rows}))
                .map_err(|e| CliError::failed(e.to_string()))?
        );
        return Ok(());
    }
    for r in runs {
        println!(
            "{}  {:?}  step {}/{}  best val {}  {:.0}s  {}",
            r.id,
            r.status,
            r.step,
            r.total_steps,
            r.best_val_loss.map_or("-".into(), |l| format!("{l:.4}")),
            r.elapsed_s,
            r.message
        );
    }
    Ok(())
}
