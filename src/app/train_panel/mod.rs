//! The Train panel: the configuration form, start / pause / resume / stop, live plots of the
//! running job, the project's runs overlaid and compared, and a playground that generates with
//! and without an adapter. It drives the trainer only through engine commands and never waits.

mod fields;
mod form;
mod live;
mod playground;
mod plots;
mod runs;
mod series;

pub use form::ConfigForm;
pub use live::LiveRun;
pub use playground::Playground;
pub use runs::RunsView;

use super::AppState;
use super::panel::{Panel, PanelContext};
use crate::engine::{Command, Engine, Event, JobId, TrainRequest};
use crate::job::Control;
use crate::project::{ModelEntry, ModelSource};
use crate::train::{TrainEvent, TrainSummary};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TrainTab {
    #[default]
    Live,
    Runs,
    Playground,
}

impl TrainTab {
    pub const ALL: [TrainTab; 3] = [TrainTab::Live, TrainTab::Runs, TrainTab::Playground];

    pub fn label(self) -> &'static str {
        match self {
            TrainTab::Live => "Live",
            TrainTab::Runs => "Runs",
            TrainTab::Playground => "Playground",
        }
    }
}

/// What the panel keeps across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainUiState {
    pub tab: TrainTab,
    /// EMA weight of the smoothed loss.
    pub smoothing: f32,
    pub log_y: bool,
    pub preset: String,
}

impl Default for TrainUiState {
    fn default() -> Self {
        Self {
            tab: TrainTab::Live,
            smoothing: 0.9,
            log_y: false,
            preset: "quick-demo".into(),
        }
    }
}

pub struct TrainPanel {
    pub state: TrainUiState,
    pub form: ConfigForm,
    /// The run on the Live tab: the one training, else the last one.
    pub live: Option<LiveRun>,
    pub runs: RunsView,
    pub playground: Playground,
    project_dir: Option<PathBuf>,
    job: Option<JobId>,
    control: Arc<Control>,
    /// How the last training job ended.
    pub summary: Option<TrainSummary>,
    /// Why the last training job failed, in words.
    pub error: Option<String>,
}

/// The `model` value of a configuration that trains `entry`.
fn model_text(entry: &ModelEntry) -> String {
    match &entry.source {
        ModelSource::Tiny => crate::model::loading::TINY.to_string(),
        ModelSource::Path(p) => p.display().to_string(),
    }
}

fn playground_context<'a>(
    ctx: &PanelContext<'a>,
    runs: &'a [runs::RunRow],
) -> playground::PlaygroundContext<'a> {
    playground::PlaygroundContext {
        engine: ctx.engine,
        dataset: ctx.dataset,
        task: ctx.project.map(|p| p.project.task),
        runs,
        model_loaded: ctx.model.is_some(),
    }
}

impl TrainPanel {
    pub fn new(state: TrainUiState) -> Self {
        Self {
            form: ConfigForm::from_preset(&state.preset),
            state,
            live: None,
            runs: RunsView::default(),
            playground: Playground::default(),
            project_dir: None,
            job: None,
            control: Arc::new(Control::default()),
            summary: None,
            error: None,
        }
    }

    pub fn is_training(&self) -> bool {
        self.job.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.is_training() && self.control.is_paused()
    }

    /// Stop was pressed and the run has not ended yet (it finishes its step and checkpoint).
    pub fn is_stopping(&self) -> bool {
        self.is_training() && self.control.is_stopping()
    }

