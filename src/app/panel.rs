//! The contract the window's panels keep, so that the window treats them alike: each hears when
//! a project opens, looks again at what the project holds when asked, sees every engine event,
//! writes its part of the saved state, and draws itself; what it needs from the window (a file
//! dialog, an evaluation, another panel, an engine job) it asks for as [`Request`]s.

use super::AppState;
use crate::analysis::bias::SliceKey;
use crate::data::dataset::DatasetView;
use crate::engine::{Command, Engine, Event, JobId, ModelInfo};
use crate::eval::job::target::Target;
use crate::project::{ModelEntry, OpenProject};
use std::path::Path;

/// What a panel reads from the rest of the window each frame.
pub struct PanelContext<'a> {
    pub engine: &'a Engine,
    pub project: Option<&'a OpenProject>,
    /// The model the sidebar loaded, which new runs train.
    pub model: Option<(&'a ModelEntry, &'a ModelInfo)>,
    /// The dataset open in the Dataset panel: estimates and playground records.
    pub dataset: Option<&'a DatasetView>,
}

/// What a panel asks of the window.
pub enum Request {
    /// A file dialog for a dataset to add to the project.
    PickDataset,
    /// An evaluation of the base model or a run with the default options.
    Evaluate(Target),
    /// The Compare panel on the prediction set `source`, its rows filtered to the slice `key`.
    CompareSlice { source: String, key: SliceKey },
    /// A job for the engine; the panel hears whether it started through [`Panel::submitted`].
    Submit(Command),
    /// Cancel the engine's running job.
    Cancel,
}

pub trait Panel {
    /// The project in `dir` is open: show its data (what another project's was goes).
    fn set_project(&mut self, dir: &Path);

    /// Look again at what the project holds.
    fn refresh(&mut self);

    /// An engine event; every panel sees every event, and a finished job may have written to
    /// the project.
    fn on_event(&mut self, _event: &Event) {}

    /// Writes its part of what the window keeps between sessions.
    fn save_state(&mut self, state: &mut AppState);

    fn ui(&mut self, ui: &mut egui::Ui, ctx: &PanelContext<'_>);

    /// What it asked for since the last call.
    fn take_requests(&mut self) -> Vec<Request> {
        Vec::new()
    }

    /// The engine took the job it asked for (`Some` with its id) or refused it as busy.
    fn submitted(&mut self, _job: Option<JobId>) {}
}
