//! `lablens serve`: the project's model behind an OpenAI-compatible HTTP API, with clinical
//! endpoints that return a safety report. The port is bound first (requests get 503 while the
//! model loads); one worker thread owns the model and generates the queued requests in
//! batches; a thread answers each request, up to a bound; SIGINT or SIGTERM stops accepting,
//! lets the requests in flight finish and returns.

mod http;
pub mod metrics;
pub mod models;
pub mod openai;
pub mod openapi;
pub mod prompt;
pub mod safety;
pub mod stream;
pub mod worker;

use crate::model::adapters::{Adapters, load_peft, set_enabled};
use crate::model::loading::{LoadedModel, load};
use crossbeam_channel::{Receiver, Sender};
use metrics::Metrics;
use models::{Plan, ServedModel};
use openai::ApiError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use worker::Job;

/// The largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Request threads beyond `max_concurrency`, for the routes that do not generate.
const SPARE_HANDLERS: usize = 16;
/// How often the accept loop looks at the stop flag and the model's loading.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// Every request must carry `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Generations at once (queued or generating); more are answered 429.
    pub max_concurrency: usize,
    /// Waiting requests the worker generates together.
    pub max_batch: usize,
    pub max_body_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {message}")]
    Bind { address: String, message: String },
    #[error("the model could not be loaded: {0}")]
    Load(String),
}

/// What the server reports as it goes.
#[derive(Debug)]
pub enum ServeEvent<'a> {
    /// The port is bound; the model is loading.
    Listening(SocketAddr),
    /// The model is loaded: requests are answered.
    Ready {
        address: SocketAddr,
        models: &'a [ServedModel],
        /// The server's counters, shared with its threads for as long as it runs.
        metrics: &'a Arc<Metrics>,
    },
    /// A signal came: no new connections; `in_flight` requests are being finished.
    Stopping { in_flight: usize },
}

/// What every request thread reads.
pub(crate) struct Shared {
    options: ServeOptions,
    plan: Plan,
    metrics: Arc<Metrics>,
    /// Set once the model is loaded.
    queue: OnceLock<Sender<Job>>,
    generating: AtomicUsize,
    next_id: AtomicU64,
}

/// A generation's place under `max_concurrency`, given back when dropped.
pub(crate) struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    /// The worker's queue, once the model is loaded.
    fn queue(&self) -> Option<&Sender<Job>> {
        self.queue.get()
    }

    /// A place for one more generation, if there is one.
    fn slot(&self) -> Option<Slot<'_>> {
        let before = self.generating.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(&self.generating);
        (before < self.options.max_concurrency).then_some(slot)
    }

    /// A fresh response id: `chatcmpl-…`.
    fn next_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06x}", now())
    }
}

/// A server still loading its model: no queue, no models, `max_concurrency` places.
#[cfg(test)]
fn loading(max_concurrency: usize, api_key: Option<&str>) -> Shared {
    use crate::model::loading::{ModelSpec, TINY};
    Shared {
        options: ServeOptions {
            host: "127.0.0.1".into(),
            port: 0,
            api_key: api_key.map(str::to_string),
            max_concurrency,
            max_batch: 1,
            max_body_bytes: 1 << 10,
        },
        plan: Plan {
            spec: ModelSpec::new(TINY),
            models: Vec::new(),
            default: 0,
        },
        metrics: Arc::default(),
        queue: OnceLock::new(),
        generating: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
    }
}

/// Seconds since 1970.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The flag SIGINT and SIGTERM set from now on, for [`serve`]'s `stop` (the command line's).
pub fn stop_on_signals() -> &'static AtomicBool {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
    }
    &STOP
}

