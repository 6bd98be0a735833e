//! Explanations on the engine thread: `crate::analysis::explain::explain_record` with progress
//! per scored batch and generated output, the engine's cancel checked between them.

use super::{Event, JobContext, JobError};
use crate::analysis::explain::{ExplainError, ExplainRequest, explain_record};
use crate::eval::job::Target;

pub(super) fn name(request: &ExplainRequest) -> String {
    let model = match &request.target {
        Target::Base => "the base model".to_string(),
        Target::Run(id) => format!("run {id}"),
    };
    format!(
        "Explain {} ({}, {model})",
        request.record,
        request.settings.method.label()
    )
}

pub(super) fn run(ctx: &JobContext, request: ExplainRequest) -> Result<Event, JobError> {
    let (explanation, path) = explain_record(
        &request,
        &|| ctx.is_cancelled(),
        &mut |stage, done, total| {
            ctx.progress(stage, done as u64, total as u64);
            !ctx.is_cancelled()
        },
    )
    .map_err(|e| match e {
        ExplainError::Cancelled => JobError::Cancelled,
        e => JobError::Failed(super::model::first_line(&e.to_string())),
    })?;
    Ok(Event::Explained {
        job: ctx.job,
        explanation: Box::new(explanation),
        path,
    })
}
