//! Training on the engine thread: `crate::train::train` for a project, each `TrainEvent`
//! forwarded as it happens, progress with an ETA from the steps of this session, and the engine's
//! cancel turned into a stop at a checkpoint (even while the run is paused).

use super::{Event, JobContext};
use crate::job::Control;
use crate::job::JobError;
use crate::project::OpenProject;
use crate::train::{RunOptions, TrainConfig, TrainEvent};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A training run to start or resume. The model is the configuration's own (`config.model`,
/// `device`, `dequantize`), loaded by the trainer beside the engine's model, which stays for
/// generation; the Train panel fills those fields from the model loaded in the sidebar.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub project_dir: PathBuf,
    pub config: TrainConfig,
    /// Continue this run (an id under the project's `runs/`) from its last checkpoint; the
    /// run's own `config.ron` is used then, not `config`.
    pub resume: Option<String>,
    /// Pause, resume and stop from the front end, which keeps a clone.
    pub control: Arc<Control>,
}

impl TrainRequest {
    pub fn name(&self) -> String {
        match &self.resume {
            Some(id) => format!("Resume run {id}"),
            None => format!("Train on {}", self.config.dataset),
        }
    }
}

/// Steps done in this session against time, for an ETA that ignores the steps a resumed run
/// had done before and the time spent loading.
struct EtaClock {
    started: Instant,
    first_step: usize,
    total: usize,
}

impl EtaClock {
    fn eta(&self, step: usize) -> Option<Duration> {
        let done = step.checked_sub(self.first_step).filter(|d| *d > 0)?;
        let per_step = self.started.elapsed().as_secs_f64() / done as f64;
        Some(Duration::from_secs_f64(
            per_step * self.total.saturating_sub(step) as f64,
        ))
    }
}

/// Sets the flag when dropped, so that the cancel watcher ends even if training panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Turns the engine's cancel into `Control::stop`, which the loop sees between steps and while
/// paused, where no event would give the job a chance to look.
fn watch_cancel(ctx: &JobContext, control: &Control, finished: &AtomicBool) {
    while !finished.load(Ordering::Acquire) {
        if ctx.is_cancelled() {
            control.stop();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn train(ctx: &JobContext, request: TrainRequest) -> Result<Event, JobError> {
    let project = OpenProject::open(&request.project_dir)
        .map_err(|e| JobError::Usage(format!("could not open the project: {e}")))?;
    let opts = RunOptions {
        resume: request.resume.clone(),
        record_batches: false,
        // The form shows the rate it starts with (the presets' for the model, or the user's).
        suited_lr: false,
    };
    let finished = AtomicBool::new(false);
    let mut clock: Option<EtaClock> = None;
    let result = std::thread::scope(|scope| {
        scope.spawn(|| watch_cancel(ctx, &request.control, &finished));
        let _finish = SetOnDrop(&finished);
        crate::train::train(
            &project,
            &request.config,
            &opts,
            &request.control,
            &mut |event| {
                report_progress(ctx, &mut clock, &event);
                ctx.emit(Event::Train {
                    job: ctx.job,
                    event,
                });
            },
        )
    });
    let summary = result?;
    Ok(Event::Trained {
        job: ctx.job,
        summary,
    })
}

fn report_progress(ctx: &JobContext, clock: &mut Option<EtaClock>, event: &TrainEvent) {
    match event {
        TrainEvent::Started {
            total_steps,
            resumed_from,
            ..
        } => {
            let first_step = resumed_from.unwrap_or(0);
            *clock = Some(EtaClock {
                started: Instant::now(),
                first_step,
                total: *total_steps,
            });
            ctx.report("training", first_step as u64, *total_steps as u64, None);
        }
        TrainEvent::Step(m) => {
            if let Some(c) = clock {
                ctx.report(
                    &format!("step {}/{}", m.step, c.total),
                    m.step as u64,
                    c.total as u64,
                    c.eta(m.step),
                );
            }
        }
        TrainEvent::Validating {
            step,
            done,
            total,
            eta_s,
        } => ctx.report(
            &crate::train::validating_text(*step, *done, *total),
            *done as u64,
            *total as u64,
            eta_s.map(Duration::from_secs_f64),
        ),
        TrainEvent::Eval { .. } | TrainEvent::Checkpoint { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_counts_only_the_steps_of_this_session() {
        let clock = EtaClock {
            started: Instant::now() - Duration::from_secs(10),
            first_step: 40,
            total: 100,
        };
        assert_eq!(clock.eta(40), None);
        // 10 steps in 10 s, 50 to go.
        let eta = clock.eta(50).expect("eta").as_secs_f64();
        assert!((eta - 50.0).abs() < 1.0, "{eta}");
    }
}
