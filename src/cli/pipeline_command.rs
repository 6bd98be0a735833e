//! `lablens pipeline`: train → eval → bias → register → gates → promote in one command, for a
//! user's CI. Each stage's progress as its own command shows it, a line per stage on stderr,
//! pipeline.json (the run's record of the stages) on stdout with `--json`, and an exit code
//! that says what came of it: 0 promoted or registered, 3 a gate failed, 4 worse than
//! production, 1 a job failed, 2 bad input.

use super::CliError;
use super::commands::open_project;
use super::progress::{JobBar, job_err};
use super::train_command::{TrainArgs, TrainBar, config, run_options};
use crate::registry::gates::GateResult;
use crate::registry::pipeline::{
    Given, Outcome, PipelineEvent, PipelineRecord, PipelineRequest, StageStatus, run_pipeline,
};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// The project and the training, as `lablens train` takes them; `--resume RUN` goes on with
    /// the pipeline of run RUN from the stages it finished.
    #[command(flatten)]
    pub train: TrainArgs,
    /// The registered model the run becomes a version of; default: the project folder's name.
    #[arg(long)]
    pub register: Option<String>,
    /// The alias moved to the new version when every gate passes (and, for production, it is
    /// not worse than the version in production).
    #[arg(long)]
    pub promote_to: Option<String>,
    /// A note recorded with the version.
    #[arg(long)]
    pub note: Option<String>,
    /// Records of the test split evaluated (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Records generated together by the evaluation (default 8, as `lablens eval`).
    #[arg(long)]
    pub batch: Option<usize>,
    /// The longest output the evaluation generates, in tokens (default 256).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
}

/// The bars of the stage under way.
#[derive(Default)]
struct View {
    train: Option<TrainBar>,
    job: Option<JobBar>,
}

impl View {
    fn show(&mut self, event: PipelineEvent) {
        match event {
            PipelineEvent::Stage {
                stage,
                status,
                note,
            } => {
                self.train = None;
                self.job = None;
                let note = note.map_or(String::new(), |n| format!(": {n}"));
                let status = match status {
                    StageStatus::Pending => "pending",
                    StageStatus::Running => "…",
                    StageStatus::Done => "done",
                    StageStatus::Failed => "FAILED",
                    StageStatus::Skipped => "skipped",
                };
                eprintln!("pipeline: {} {status}{note}", stage.name());
            }
            PipelineEvent::Train(e) => self.train.get_or_insert_with(TrainBar::new).show(e),
            PipelineEvent::Progress(p) => self
                .job
                .get_or_insert_with(|| JobBar::new("records"))
                .show(p),
            PipelineEvent::Note(n) => eprintln!("note: {n}"),
        }
    }
}

pub fn pipeline_cmd(args: &PipelineArgs, json_out: bool) -> Result<(), CliError> {
    let project = open_project(&args.train.project)?;
    let request = PipelineRequest {
        train: config(&args.train)?,
        train_options: run_options(&args.train),
        given: Given {
            model: args.register.clone(),
            promote_to: args.promote_to.clone(),
            note: args.note.clone(),
            eval_limit: args.limit,
            eval_batch: args.batch,
            max_new_tokens: args.max_new_tokens,
        },
    };
    let mut view = View::default();
    let report = run_pipeline(&project, &request, &mut |e| view.show(e)).map_err(job_err)?;
    drop(view);
    let r = &report.record;
    eprintln!("{}", summary(r));
    if json_out {
        let mut value = serde_json::to_value(r).unwrap_or_default();
        if let Some(obj) = value.as_object_mut() {
            obj.insert("pipeline_file".into(), json!(r.path()));
        }
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| CliError::failed(format!("could not write JSON: {e}")))?;
        println!("{text}");
    }
    match report.exit_code() {
        0 => Ok(()),
        code => Err(CliError {
            code,
            message: failure(r),
        }),
    }
}

/// `run 20261207-101500: demo version 3; gates 2/2 passed; production 2 → 3`.
fn summary(r: &PipelineRecord) -> String {
    let version = r.version.map_or("not registered".into(), |v| {
        format!("{} version {v}", r.settings.model)
    });
    let passed = r.gates.iter().filter(|g| g.passed()).count();
    let gates = match r.gates_passed {
        None => "gates not checked".to_string(),
        Some(_) if r.gates.is_empty() => "project.ron defines no gate".into(),
        Some(_) => format!("gates {passed}/{} passed", r.gates.len()),
    };
    let alias = r.alias.as_ref().map_or(String::new(), |a| {
        let from = a.from.map_or("none".into(), |v| format!("version {v}"));
        if a.moved {
            format!("; {} {from} → version {}", a.alias, a.to)
        } else {
            format!("; {} stays at {from}", a.alias)
        }
    });
    format!(
        "pipeline of run {} ({}): {version}; {gates}{alias}",
        r.run,
        r.path().display()
    )
}

/// Why the pipeline exits with another code than 0.
fn failure(r: &PipelineRecord) -> String {
    match r.outcome {
        Some(Outcome::GateFailed) => {
            let failed: Vec<String> = r
                .gates
                .iter()
                .filter(|g| !g.passed())
                .map(GateResult::describe)
                .collect();
            format!(
                "gates failed: {}; registered as version {}, no alias moved",
                failed.join("; "),
                r.version.map_or("-".into(), |v| v.to_string())
            )
        }
        Some(Outcome::Degraded) => format!(
            "not promoted, worse than production: {}",
            r.degradation
                .as_ref()
                .map_or("no comparison".into(), |d| d.describe())
        ),
        _ => {
            let failed = r.stages.iter().find(|s| s.status == StageStatus::Failed);
            match failed {
                Some(s) => format!(
                    "stage {} failed: {}; resume with --resume {}",
                    s.name.name(),
                    s.error.as_deref().unwrap_or("no message"),
                    r.run
                ),
                None => format!("the pipeline of run {} did not finish", r.run),
            }
        }
    }
}
