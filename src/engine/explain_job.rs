//! Explanations on the engine thread: `crate::analysis::explain::explain_record` with progress
//! per scored batch and generated output, the engine's cancel checked between them.

use super::{Event, JobContext};
use crate::analysis::explain::{ExplainRequest, explain_record};
use crate::eval::job::target::Target;
use crate::job::JobError;
use crate::model::loading::LoadedModel;

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

pub(super) fn run(
    ctx: &JobContext,
    kept: Option<&mut LoadedModel>,
    request: ExplainRequest,
) -> Result<Event, JobError> {
    let (explanation, path) = ctx.run(|job| explain_record(&request, kept, job))?;
    Ok(Event::Explained {
        job: ctx.job,
        explanation: Box::new(explanation),
        path,
    })
}
