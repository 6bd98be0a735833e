//! The workbench window (eframe): top bar with the panels, left project browser, the chosen
//! panel in the centre, and a status line with the engine's job and progress at the bottom.
//! The UI never blocks: slow work goes to the engine as a `Command` and arrives as `Event`s.

mod bias_panel;
mod browser;
mod charts;
mod combo;
mod compare_panel;
mod dataset_panel;
mod diff;
mod explain_panel;
mod files;
mod frame_time;
mod legibility;
mod model_picker;
mod panel;
mod record_table;
mod record_view;
mod registry_panel;
mod screenshot;
mod serve_switch;
mod status;
mod train_panel;
mod validation_view;
mod window;

pub use bias_panel::{BiasPanel, BiasUiState};
pub use compare_panel::{ComparePanel, CompareUiState};
pub use dataset_panel::{DatasetPanel, DatasetTab, Filters};
pub use explain_panel::{ExplainPanel, ExplainUiState, Highlight};
pub use frame_time::{FrameTimes, quantile};
pub use panel::{Panel, PanelContext, Request};
pub use registry_panel::{RegistryPanel, RegistryUiState};
pub use screenshot::screenshots;
pub use train_panel::{TrainPanel, TrainTab, TrainUiState};
pub use window::{DEFAULT_SIZE, default_models_dir, default_project_dir, run};

use crate::data::dataset::OpenOptions;
use crate::engine::{Command, Engine, EvalRequest, Event};
use crate::eval::job::EvalOptions;
use crate::eval::job::target::Target;
use crate::project::{ModelEntry, OpenProject};
use crossbeam_channel::Receiver;
use files::{Pick, PickedFile};
use model_picker::{ModelAction, ModelPicker, ModelRequest};
use serde::{Deserialize, Serialize};
use status::StatusLine;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use window::EguiNotifier;

/// The panels the top bar offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PanelKind {
    #[default]
    Dataset,
    Train,
    Compare,
    Bias,
    Explain,
    Registry,
}

impl PanelKind {
    pub const ALL: [PanelKind; 6] = [
        PanelKind::Dataset,
        PanelKind::Train,
        PanelKind::Compare,
        PanelKind::Bias,
        PanelKind::Explain,
        PanelKind::Registry,
    ];

    /// The digit of the panel's Ctrl shortcut.
    pub fn shortcut_digit(self) -> u8 {
        match self {
            PanelKind::Dataset => 1,
            PanelKind::Train => 2,
            PanelKind::Compare => 3,
            PanelKind::Bias => 4,
            PanelKind::Explain => 5,
            PanelKind::Registry => 6,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PanelKind::Dataset => "Dataset",
            PanelKind::Train => "Train",
            PanelKind::Compare => "Compare",
            PanelKind::Bias => "Bias",
            PanelKind::Explain => "Explain",
            PanelKind::Registry => "Registry",
        }
    }
}

/// What survives a restart (window geometry is eframe's own).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AppState {
    pub panel: PanelKind,
    pub dark: bool,
    pub last_project: Option<PathBuf>,
    pub last_dataset: Option<PathBuf>,
    pub recent_projects: Vec<PathBuf>,
    pub dataset: dataset_panel::DatasetUiState,
    pub train: TrainUiState,
    pub compare: CompareUiState,
    pub bias: BiasUiState,
    pub explain: ExplainUiState,
    pub registry: RegistryUiState,
}

impl Default for AppState {
    fn default() -> Self {
        Self {
            panel: PanelKind::Dataset,
            dark: true,
            last_project: None,
            last_dataset: None,
            recent_projects: Vec::new(),
            dataset: Default::default(),
            train: TrainUiState::default(),
            compare: CompareUiState::default(),
            bias: BiasUiState::default(),
            explain: ExplainUiState::default(),
            registry: RegistryUiState::default(),
        }
    }
}

pub struct LabLensApp {
    pub state: AppState,
    pub engine: Engine,
    pub project: Option<OpenProject>,
    /// The project has changes that Save would write.
    unsaved: bool,
    pub dataset: DatasetPanel,
    pub train: TrainPanel,
    pub compare: ComparePanel,
    pub bias: BiasPanel,
    pub explain: ExplainPanel,
    pub registry: RegistryPanel,
    model: ModelPicker,
    frame_times: FrameTimes,
    status: StatusLine,
    picked_files: Option<Receiver<PickedFile>>,
    screenshot: Option<screenshot::Script>,
    /// The part of the left panel its contents filled last frame, for screenshots of it.
    sidebar: egui::Rect,
}

