//! What a run reports while it trains and when it ends.

use super::run::RunStatus;
use serde::Serialize;
use std::path::PathBuf;

/// One optimizer step, as written to `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepMetrics {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    Started {
        run_id: String,
        run_dir: PathBuf,
        total_steps: usize,
        resumed_from: Option<usize>,
        notes: Vec<String>,
    },
    Step(StepMetrics),
    /// A validation pass under way at `step` (0: the first, before training): `done` of `total`
    /// validation examples scored, and the seconds it has left at its rate so far.
    Validating {
        step: usize,
        done: usize,
        total: usize,
        eta_s: Option<f64>,
    },
    Eval {
        step: usize,
        val_loss: f64,
        best: bool,
    },
    Checkpoint {
        step: usize,
    },
}

/// The phase a validation pass is, in words: `validating before training: 8 of 32 examples`.
pub fn validating_text(step: usize, done: usize, total: usize) -> String {
    let when = if step == 0 {
        "validating before training".to_string()
    } else {
        format!("validating at step {step}")
    };
    format!("{when}: {done} of {total} examples")
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainSummary {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub status: RunStatus,
    pub steps: usize,
    pub train_tokens: usize,
    pub tokens_per_s: f64,
    pub final_train_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub best_step: Option<usize>,
}
