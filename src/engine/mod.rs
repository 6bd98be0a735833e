//! The engine: one background thread that owns the loaded model and runs every long job (loading
//! and validating data, loading models, training, generation), one at a time, reporting progress
//! as `Event`s. The GUI and the CLI talk to it only through `Command`s and never wait on it.

mod bias_job;
mod eval_job;
mod explain_job;
mod generate_job;
mod job;
mod model;
mod train_job;

pub use eval_job::EvalRequest;
pub use generate_job::{GenerateRequest, GenerationOutput};
pub use job::JobContext;
pub use model::{ModelInfo, ModelSourceKind, device_choices};
pub use train_job::TrainRequest;

use crate::data::dataset::{DatasetView, OpenOptions};
use crate::eval::job::EvalSummary;
use crate::job::{Control, JobError};
use crate::model::loading::{LoadedModel, ModelSpec};
use crate::train::{TrainEvent, TrainSummary};
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub type JobId = u64;

/// The work of a `Command::Custom`: runs on the engine thread with the loaded model (if any),
/// returns a message.
pub type CustomWork =
    Box<dyn FnOnce(&JobContext, Option<&LoadedModel>) -> Result<String, JobError> + Send>;

/// Asks the front end to redraw; implemented by the GUI over `egui::Context` so that the engine
/// does not depend on egui.
pub trait Notifier: Send + Sync + 'static {
    fn notify(&self);
}

/// For front ends that poll (the CLI, tests).
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self) {}
}

/// Work for the engine. Jobs are refused with `Event::Busy` while another runs.
pub enum Command {
    /// Load a dataset file, validate it and assign splits.
    OpenDataset { path: PathBuf, options: OpenOptions },
    /// Load a model and keep it for the jobs that follow; a failed load keeps the model before.
    LoadModel { spec: ModelSpec },
    /// Train a LoRA adapter (or resume a run); pause and stop go through the request's control,
    /// and `Engine::cancel` stops the run at a checkpoint too.
    Train(Box<TrainRequest>),
    /// Generate after one prompt with the loaded model, without and with adapters, streaming.
    Generate(Box<GenerateRequest>),
    /// Evaluate a run's adapter (or the base model) over a split: predictions.jsonl, eval.json.
    Evaluate(Box<EvalRequest>),
    /// Audit a prediction set for bias (with the counterfactual test, which generates): bias.json.
    Bias(Box<crate::analysis::bias::job::BiasRequest>),
    /// Explain one record of a run (or the base model): explain/<record>.json.
    Explain(Box<crate::analysis::explain::ExplainRequest>),
    /// Run arbitrary work on the engine thread, for programs embedding the engine and for tests.
    Custom { name: String, work: CustomWork },
}

