//! The contract every long job keeps, whoever runs it (a CLI command, or the GUI's engine thread):
//! training, pretraining, evaluation, the bias audit, explanations and opening a dataset.
//!
//! A job is given a [`Job`]: it reports how far it is as [`Progress`] (a stage, done of total,
//! and a line for people when there is more to say), and it looks at the job's [`Control`]
//! between units of work, so that a pause, a resume or a stop asked from another thread takes
//! effect there. It fails with a [`JobError`], which tells bad input (the user can fix it) from a
//! file, the model, a stop and a folder another process holds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

/// How far a job is.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// What it is doing: `loading the model`, `evaluating`, `counterfactual test`.
    pub stage: String,
    pub done: u64,
    pub total: u64,
    /// A line for people, where the stage has more to say than its counts.
    pub message: Option<String>,
}

/// Pause, resume and stop, asked from another thread; a job looks between units of work.
#[derive(Debug, Default)]
pub struct Control(AtomicU8);

const RUN: u8 = 0;
const PAUSE: u8 = 1;
const STOP: u8 = 2;

impl Control {
    pub const fn new() -> Self {
        Control(AtomicU8::new(RUN))
    }

    pub fn pause(&self) {
        // A stop already asked for wins.
        self.0
            .compare_exchange(RUN, PAUSE, Ordering::SeqCst, Ordering::SeqCst)
            .ok();
    }

    pub fn resume(&self) {
        self.0
            .compare_exchange(PAUSE, RUN, Ordering::SeqCst, Ordering::SeqCst)
            .ok();
    }

    pub fn stop(&self) {
        self.0.store(STOP, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.0.load(Ordering::SeqCst) == PAUSE
    }

    pub fn is_stopping(&self) -> bool {
        self.0.load(Ordering::SeqCst) == STOP
    }
}

/// What a job runs under: its control, and where its progress goes.
pub struct Job<'a> {
    control: &'a Control,
    on_progress: &'a mut dyn FnMut(&Progress),
}

/// The control of jobs that nobody stops.
static UNSTOPPED: Control = Control::new();

impl<'a> Job<'a> {
    pub fn new(control: &'a Control, on_progress: &'a mut dyn FnMut(&Progress)) -> Self {
        Job {
            control,
            on_progress,
        }
    }

    /// A job that nobody stops, reporting to `on_progress`.
    pub fn unstopped(on_progress: &'a mut dyn FnMut(&Progress)) -> Self {
        Job::new(&UNSTOPPED, on_progress)
    }

    /// The control alone, for a check the job passes to code that reports nothing.
    pub fn control(&self) -> &'a Control {
        self.control
    }

    /// Whether a stop was asked for: the job ends at the next unit of work, keeping what it did.
    pub fn is_stopping(&self) -> bool {
        self.control.is_stopping()
    }

    /// Reports `done` of `total` in `stage`.
    pub fn progress(&mut self, stage: &str, done: u64, total: u64) {
        self.report(stage, done, total, None);
    }

    /// Reports `done` of `total` in `stage`, then ends the job there if a stop was asked for.
    pub fn step(&mut self, stage: &str, done: usize, total: usize) -> Result<(), JobError> {
        self.progress(stage, done as u64, total as u64);
        if self.is_stopping() {
            Err(JobError::Cancelled { done, total })
        } else {
            Ok(())
        }
    }

    /// Reports `done` of `total` in `stage`, with a line for people.
    pub fn note(&mut self, stage: &str, done: u64, total: u64, message: impl Into<String>) {
        self.report(stage, done, total, Some(message.into()));
    }

    fn report(&mut self, stage: &str, done: u64, total: u64, message: Option<String>) {
        (self.on_progress)(&Progress {
            stage: stage.to_string(),
            done,
            total,
            message,
        });
    }
}

/// Why a job ended without its result.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Input the user can fix: an option, a record, a file that is not what it should be.
    #[error("{0}")]
    Usage(String),
    /// A file that could not be read or written.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// The model could not be loaded or failed while computing.
    #[error("{0}")]
    Model(String),
    /// Stopped on request after `done` of `total` units; what was done is kept, and a later
    /// run of the same job goes on from there where the job can.
    #[error("cancelled after {done} of {total}")]
    Cancelled { done: usize, total: usize },
    /// The output folder is locked by a live process (another job, or a run training).
    #[error("{0}")]
    Busy(String),
}

impl JobError {
    /// `path` could not be read or written: `e` says why.
    pub fn file(path: &Path, e: impl std::fmt::Display) -> JobError {
        JobError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    /// Whether the user can fix it (a CLI exits 2 for these).
    pub fn is_usage(&self) -> bool {
        matches!(self, JobError::Usage(_) | JobError::File { .. })
    }
}

impl From<candle_core::Error> for JobError {
    fn from(e: candle_core::Error) -> Self {
        JobError::Model(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_wins_over_a_pause_and_progress_reaches_the_watcher() {
        let control = Control::new();
        control.pause();
        assert!(control.is_paused());
        control.stop();
        control.pause();
        control.resume();
        assert!(control.is_stopping());
        let mut seen = Vec::new();
        let mut watch = |p: &Progress| seen.push(p.clone());
        let mut job = Job::new(&control, &mut watch);
        job.progress("evaluating", 2, 6);
        job.note("evaluating", 2, 6, "resumed");
        assert!(job.is_stopping());
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].done, seen[0].total), (2, 6));
        assert_eq!(seen[1].message.as_deref(), Some("resumed"));
    }
}