    /// Adds a training event to the Live tab, whichever job sent it.
    pub fn record(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                run_id,
                run_dir,
                total_steps,
                resumed_from,
                notes,
            } => {
                self.live = Some(LiveRun::new(
                    run_id.clone(),
                    run_dir,
                    *total_steps,
                    *resumed_from,
                    notes.clone(),
                ));
            }
            other => {
                if let Some(live) = &mut self.live {
                    live.record(other);
                    // The Runs table follows the run step by step, not only at checkpoints.
                    if let TrainEvent::Step(m) = other {
                        let best = live.best_val.map(|(_, v)| v);
                        self.runs.follow(&live.run_id, m.step, best, m.elapsed_s);
                    }
                }
            }
        }
    }

    fn end_job(&mut self) {
        self.job = None;
        self.refresh();
    }

    /// Starts a new run of the form's configuration on the sidebar's model.
    pub fn start(&mut self, ctx: &PanelContext<'_>) {
        let (Some(project), Some((entry, _))) = (ctx.project, ctx.model) else {
            return;
        };
        self.form.use_model(
            model_text(entry),
            entry.dequantize,
            entry.device.to_string(),
            entry.dtype.to_string(),
        );
        let (config, issues) = self.form.config();
        if !issues.is_empty() {
            return;
        }
        self.submit(ctx.engine, project.dir.clone(), config, None);
    }

    /// Continues run `id` from its last checkpoint with its own configuration.
    pub fn resume_run(&mut self, ctx: &PanelContext<'_>, id: String) {
        if let Some(project) = ctx.project {
            let (config, _) = self.form.config();
            self.submit(ctx.engine, project.dir.clone(), config, Some(id));
        }
    }

    fn submit(
        &mut self,
        engine: &Engine,
        project_dir: PathBuf,
        config: crate::train::TrainConfig,
        resume: Option<String>,
    ) {
        self.control = Arc::new(Control::default());
        self.error = None;
        self.summary = None;
        self.job = engine.submit(Command::Train(Box::new(TrainRequest {
            project_dir,
            config,
            resume,
            control: Arc::clone(&self.control),
        })));
    }

    /// Generates in the playground with its current choices.
    pub fn generate(&mut self, ctx: &PanelContext<'_>) {
        let pctx = playground_context(ctx, &self.runs.rows);
        self.playground.start(&pctx);
    }

    pub fn pause(&self) {
        self.control.pause();
    }

    pub fn resume(&self) {
        self.control.resume();
    }

    /// Stops the run at its next step boundary, keeping a checkpoint to resume from.
    pub fn stop(&self) {
        self.control.stop();
    }
}

impl Panel for TrainPanel {
    /// Shows the runs of the project in `dir`.
    fn set_project(&mut self, dir: &Path) {
        self.runs.refresh(dir);
        self.project_dir = Some(dir.to_path_buf());
    }

    fn refresh(&mut self) {
        if let Some(dir) = &self.project_dir {
            self.runs.refresh(dir);
        }
    }

    /// Takes the engine's events: those of this panel's jobs change it, the rest pass by.
    fn on_event(&mut self, event: &Event) {
        self.playground.on_event(event);
        let ours = |job: &JobId| Some(*job) == self.job;
        match event {
            Event::Train { job, event } if ours(job) => {
                let started = matches!(event, TrainEvent::Started { .. });
                self.record(event);
                if started {
                    self.refresh();
                }
            }
            Event::Trained { job, summary } if ours(job) => {
                self.summary = Some(summary.clone());
            }
            Event::Failed { job, error, .. } if ours(job) => {
                self.error = Some(error.clone());
                self.end_job();
            }
            Event::Finished { job, .. } | Event::Cancelled { job } if ours(job) => self.end_job(),
            _ => {}
        }
    }

    fn save_state(&mut self, state: &mut AppState) {
        state.train = TrainUiState {
            preset: self.form.preset.clone(),
            ..self.state.clone()
        };
    }

    /// Draws the panel.
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &PanelContext<'_>) {
        ui.horizontal(|ui| {
            for tab in TrainTab::ALL {
                ui.selectable_value(&mut self.state.tab, tab, tab.label());
            }
        });
        ui.separator();
        if let Some(error) = self.error.clone() {
            let dismissed = ui
                .horizontal_wrapped(|ui| {
                    ui.colored_label(
                        ui.visuals().error_fg_color,
                        format!("Training failed: {error}"),
                    );
                    ui.small_button("Dismiss").clicked()
                })
                .inner;
            if dismissed {
                self.error = None;
            }
        }
        match self.state.tab {
            TrainTab::Live => live::show(ui, self, ctx),
            TrainTab::Runs => {
                let busy = ctx.engine.is_busy();
                let action = runs::show(ui, &mut self.runs, &mut self.state, busy);
                if let Some(runs::RunAction::Resume(id)) = action {
                    self.resume_run(ctx, id);
                }
            }
            TrainTab::Playground => {
                let pctx = playground_context(ctx, &self.runs.rows);
                playground::show(ui, &mut self.playground, &pctx);
            }
        }
    }
}

#[cfg(test)]
mod tests;
