//! Running one job on the engine thread: progress with ETA, cancellation, and panics turned
//! into `Event::Failed` so that a broken job never takes the program down.

use super::{Command, Event, JobId, Shared};
use crate::job::{Control, Job, JobError, Progress};
use crate::model::loading::LoadedModel;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a running job sees: its id, its control (which `Engine::cancel` stops) and a way to
/// report progress.
pub struct JobContext {
    pub job: JobId,
    started: Instant,
    control: Arc<Control>,
    /// The last progress reported, `(done, total)`, for the count a cancel reports.
    done: AtomicU64,
    total: AtomicU64,
    shared: Arc<Shared>,
}

impl JobContext {
    pub fn is_cancelled(&self) -> bool {
        self.control.is_stopping()
    }

    /// Returns `Err(Cancelled)` once a cancel was requested; call it inside long loops.
    pub fn check(&self) -> Result<(), JobError> {
        if self.is_cancelled() {
            Err(JobError::Cancelled {
                done: self.done.load(Ordering::Relaxed) as usize,
                total: self.total.load(Ordering::Relaxed) as usize,
            })
        } else {
            Ok(())
        }
    }

    /// Runs `work` as a [`Job`] of this context: its progress reported with an ETA (once for
    /// each new count: the front end has no place for a note's line), its stop the engine's
    /// cancel.
    pub fn run<R>(&self, work: impl FnOnce(&mut Job) -> R) -> R {
        let mut last: Option<(String, u64, u64)> = None;
        let mut report = |p: &Progress| {
            let now = (p.stage.clone(), p.done, p.total);
            if last.as_ref() != Some(&now) {
                self.progress(&p.stage, p.done, p.total);
                last = Some(now);
            }
        };
        work(&mut Job::new(&self.control, &mut report))
    }

    /// Reports `done` of `total`, with an ETA from the rate so far.
    pub fn progress(&self, stage: &str, done: u64, total: u64) {
        let elapsed = self.started.elapsed();
        let eta = (done > 0 && total >= done).then(|| {
            let per = elapsed.as_secs_f64() / done as f64;
            Duration::from_secs_f64(per * (total - done) as f64)
        });
        self.report(stage, done, total, eta);
    }

    /// Reports progress with an ETA the job worked out itself.
    pub fn report(&self, stage: &str, done: u64, total: u64, eta: Option<Duration>) {
        self.done.store(done, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.emit(Event::Progress {
            job: self.job,
            stage: stage.to_string(),
            done,
            total,
            eta,
        });
    }

    /// Sends an event of this job to the front end at once.
    pub fn emit(&self, event: Event) {
        self.shared.emit(event);
    }
}

pub(super) fn run(
    shared: &Arc<Shared>,
    model: &mut Option<LoadedModel>,
    job: JobId,
    command: Command,
) {
    let name = command.name();
    shared.emit(Event::Started {
        job,
        name: name.clone(),
    });
    let ctx = JobContext {
        job,
        started: Instant::now(),
        control: shared
            .control
            .lock()
            .map_or_else(|_| Arc::new(Control::new()), |c| Arc::clone(&c)),
        done: AtomicU64::new(0),
        total: AtomicU64::new(0),
        shared: Arc::clone(shared),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| execute(&ctx, model, command)));
    let (event, succeeded) = match outcome {
        Ok(Ok(event)) => (event, true),
        Ok(Err(JobError::Cancelled { .. })) => (Event::Cancelled { job }, false),
        Ok(Err(e)) => {
            let error = e.to_string().lines().next().unwrap_or_default().to_string();
            (Event::Failed { job, name, error }, false)
        }
        Err(panic) => (
            Event::Failed {
                job,
                name,
                error: format!("internal error: {}", panic_message(&*panic)),
            },
            false,
        ),
    };
    // Clear `busy` before the final events so a front end reacting to them can submit at once.
    shared.busy.store(false, Ordering::Release);
    shared.emit(event);
    if succeeded {
        shared.emit(Event::Finished {
            job,
            elapsed: ctx.started.elapsed(),
        });
    }
}

fn execute(
    ctx: &JobContext,
    model: &mut Option<LoadedModel>,
    command: Command,
) -> Result<Event, JobError> {
    match command {
        Command::OpenDataset { path, options } => {
            let dataset =
                ctx.run(|job| crate::data::dataset::open_dataset(&path, &options, job))?;
            Ok(Event::DatasetOpened {
                job: ctx.job,
                dataset: Box::new(dataset),
            })
        }
        Command::LoadModel { spec } => super::model::load_model(ctx, model, &spec),
        Command::Train(request) => super::train_job::train(ctx, *request),
        Command::Generate(request) => super::generate_job::run(ctx, model, *request),
        Command::Evaluate(request) => super::eval_job::run(ctx, model.as_mut(), *request),
        Command::Bias(request) => super::bias_job::run(ctx, model.as_mut(), *request),
        Command::Explain(request) => super::explain_job::run(ctx, model.as_mut(), *request),
        Command::Custom { work, .. } => {
            let text = work(ctx, model.as_ref())?;
            Ok(Event::Message { job: ctx.job, text })
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a job panicked".to_string()
    }
}