impl LabLensApp {
    /// Builds the app over `ctx`; `project` wins over the persisted last project; the model
    /// picker offers the models found in `models_dir`.
    pub fn new(
        ctx: &egui::Context,
        state: AppState,
        project: Option<PathBuf>,
        models_dir: PathBuf,
    ) -> Self {
        let engine = Engine::start(EguiNotifier(ctx.clone()));
        let mut app = Self {
            dataset: DatasetPanel::new(state.dataset.clone()),
            train: TrainPanel::new(state.train.clone()),
            compare: ComparePanel::new(state.compare.clone()),
            bias: BiasPanel::new(state.bias.clone()),
            explain: ExplainPanel::new(state.explain.clone()),
            registry: RegistryPanel::new(state.registry.clone()),
            frame_times: FrameTimes::default(),
            state,
            engine,
            project: None,
            unsaved: false,
            model: ModelPicker::new(models_dir),
            status: StatusLine::default(),
            picked_files: None,
            screenshot: None,
            sidebar: egui::Rect::NOTHING,
        };
        app.apply_theme(ctx);
        let to_open = project
            .or_else(|| app.state.last_project.clone())
            .unwrap_or_else(default_project_dir);
        app.open_project(&to_open);
        app
    }

    fn apply_theme(&self, ctx: &egui::Context) {
        ctx.set_theme(if self.state.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
        // Scroll bars beside the text they scroll, never over its last characters.
        ctx.all_styles_mut(|style| style.spacing.scroll = egui::style::ScrollStyle::solid());
    }

    pub fn open_project(&mut self, path: &Path) {
        match OpenProject::open(path) {
            Ok(p) => {
                self.state.last_project = Some(p.dir.clone());
                self.state.recent_projects.retain(|r| r != &p.dir);
                self.state.recent_projects.insert(0, p.dir.clone());
                self.state.recent_projects.truncate(8);
                let first = p.project.datasets.first().map(|d| p.dataset_path(d));
                let remembered = self
                    .state
                    .last_dataset
                    .clone()
                    .filter(|d| p.project.datasets.iter().any(|e| &p.dataset_path(e) == d));
                let model = p.model();
                for panel in self.panels() {
                    panel.set_project(&p.dir);
                }
                if !p.warnings.is_empty() {
                    self.status.error(p.warnings.join("; "));
                }
                self.project = Some(p);
                self.unsaved = false;
                if let Some(path) = remembered.or(first) {
                    self.open_dataset(path);
                }
                self.request_model(model, false);
            }
            Err(e) => self
                .status
                .error(format!("Could not open the project: {e}")),
        }
    }

    pub fn open_dataset(&mut self, path: PathBuf) {
        let mut options = OpenOptions::default();
        if let Some(p) = &self.project {
            options.split = p.project.split;
            options.load = p.load_options(&path);
            options.load.default_task = Some(p.project.task);
        }
        self.state.last_dataset = Some(path.clone());
        self.engine.submit(Command::OpenDataset { path, options });
    }

    /// Adds a dataset file to the open project (if any) and opens it.
    fn add_and_open_dataset(&mut self, path: PathBuf) {
        if let Some(p) = &mut self.project {
            let before = p.project.datasets.len();
            p.add_dataset(&path);
            self.unsaved |= p.project.datasets.len() != before;
        }
        self.open_dataset(path);
    }

    /// Loads a model on the engine as soon as it is idle (after the dataset a project opens).
    /// A model the user `chosen` becomes the project's model once it has loaded.
    pub fn request_model(&mut self, entry: ModelEntry, chosen: bool) {
        self.model.wait(ModelRequest { entry, chosen });
        self.start_waiting_model();
    }

    fn start_waiting_model(&mut self) {
        if self.engine.is_busy() {
            return;
        }
        if let Some(request) = self.model.take_waiting() {
            let spec = request.entry.spec();
            if let Some(job) = self.engine.submit(Command::LoadModel { spec }) {
                self.model.started(job, request);
            }
        }
    }

    /// Lets `act` use the Train panel with what it reads from the rest of the window.
    fn with_train_panel(&mut self, act: impl FnOnce(&mut TrainPanel, &PanelContext<'_>)) {
        let ctx = PanelContext {
            engine: &self.engine,
            project: self.project.as_ref(),
            model: self.model.loaded_entry(),
            dataset: self.dataset.view(),
        };
        act(&mut self.train, &ctx);
    }

    /// Starts a run of the Train panel's form on the sidebar's model.
    pub fn start_training(&mut self) {
        self.with_train_panel(|panel, ctx| panel.start(ctx));
    }

    /// Generates in the Train panel's playground with its current choices.
    pub fn generate_in_playground(&mut self) {
        self.with_train_panel(|panel, ctx| panel.generate(ctx));
    }

    /// Evaluates a run's adapter (or the base model) of the open project on the engine; the
    /// Compare panel reloads when it finishes.
    pub fn evaluate(&mut self, target: Target, options: EvalOptions) {
        let Some(project) = &self.project else {
            self.status
                .error("Open a project first: evaluation runs over its dataset.".into());
            return;
        };
        self.engine.submit(Command::Evaluate(Box::new(EvalRequest {
            project_dir: project.dir.clone(),
            target,
            options,
        })));
    }

    /// Does what the panel `kind` asked of the window since it was last asked.
    pub fn act_on_requests(&mut self, kind: PanelKind) {
        for request in self.panel_mut(kind).take_requests() {
            self.handle_request(kind, request);
        }
    }

    pub fn save_project(&mut self) {
        if let Some(p) = &self.project {
            match p.save() {
                Ok(()) => {
                    self.unsaved = false;
                    self.status.info(format!(
                        "Saved {}",
                        p.dir.join(crate::project::PROJECT_FILE).display()
                    ));
                }
                Err(e) => self
                    .status
                    .error(format!("Could not save the project: {e}")),
            }
        }
    }

    /// Every panel, in the order of the tabs.
    fn panels(&mut self) -> [&mut dyn Panel; 6] {
        [
            &mut self.dataset,
            &mut self.train,
            &mut self.compare,
            &mut self.bias,
            &mut self.explain,
            &mut self.registry,
        ]
    }

    fn panel_mut(&mut self, kind: PanelKind) -> &mut dyn Panel {
        match kind {
            PanelKind::Dataset => &mut self.dataset,
            PanelKind::Train => &mut self.train,
            PanelKind::Compare => &mut self.compare,
            PanelKind::Bias => &mut self.bias,
            PanelKind::Explain => &mut self.explain,
            PanelKind::Registry => &mut self.registry,
        }
    }

    fn handle_event(&mut self, event: Event) {
        for panel in self.panels() {
            panel.on_event(&event);
        }
        match &event {
            Event::Failed { job, error, .. } => self.model.ended(*job, Some(error.clone())),
            Event::Cancelled { job } => self.model.ended(*job, None),
            _ => {}
        }
        match event {
            Event::DatasetOpened { dataset, .. } => {
                self.dataset.set_dataset(Arc::from(dataset));
            }
            Event::ModelLoaded { job, info } => {
                let chosen = self.model.finished(job, info).filter(|r| r.chosen);
                if let (Some(request), Some(p)) = (chosen, &mut self.project) {
                    let before = p.project.model.clone();
                    p.set_model(request.entry);
                    self.unsaved |= p.project.model != before;
                }
            }
            other => self.status.on_event(&other),
        }
    }

    fn handle_shortcuts(&mut self, ctx: &egui::Context) {
        let (open, save, theme, frame_times) = ctx.input_mut(|i| {
            (
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::O),
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::S),
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::T),
                i.consume_key(egui::Modifiers::NONE, egui::Key::F12),
            )
        });
        if frame_times {
            self.frame_times.shown = !self.frame_times.shown;
        }
        if open {
            self.pick(Pick::Dataset);
        }
        if save {
            self.save_project();
        }
        if theme {
            self.state.dark = !self.state.dark;
            self.apply_theme(ctx);
        }
        for panel in PanelKind::ALL.iter() {
            let key = egui::Key::from_name(&panel.shortcut_digit().to_string());
            if key
                .is_some_and(|k| ctx.input_mut(|inp| inp.consume_key(egui::Modifiers::COMMAND, k)))
            {
                self.state.panel = *panel;
            }
        }
    }

    /// Drains engine events and file-dialog results; runs before every frame, even hidden.
    pub fn drain(&mut self, ctx: &egui::Context) {
        for event in self.engine.poll() {
            self.handle_event(event);
        }
        if let Some(rx) = &self.picked_files {
            let picked: Vec<PickedFile> = rx.try_iter().collect();
            for p in picked {
                self.handle_picked(p);
            }
        }
        self.start_waiting_model();
        self.handle_dropped_files(ctx);
        self.handle_shortcuts(ctx);
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("top_bar").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("Lab Lens");
                ui.separator();
                for panel in PanelKind::ALL {
                    ui.selectable_value(&mut self.state.panel, panel, panel.label());
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let icon = if self.state.dark {
                        "Light theme"
                    } else {
                        "Dark theme"
                    };
                    if ui.button(icon).on_hover_text("Ctrl+T").clicked() {
                        self.state.dark = !self.state.dark;
                        self.apply_theme(ui.ctx());
                    }
                    ui.toggle_value(&mut self.frame_times.shown, "Frame time")
                        .on_hover_text("Show how long each frame takes to build (F12)");
                    if ui
                        .button("Save PNG")
                        .on_hover_text("Save this panel as an image")
                        .clicked()
                    {
                        self.screenshot =
                            Some(screenshot::Script::single_panel(self.panel_png_path()));
                    }
                });
            });
        });
    }

    fn act(&mut self, action: browser::Action) {
        match action {
            browser::Action::OpenDataset(p) => self.open_dataset(p),
            browser::Action::OpenProject(p) => self.open_project(&p),
            browser::Action::PickDataset => self.pick(Pick::Dataset),
            browser::Action::PickProject => self.pick(Pick::Project),
            browser::Action::SaveProject => self.save_project(),
            browser::Action::Model(ModelAction::Load(entry)) => self.request_model(entry, true),
            browser::Action::Model(ModelAction::PickFolder) => self.pick(Pick::ModelFolder),
            browser::Action::Model(ModelAction::PickFile) => self.pick(Pick::ModelFile),
        }
    }

    /// Draws the panel shown, then does what it asked.
    fn panel_ui(&mut self, ui: &mut egui::Ui) {
        let kind = self.state.panel;
        // The Dataset panel draws its own view; the others read it through the context.
        let dataset = self.dataset.shared_view();
        let ctx = PanelContext {
            engine: &self.engine,
            project: self.project.as_ref(),
            model: self.model.loaded_entry(),
            dataset: dataset.as_deref(),
        };
        // The fields one by one, not `panel_mut`: the context borrows the others.
        let panel: &mut dyn Panel = match kind {
            PanelKind::Dataset => &mut self.dataset,
            PanelKind::Train => &mut self.train,
            PanelKind::Compare => &mut self.compare,
            PanelKind::Bias => &mut self.bias,
            PanelKind::Explain => &mut self.explain,
            PanelKind::Registry => &mut self.registry,
        };
        panel.ui(ui, &ctx);
        self.act_on_requests(kind);
    }

    fn handle_request(&mut self, from: PanelKind, request: Request) {
        match request {
            Request::PickDataset => self.pick(Pick::Dataset),
            Request::Evaluate(target) => self.evaluate(target, EvalOptions::default()),
            Request::CompareSlice { source, key } => {
                let filters = bias_panel::filters_of(&key);
                bias_panel::open_in_compare(&mut self.compare, source, filters);
                self.state.panel = PanelKind::Compare;
            }
            Request::Submit(command) => {
                let job = self.engine.submit(command);
                self.panel_mut(from).submitted(job);
            }
            Request::Cancel => self.engine.cancel(),
        }
    }

    fn panel_png_path(&self) -> PathBuf {
        let base = self
            .project
            .as_ref()
            .map(|p| p.dir.join("screenshots"))
            .unwrap_or_else(|| PathBuf::from("screenshots"));
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        base.join(format!(
            "{}-{stamp}.png",
            self.state.panel.label().to_lowercase()
        ))
    }
}