/// The model of `plan`, its adapters switched off, and each served adapter, read once, in the
/// order of `plan.models` (the last adapter stays attached).
fn load_model(plan: &Plan) -> Result<(LoadedModel, Vec<Adapters>), String> {
    let mut model = load(&plan.spec).map_err(|e| e.to_string())?;
    let mut adapters = Vec::new();
    for dir in plan.adapters() {
        load_peft(&mut model.llama, dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        adapters.push(Adapters::of(&model.llama));
    }
    set_enabled(&mut model.llama, false);
    Ok((model, adapters))
}

/// Loads the model on its own thread, then serves the queue there.
fn start_worker(
    shared: Arc<Shared>,
    queue: (Sender<Job>, Receiver<Job>),
    failed: Arc<OnceLock<String>>,
) {
    let failed_to_load = Arc::clone(&failed);
    let spawned = std::thread::Builder::new()
        .name("lablens-model".into())
        .spawn(move || match load_model(&shared.plan) {
            Ok((mut model, adapters)) => {
                let (sender, receiver) = queue;
                shared.queue.set(sender).ok();
                worker::run(
                    &mut model,
                    &shared.plan.models,
                    &adapters,
                    &receiver,
                    shared.options.max_batch,
                    &shared.metrics,
                );
            }
            Err(e) => {
                failed_to_load.set(e).ok();
            }
        });
    if let Err(e) = spawned {
        failed.set(format!("no thread for the model: {e}")).ok();
    }
}

/// Answers `request` on a thread of its own, or 503 when every thread is busy.
fn dispatch(shared: &Arc<Shared>, active: &Arc<AtomicUsize>, request: tiny_http::Request) {
    if active.load(Ordering::Acquire) >= shared.options.max_concurrency + SPARE_HANDLERS {
        let e = ApiError::new(
            503,
            "server_error",
            "server_busy",
            "every request thread is busy; try again shortly".into(),
        );
        http::send(request, http::Reply::error(&e));
        return;
    }
    active.fetch_add(1, Ordering::AcqRel);
    let (shared, counted) = (Arc::clone(shared), Arc::clone(active));
    let spawned = std::thread::Builder::new()
        .name("lablens-http".into())
        .spawn(move || {
            let _done = Slot(&counted);
            http::handle(&shared, request);
        });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `plan` until `stop` is set; `report` hears when the port is bound, when the model is
/// ready and when the server stops.
pub fn serve(
    plan: Plan,
    options: ServeOptions,
    stop: &AtomicBool,
    report: &mut dyn FnMut(ServeEvent),
) -> Result<(), ServeError> {
    let address = format!("{}:{}", options.host, options.port);
    let server = tiny_http::Server::http(&address).map_err(|e| ServeError::Bind {
        address: address.clone(),
        message: e.to_string(),
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| ServeError::Bind {
            address,
            message: "not an IP address".into(),
        })?;
    report(ServeEvent::Listening(bound));
    let shared = Arc::new(Shared {
        options,
        plan,
        metrics: Arc::default(),
        queue: OnceLock::new(),
        generating: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
    });
    let failed = Arc::new(OnceLock::new());
    start_worker(
        Arc::clone(&shared),
        crossbeam_channel::unbounded(),
        Arc::clone(&failed),
    );
    let active = Arc::new(AtomicUsize::new(0));
    let mut announced = false;
    while !stop.load(Ordering::SeqCst) {
        if let Some(e) = failed.get() {
            return Err(ServeError::Load(e.clone()));
        }
        if !announced && shared.queue().is_some() {
            announced = true;
            report(ServeEvent::Ready {
                address: bound,
                models: &shared.plan.models,
                metrics: &shared.metrics,
            });
        }
        if let Ok(Some(request)) = server.recv_timeout(POLL) {
            dispatch(&shared, &active, request);
        }
    }
    drop(server);
    report(ServeEvent::Stopping {
        in_flight: active.load(Ordering::Acquire),
    });
    while active.load(Ordering::Acquire) > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_past_max_concurrency_get_no_slot() {
        let shared = loading(2, None);
        let a = shared.slot().expect("first");
        let b = shared.slot().expect("second");
        assert!(shared.slot().is_none());
        drop(a);
        let c = shared.slot().expect("a place came free");
        assert!(shared.slot().is_none());
        drop((b, c));
        assert_eq!(shared.generating.load(Ordering::Acquire), 0);
        assert_ne!(shared.next_id("chatcmpl"), shared.next_id("chatcmpl"));
    }
}
