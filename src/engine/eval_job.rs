//! Evaluation on the engine thread: `crate::eval::job::evaluate` over a split, progress per
//! batch with an ETA, the engine's cancel checked between batches (a later start continues).

use super::{Event, JobContext};
use crate::eval::job::target::Target;
use crate::eval::job::{EvalOptions, EvalSummary, evaluate};
use crate::job::JobError;
use crate::model::loading::LoadedModel;
use crate::project::OpenProject;
use std::path::PathBuf;

/// A run's adapter (or the base model) to evaluate over a split of the project.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub project_dir: PathBuf,
    pub target: Target,
    pub options: EvalOptions,
}

impl EvalRequest {
    pub fn name(&self) -> String {
        match &self.target {
            Target::Base => "Evaluate the base model".to_string(),
            Target::Run(id) => format!("Evaluate run {id}"),
        }
    }
}

pub(super) fn run(
    ctx: &JobContext,
    kept: Option<&mut LoadedModel>,
    request: EvalRequest,
) -> Result<Event, JobError> {
    let project = OpenProject::open(&request.project_dir)
        .map_err(|e| JobError::Usage(format!("could not open the project: {e}")))?;
    let summary: EvalSummary =
        ctx.run(|job| evaluate(&project, &request.target, &request.options, kept, job))?;
    Ok(Event::Evaluated {
        job: ctx.job,
        summary: Box::new(summary),
    })
}
