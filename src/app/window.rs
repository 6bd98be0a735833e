//! The workbench's window: its size and options, where the demo project and the models are
//! found, and the run loop that opens it.

use super::{AppState, LabLensApp};
use crate::engine::Notifier;
use std::path::{Path, PathBuf};

pub(super) struct EguiNotifier(pub(super) egui::Context);

impl Notifier for EguiNotifier {
    fn notify(&self) {
        self.0.request_repaint();
    }
}

/// `relative` under the working directory when `found` holds there, else beside the crate's
/// sources (a build tree), else under the working directory.
fn from_cwd_or_crate(relative: &str, found: impl Fn(&Path) -> bool) -> PathBuf {
    let candidates = [
        PathBuf::from(relative),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative),
    ];
    candidates
        .iter()
        .find(|p| found(p))
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

/// The folder the demo project lives in, found from the working directory or next to the binary.
pub fn default_project_dir() -> PathBuf {
    from_cwd_or_crate("projects/demo", |p| {
        p.join(crate::project::PROJECT_FILE).exists()
    })
}

/// The folder `scripts/fetch-smollm2.sh` downloads models into.
pub fn default_models_dir() -> PathBuf {
    from_cwd_or_crate("models", Path::is_dir)
}

/// The window's size on a first start, in points: legible at it and down to 1024 × 768.
pub const DEFAULT_SIZE: [f32; 2] = [1400.0, 880.0];

pub(super) fn native_options(title: &str, size: [f32; 2], persist: bool) -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(title)
            .with_inner_size(size)
            .with_min_inner_size([800.0, 500.0])
            .with_drag_and_drop(true),
        persist_window: persist,
        ..Default::default()
    }
}

/// Opens the workbench window and returns when it is closed.
pub fn run(project: Option<PathBuf>) -> Result<(), String> {
    eframe::run_native(
        "lablens",
        native_options("Lab Lens", DEFAULT_SIZE, true),
        Box::new(move |cc| {
            let state = cc
                .storage
                .and_then(|s| eframe::get_value::<AppState>(s, eframe::APP_KEY))
                .unwrap_or_default();
            Ok(Box::new(LabLensApp::new(
                &cc.egui_ctx,
                state,
                project,
                default_models_dir(),
            )))
        }),
    )
    .map_err(|e| format!("could not open the window: {e}"))
}
