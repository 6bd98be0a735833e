//! The Registry panel: the versions of each registered model of the project (metric with its
//! interval, gates as chips, aliases as badges), a version's lineage, configuration changes and
//! gate results, two versions' metrics side by side, the alias history, and Register / Promote
//! / Roll back. Reading the registry and every action run on a thread of their own through the
//! same functions `lablens registry` calls (they touch files, not the device, so they are no
//! engine job); the panel shows what came back, a refusal with its gates or its paired interval.

mod actions;
mod chips;
mod detail;
pub mod fixture;
mod views;

use super::AppState;
use super::panel::{Panel, PanelContext};
use crate::eval::job::EVAL_FILE;
use crate::project::{OpenProject, PROJECT_FILE};
use crate::registry::aliases::{History, read_state};
use crate::registry::gates::{CheckedGate, MetricDef, check_gates, check_settings};
use crate::registry::{Listing, RegisteredModel, listing, models};
use crate::train::run::{ADAPTER_DIR, RUNS_DIR};
pub use actions::{Action, ActionOutcome, Form};
use crossbeam_channel::{Receiver, Sender, unbounded};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the panel keeps across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryUiState {
    /// The registered model shown (default: the first).
    pub model: Option<String>,
    /// The version whose detail is shown (default: the newest).
    pub selected: Option<u32>,
    /// The two versions whose metrics are compared (default: production and the newest).
    pub compare: [Option<u32>; 2],
}

/// One registered model as read.
pub struct ModelView {
    pub name: String,
    pub listing: Listing,
    pub history: History,
}

/// The project's registry as read by the loading thread.
pub struct Loaded {
    pub dir: PathBuf,
    /// Each model, or the error reading it named.
    pub models: Vec<Result<ModelView, String>>,
    /// Runs that can be registered: a final adapter and an evaluation.
    pub runs: Vec<String>,
    /// The project's gates, checked; an error reading them is said instead.
    pub gates: Result<Vec<CheckedGate>, String>,
    /// The primary metric and the largest relative drop of `registry: (...)`.
    pub settings: Option<(&'static MetricDef, f64)>,
}

impl Loaded {
    pub fn model(&self, name: &str) -> Option<&ModelView> {
        self.models
            .iter()
            .filter_map(|m| m.as_ref().ok())
            .find(|m| m.name == name)
    }

    /// The names of the models read (also those that could not be).
    fn names(&self) -> Vec<String> {
        self.models
            .iter()
            .filter_map(|m| m.as_ref().ok().map(|m| m.name.clone()))
            .collect()
    }
}

/// What the panel's threads send back.
enum Done {
    Loaded(Box<Loaded>),
    Acted(Result<ActionOutcome, String>),
    LoadFailed(String),
}

pub struct RegistryPanel {
    pub state: RegistryUiState,
    project_dir: Option<PathBuf>,
    pub loaded: Option<Loaded>,
    loading: bool,
    /// The action running on its thread.
    pub acting: Option<Action>,
    /// The last action's result, shown until the next one.
    pub outcome: Option<Result<ActionOutcome, String>>,
    /// The form of an action being filled in, with its confirmation.
    pub form: Option<Form>,
    tx: Sender<Done>,
    rx: Receiver<Done>,
    /// For the threads to wake the window when they finish.
    repaint: Option<egui::Context>,
}

impl RegistryPanel {
    pub fn new(state: RegistryUiState) -> Self {
        let (tx, rx) = unbounded();
        Self {
            state,
            project_dir: None,
            loaded: None,
            loading: false,
            acting: None,
            outcome: None,
            form: None,
            tx,
            rx,
            repaint: None,
        }
    }

    pub fn is_busy(&self) -> bool {
        self.loading || self.acting.is_some()
    }

    /// Runs `work` on a thread of its own; its result arrives through the channel. A panic
    /// becomes an error message: the window keeps running.
    fn spawn(&self, work: impl FnOnce() -> Done + Send + 'static, failed: fn(String) -> Done) {
        let (tx, ctx) = (self.tx.clone(), self.repaint.clone());
        std::thread::spawn(move || {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|p| failed(panic_message(p.as_ref())));
            tx.send(done).ok();
            if let Some(ctx) = ctx {
                ctx.request_repaint();
            }
        });
    }

    /// Starts `action` unless another one runs.
    pub fn perform(&mut self, action: Action) {
        let Some(dir) = self.project_dir.clone() else {
            return;
        };
        if self.acting.is_some() {
            return;
        }
        self.acting = Some(action.clone());
        self.outcome = None;
        self.spawn(
            move || Done::Acted(actions::perform(&dir, &action)),
            |e| Done::Acted(Err(e)),
        );
    }

