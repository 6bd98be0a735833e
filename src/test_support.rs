//! Fixtures shared by the unit tests of several modules.

use crate::app::{Panel, PanelContext, Request};
use crate::engine::{Command, Engine, NoNotifier};
use crate::project::OpenProject;
use std::path::Path;

/// Draws `panel` as the window would, with no project, model or dataset around it.
pub fn draw_alone(ui: &mut egui::Ui, panel: &mut dyn Panel) {
    thread_local!(static ENGINE: Engine = Engine::start(NoNotifier));
    ENGINE.with(|engine| {
        let ctx = PanelContext {
            engine,
            project: None,
            model: None,
            dataset: None,
        };
        panel.ui(ui, &ctx);
    });
}

/// The engine jobs among what `panel` asked for since it was last asked.
pub fn submitted_jobs(panel: &mut dyn Panel) -> Vec<Command> {
    panel
        .take_requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::Submit(command) => Some(command),
            _ => None,
        })
        .collect()
}

/// A project in `dir` over the first `n` records of the sample discharge set, split by patient
/// with `ratios` (train, validation, test).
pub fn discharge_project(dir: &Path, n: usize, ratios: (f64, f64, f64)) -> OpenProject {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/discharge.jsonl");
    let text = std::fs::read_to_string(sample).expect("sample data");
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(dir.join("discharge.jsonl"), lines.join("\n")).expect("write data");
    let (train, val, test) = ratios;
    std::fs::write(
        dir.join("project.ron"),
        format!(
            r#"(name: "t", task: discharge, template: ChatMl,
            datasets: [(name: "discharge", path: "discharge.jsonl")],
            split: (ratios: ({train:?}, {val:?}, {test:?}), seed: 1))"#
        ),
    )
    .expect("write project");
    OpenProject::open(dir).expect("open project")
}