impl Command {
    pub fn name(&self) -> String {
        match self {
            Command::OpenDataset { path, .. } => format!("Open {}", file_name(path)),
            Command::LoadModel { spec } => format!("Load {}", file_name(&spec.path)),
            Command::Train(request) => request.name(),
            Command::Generate(_) => "Generate".to_string(),
            Command::Evaluate(request) => request.name(),
            Command::Bias(request) => request.name(),
            Command::Explain(request) => explain_job::name(request),
            Command::Custom { name, .. } => name.clone(),
        }
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What the engine reports.
#[derive(Debug)]
pub enum Event {
    Started {
        job: JobId,
        name: String,
    },
    Progress {
        job: JobId,
        stage: String,
        done: u64,
        total: u64,
        eta: Option<Duration>,
    },
    DatasetOpened {
        job: JobId,
        dataset: Box<DatasetView>,
    },
    ModelLoaded {
        job: JobId,
        info: ModelInfo,
    },
    /// What a training run reported, as it happened.
    Train {
        job: JobId,
        event: TrainEvent,
    },
    /// A training job's end: finished, or stopped at a checkpoint (by Stop or cancel).
    Trained {
        job: JobId,
        summary: TrainSummary,
    },
    /// The text of generation output `output` so far, after each new token.
    Token {
        job: JobId,
        output: usize,
        text: String,
    },
    /// Generation output `output` is complete.
    Generated {
        job: JobId,
        output: usize,
        result: GenerationOutput,
    },
    /// An evaluation's end: its files are written.
    Evaluated {
        job: JobId,
        summary: Box<EvalSummary>,
    },
    /// A bias audit's end: bias.json is written.
    BiasAudited {
        job: JobId,
        outcome: Box<crate::analysis::bias::job::BiasOutcome>,
    },
    /// An explanation's end: `path` holds it, merged with the record's earlier ones.
    Explained {
        job: JobId,
        explanation: Box<crate::analysis::explain::Explanation>,
        path: PathBuf,
    },
    /// A `Custom` job's result.
    Message {
        job: JobId,
        text: String,
    },
    Failed {
        job: JobId,
        name: String,
        error: String,
    },
    Cancelled {
        job: JobId,
    },
    Finished {
        job: JobId,
        elapsed: Duration,
    },
    /// A command arrived while `running` was still working; nothing was queued.
    Busy {
        running: String,
        refused: String,
    },
}

struct Shared {
    busy: AtomicBool,
    /// The running (or next) job's control: `Engine::cancel` stops it.
    control: std::sync::Mutex<Arc<Control>>,
    next_job: AtomicU64,
    running_name: std::sync::Mutex<String>,
    events: Sender<Event>,
    notifier: Box<dyn Notifier>,
}

impl Shared {
    fn emit(&self, event: Event) {
        // The receiver lives as long as the Engine; a send can only fail during shutdown.
        self.events.send(event).ok();
        self.notifier.notify();
    }
}

/// Handle to the engine thread. Dropping it stops the thread after the running job.
pub struct Engine {
    commands: Option<Sender<(JobId, Command)>>,
    events: Receiver<Event>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    pub fn start(notifier: impl Notifier) -> Engine {
        let (cmd_tx, cmd_rx) = unbounded::<(JobId, Command)>();
        let (ev_tx, ev_rx) = unbounded();
        let shared = Arc::new(Shared {
            busy: AtomicBool::new(false),
            control: std::sync::Mutex::new(Arc::new(Control::new())),
            next_job: AtomicU64::new(1),
            running_name: std::sync::Mutex::new(String::new()),
            events: ev_tx,
            notifier: Box::new(notifier),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lablens-engine".into())
            .spawn(move || {
                // Lives on this thread only: jobs borrow it, front ends see its ModelInfo.
                let mut model: Option<LoadedModel> = None;
                for (job, command) in cmd_rx {
                    job::run(&thread_shared, &mut model, job, command);
                    crate::model::runtime::release_freed_memory();
                }
            })
            .ok();
        Engine {
            commands: Some(cmd_tx),
            events: ev_rx,
            shared,
            thread,
        }
    }

    /// Starts a job, or reports `Event::Busy` (and returns `None`) if one is running.
    pub fn submit(&self, command: Command) -> Option<JobId> {
        let name = command.name();
        if self
            .shared
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            let running = self
                .shared
                .running_name
                .lock()
                .map(|n| n.clone())
                .unwrap_or_default();
            self.shared.emit(Event::Busy {
                running,
                refused: name,
            });
            return None;
        }
        if let Ok(mut n) = self.shared.running_name.lock() {
            *n = name;
        }
        if let Ok(mut control) = self.shared.control.lock() {
            *control = Arc::new(Control::new());
        }
        let job = self.shared.next_job.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .commands
            .as_ref()
            .is_some_and(|tx| tx.send((job, command)).is_ok());
        if !sent {
            self.shared.busy.store(false, Ordering::Release);
            self.shared.emit(Event::Failed {
                job,
                name: "engine".into(),
                error: "the engine thread is not running".into(),
            });
            return None;
        }
        Some(job)
    }

    /// Asks the running job to stop at its next check; it reports `Event::Cancelled`.
    pub fn cancel(&self) {
        if let Ok(control) = self.shared.control.lock() {
            control.stop();
        }
    }

    pub fn is_busy(&self) -> bool {
        self.shared.busy.load(Ordering::Acquire)
    }

    /// Events that have arrived, without waiting.
    pub fn poll(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// Waits for the next event (CLI and tests).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.cancel();
        self.commands.take();
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