    /// Takes what the threads finished.
    pub fn receive(&mut self) {
        while let Ok(done) = self.rx.try_recv() {
            match done {
                Done::Loaded(loaded) => {
                    // What an earlier project's read brings is dropped.
                    if Some(&loaded.dir) == self.project_dir.as_ref() {
                        self.loading = false;
                        self.loaded = Some(*loaded);
                        self.settle_choices();
                    }
                }
                Done::LoadFailed(e) => {
                    self.loading = false;
                    self.outcome = Some(Err(e));
                }
                Done::Acted(result) => {
                    self.acting = None;
                    if let Ok(ActionOutcome::Registered { name, version, .. }) = &result {
                        self.state.model = Some(name.clone());
                        self.state.selected = Some(*version);
                    }
                    // A refused promotion keeps its form: forcing it with a reason is next.
                    let done = match &result {
                        Ok(ActionOutcome::Moved(m)) => m.moved,
                        other => other.is_ok(),
                    };
                    if done {
                        self.form = None;
                    }
                    self.outcome = Some(result);
                    self.refresh();
                }
            }
        }
    }

    /// Waits (up to 20 s) for the panel's threads, for tests and the screenshots.
    pub fn wait_idle(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.is_busy() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            self.receive();
        }
    }

    /// The model shown and its versions, when read.
    pub fn current(&self) -> Option<&ModelView> {
        let loaded = self.loaded.as_ref()?;
        loaded.model(self.state.model.as_deref()?)
    }

    /// Keeps the chosen model and versions where they still exist, else picks defaults.
    fn settle_choices(&mut self) {
        let Some(loaded) = &self.loaded else { return };
        let names = loaded.names();
        if !self.state.model.as_ref().is_some_and(|m| names.contains(m)) {
            self.state.model = names.first().cloned();
        }
        let Some(model) = self.current() else { return };
        let versions: Vec<u32> = model.listing.versions.iter().map(|v| v.version).collect();
        let newest = versions.last().copied();
        let production = model
            .listing
            .aliases
            .get(crate::registry::PRODUCTION)
            .copied();
        let keep =
            |v: Option<u32>, default: Option<u32>| v.filter(|v| versions.contains(v)).or(default);
        let selected = keep(self.state.selected, newest);
        let a = keep(self.state.compare[0], production.or(newest));
        let b = keep(
            self.state.compare[1],
            versions.iter().rev().copied().find(|v| Some(*v) != a),
        );
        self.state.selected = selected;
        self.state.compare = [a, b];
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    format!("the registry work stopped unexpectedly: {what}")
}

/// Reads the registry of the project in `dir`: every model, the runs that can be registered,
/// the gates.
fn load(dir: &Path) -> Loaded {
    let project = OpenProject::open(dir).map_err(|e| e.to_string());
    let file = dir.join(PROJECT_FILE);
    let gates = project
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|p| check_gates(&file, &p.project.gates).map_err(|e| e.to_string()));
    let settings = project
        .as_ref()
        .ok()
        .and_then(|p| check_settings(&file, &p.project.registry).ok());
    let models = models(dir)
        .into_iter()
        .map(|name| {
            let model = RegisteredModel::existing(dir, &name).map_err(|e| e.to_string())?;
            let listing = listing(&model).map_err(|e| format!("{name}: {e}"))?;
            let history = read_state(&model)
                .map_err(|e| format!("{name}: {e}"))?
                .history;
            Ok(ModelView {
                name,
                listing,
                history,
            })
        })
        .collect();
    Loaded {
        dir: dir.to_path_buf(),
        models,
        runs: registrable_runs(dir),
        gates,
        settings,
    }
}

/// The project's runs with a final adapter and an evaluation, oldest first.
fn registrable_runs(dir: &Path) -> Vec<String> {
    let mut runs: Vec<String> = std::fs::read_dir(dir.join(RUNS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(ADAPTER_DIR).is_dir() && e.path().join(EVAL_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    runs
}

impl Panel for RegistryPanel {
    fn set_project(&mut self, dir: &Path) {
        if self.project_dir.as_deref() != Some(dir) {
            self.loaded = None;
            self.outcome = None;
            self.form = None;
        }
        self.project_dir = Some(dir.to_path_buf());
        self.refresh();
    }

    /// Reads the registry again on a thread of its own.
    fn refresh(&mut self) {
        let Some(dir) = self.project_dir.clone() else {
            return;
        };
        self.loading = true;
        self.spawn(move || Done::Loaded(Box::new(load(&dir))), Done::LoadFailed);
    }

    fn on_event(&mut self, event: &crate::engine::Event) {
        // A finished evaluation may have made a run registrable.
        if let crate::engine::Event::Finished { .. } = event
            && !self.is_busy()
        {
            self.refresh();
        }
    }

    fn save_state(&mut self, state: &mut AppState) {
        state.registry = self.state.clone();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _ctx: &PanelContext<'_>) {
        self.repaint = Some(ui.ctx().clone());
        self.receive();
        views::show(self, ui);
    }
}

#[cfg(test)]
mod tests;
