//! How the CLI shows a job: a bar on stderr for its `Progress` (the stage, done of total and an
//! ETA, each message printed above the bar), and its `JobError` as an exit code.

use super::CliError;
use crate::job::{JobError, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// The bar of one job, counting `unit` (records, examples, steps).
pub struct JobBar(ProgressBar);

impl JobBar {
    pub fn new(unit: &str) -> JobBar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{msg:24}} {{bar:30}} {{pos}}/{{len}} {unit}  ETA {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        JobBar(bar)
    }

    /// Shows `p`: its message above the bar (on stderr by itself where the bar is hidden, as
    /// when stderr is a log file), its counts on it.
    pub fn show(&self, p: &Progress) {
        if let Some(message) = &p.message {
            if self.0.is_hidden() {
                eprintln!("{message}");
            } else {
                self.0.println(message);
            }
        }
        self.0.set_message(p.stage.clone());
        self.0.set_length(p.total);
        self.0.set_position(p.done);
    }
}

impl Drop for JobBar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Exit 2 for what the user can fix, 1 for the rest.
pub fn job_err(e: JobError) -> CliError {
    if e.is_usage() {
        CliError::usage(e.to_string())
    } else {
        CliError::failed(e.to_string())
    }
}
