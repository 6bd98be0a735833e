//! LoRA fine-tuning: the configuration, data to batches, AdamW, run folders with atomic
//! checkpoints, and the loop that the CLI and the engine drive.

pub mod batches;
pub mod config;
pub mod events;
pub mod memory;
pub mod optim;
mod phase_clock;
pub mod pretrain;
pub mod run;
pub mod session;
pub mod trainer;

use crate::job::JobError;

pub use config::{FieldError, TrainConfig};
pub use events::{StepMetrics, TrainEvent, TrainSummary, validating_text};
pub use trainer::{RunOptions, train};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<FieldError>),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error(
        "the loss became {loss} at step {step}; the run stopped and kept its last good checkpoint ({kept})"
    )]
    Diverged {
        step: usize,
        loss: f64,
        kept: String,
    },
    #[error("computation failed: {0}")]
    Compute(String),
    /// The run is locked by a live process (training or resuming it).
    #[error("{0}")]
    Busy(String),
}

impl TrainError {
    pub(crate) fn compute(e: candle_core::Error) -> TrainError {
        TrainError::Compute(e.to_string())
    }

    /// Whether the input was at fault (exit code 2) rather than the job (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            TrainError::Config(_) | TrainError::Data(_) | TrainError::Model(_)
        )
    }
}

impl From<TrainError> for JobError {
    fn from(e: TrainError) -> JobError {
        match e {
            TrainError::Run(run::RunError { path, message }) => JobError::File { path, message },
            TrainError::Busy(m) => JobError::Busy(m),
            e if e.is_bad_input() => JobError::Usage(e.to_string()),
            e => JobError::Model(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