impl eframe::App for LabLensApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.drain(ctx);
        if let Some(mut script) = self.screenshot.take()
            && !script.step(ctx, self)
        {
            self.screenshot = Some(script);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = std::time::Instant::now();
        self.top_bar(ui);
        self.status.paused = self.train.is_paused();
        // A clinician reviewing sees neither the sidebar's model nor the status line's jobs:
        // both would say which program wrote which version.
        let reviewing =
            matches!(self.state.panel, PanelKind::Compare) && self.compare.state.review_mode;
        if !reviewing {
            status::show(ui, &mut self.status, &self.engine, self.model.loaded());
        }
        let (action, sidebar) = if reviewing {
            (None, egui::Rect::NOTHING)
        } else {
            browser::show(
                ui,
                self.project.as_ref(),
                self.unsaved,
                &self.state,
                self.dataset.path(),
                &mut self.model,
                &mut self.status.serve,
            )
        };
        self.sidebar = sidebar;
        if let Some(action) = action {
            self.act(action);
        }
        egui::CentralPanel::default().show(ui, |ui| self.panel_ui(ui));
        self.frame_times.record(started.elapsed());
        self.frame_times.show(ui.ctx());
        if let Some(script) = &mut self.screenshot {
            script.after_frame(ui.ctx());
        }
    }

    /// Called on closing too: a comment typed into a review is not lost.
    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        let mut state = std::mem::take(&mut self.state);
        for panel in self.panels() {
            panel.save_state(&mut state);
        }
        self.state = state;
        eframe::set_value(storage, eframe::APP_KEY, &self.state);
    }
}

#[cfg(test)]
mod tests;
