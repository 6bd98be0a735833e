//! Evaluation on the engine thread: `crate::eval::job::evaluate` over a split, progress per
//! batch with an ETA, the engine's cancel checked between batches (a later start continues).

use super::{Event, JobContext, JobError};
use crate::eval::job::{EvalError, EvalEvent, EvalOptions, EvalSummary, Target, evaluate};
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

pub(super) fn run(ctx: &JobContext, request: EvalRequest) -> Result<Event, JobError> {
    let project = OpenProject::open(&request.project_dir)
        .map_err(|e| JobError::Failed(format!("could not open the project: {e}")))?;
    let summary: EvalSummary = evaluate(
        &project,
        &request.target,
        &request.options,
        &|| ctx.is_cancelled(),
        &mut |event| match event {
            EvalEvent::Started {
                total,
                already_done,
                ..
            } => ctx.progress("evaluating", already_done as u64, total as u64),
            EvalEvent::Batch { done, total } => {
                ctx.progress("evaluating", done as u64, total as u64)
            }
        },
    )
    .map_err(|e| match e {
        EvalError::Cancelled { .. } => JobError::Cancelled,
        e => JobError::Failed(super::model::first_line(&e.to_string())),
    })?;
    Ok(Event::Evaluated {
        job: ctx.job,
        summary: Box::new(summary),
    })
}
