//! The audit of a project's prediction set, as the CLI and the engine run it: read the base
//! model's or a run's `predictions.jsonl`, audit it, optionally run the counterfactual test with
//! the same model, and write `bias.json` beside the predictions.

use super::counterfactual::{self, CounterfactualReport};
use super::{BiasError, BiasOptions, BiasReport, audit};
use crate::eval::job::BASE_DIR;
use crate::eval::job::target::{Target, acquire, resolve};
use crate::job::{Job, JobError};
use crate::model::generation::GenerationParams;
use crate::model::loading::LoadedModel;
use crate::project::OpenProject;
use crate::project::predictions::{
    LineIssue, PREDICTIONS_FILE, PredictionSet, PredictionSource, run_dir,
};
use std::path::{Path, PathBuf};

/// The counterfactual test's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterfactualOptions {
    /// Records generated again (each with every kind of swap it has).
    pub limit: usize,
    pub params: GenerationParams,
}

impl Default for CounterfactualOptions {
    fn default() -> Self {
        Self {
            limit: 30,
            params: GenerationParams {
                max_new_tokens: 160,
                ..GenerationParams::default()
            },
        }
    }
}

/// An audit of the base model's or a run's predictions.
#[derive(Debug, Clone)]
pub struct BiasRequest {
    pub project_dir: PathBuf,
    pub target: Target,
    pub options: BiasOptions,
    pub counterfactual: Option<CounterfactualOptions>,
}

impl BiasRequest {
    pub fn name(&self) -> String {
        let what = match &self.target {
            Target::Base => "the base model".to_string(),
            Target::Run(id) => format!("run {id}"),
        };
        match self.counterfactual {
            Some(_) => format!("Counterfactual test of {what}"),
            None => format!("Bias audit of {what}"),
        }
    }
}

/// What a finished audit wrote.
#[derive(Debug, Clone)]
pub struct BiasOutcome {
    pub report: BiasReport,
    pub counterfactual: Option<CounterfactualReport>,
    /// Lines of predictions.jsonl that were skipped or had a field ignored.
    pub issues: Vec<LineIssue>,
    pub written: PathBuf,
}

/// Where a target's predictions are: `base/predictions.jsonl` or `runs/<id>/predictions.jsonl`.
pub fn predictions_path(project_dir: &Path, target: &Target) -> PathBuf {
    match target {
        Target::Base => project_dir.join(BASE_DIR),
        Target::Run(id) => run_dir(project_dir, id),
    }
    .join(PREDICTIONS_FILE)
}

/// Reads a prediction file, saying how to make it when it is missing.
pub fn read_predictions(path: &Path) -> Result<PredictionSet, JobError> {
    if !path.is_file() {
        return Err(JobError::Usage(format!(
            "{}: not found; evaluate first (lablens eval --project P --run R, or --base)",
            path.display()
        )));
    }
    let source = PredictionSource {
        name: String::new(),
        path: path.to_path_buf(),
    };
    PredictionSet::read(source).map_err(|e| JobError::Usage(e.to_string()))
}

/// Runs the request; the counterfactual test reports its generations as progress, and a stop
/// ends it between records. `kept`, a model the caller keeps loaded, generates them when it holds
/// the target's weights.
pub fn run(
    request: &BiasRequest,
    kept: Option<&mut LoadedModel>,
    job: &mut Job,
) -> Result<BiasOutcome, JobError> {
    let path = predictions_path(&request.project_dir, &request.target);
    let set = read_predictions(&path)?;
    let usage = |e: BiasError| JobError::Usage(format!("{}: {e}", path.display()));
    let report = audit(&set.rows, &request.options).map_err(usage)?;
    let counterfactual = match &request.counterfactual {
        None => None,
        Some(opts) => {
            let project = OpenProject::open(&request.project_dir)
                .map_err(|e| JobError::Usage(format!("could not open the project: {e}")))?;
            let total = opts.limit.min(set.rows.len()) as u64;
            job.progress("loading the model", 0, total);
            let resolved = resolve(&project, &request.target, None, opts.params.max_new_tokens)?;
            let model = acquire(&resolved, kept)?;
            Some(counterfactual::run(
                &model,
                &set.rows,
                &report.metric,
                opts.limit,
                &opts.params,
                job,
            )?)
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let written =
        write_report(dir, &report, counterfactual.as_ref()).map_err(|e| JobError::file(dir, e))?;
    Ok(BiasOutcome {
        report,
        counterfactual,
        issues: set.issues,
        written,
    })
}

/// The report with the counterfactual test (when run) as one JSON document.
pub fn report_json(
    report: &BiasReport,
    counterfactual: Option<&CounterfactualReport>,
) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    if let (Some(obj), Some(cf)) = (value.as_object_mut(), counterfactual) {
        obj.insert(
            "counterfactual".into(),
            serde_json::to_value(cf).unwrap_or_default(),
        );
    }
    value
}

/// Writes `bias.json` into `dir`, atomically.
pub fn write_report(
    dir: &Path,
    report: &BiasReport,
    counterfactual: Option<&CounterfactualReport>,
) -> std::io::Result<PathBuf> {
    let path = dir.join(super::BIAS_FILE);
    let json = serde_json::to_vec_pretty(&report_json(report, counterfactual))
        .map_err(std::io::Error::other)?;
    crate::store::write_atomic(&path, &json)?;
    Ok(path)
}
