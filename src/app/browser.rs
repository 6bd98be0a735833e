//! The left panel: the open project, its datasets, the model and the recent projects.

use super::AppState;
use super::model_picker::{self, ModelAction, ModelPicker};
use super::serve_switch::ServeSwitch;
use crate::project::OpenProject;
use std::path::{Path, PathBuf};

pub enum Action {
    OpenDataset(PathBuf),
    OpenProject(PathBuf),
    PickDataset,
    PickProject,
    SaveProject,
    Model(ModelAction),
}

/// Draws the panel; returns what the user asked for and the part of the panel its contents
/// fill (for screenshots of it).
pub fn show(
    ui: &mut egui::Ui,
    project: Option<&OpenProject>,
    unsaved: bool,
    state: &AppState,
    open_dataset: Option<&Path>,
    model: &mut ModelPicker,
    serve: &mut ServeSwitch,
) -> (Option<Action>, egui::Rect) {
    let mut action = None;
    let panel = egui::Panel::left("browser")
        .resizable(true)
        .default_size(230.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                project_section(ui, project, open_dataset, &mut action);
                ui.add_space(8.0);
                ui.horizontal_wrapped(|ui| {
                    if ui
                        .button("Open dataset…")
                        .on_hover_text("Ctrl+O, or drop a file on the window")
                        .clicked()
                    {
                        action = Some(Action::PickDataset);
                    }
                    if ui.button("Open project…").clicked() {
                        action = Some(Action::PickProject);
                    }
                });
                if project.is_some() {
                    ui.horizontal(|ui| {
                        if ui.button("Save project").on_hover_text("Ctrl+S").clicked() {
                            action = Some(Action::SaveProject);
                        }
                        if unsaved {
                            ui.weak("unsaved changes");
                        }
                    });
                }
                ui.add_space(8.0);
                if let Some(a) = model_picker::section(ui, model) {
                    action = Some(Action::Model(a));
                }
                ui.add_space(8.0);
                let ctx = ui.ctx().clone();
                serve.section(ui, project, move || ctx.request_repaint());
                let others: Vec<&PathBuf> = state
                    .recent_projects
                    .iter()
                    .filter(|p| project.is_none_or(|o| &o.dir != *p))
                    .collect();
                if !others.is_empty() {
                    ui.add_space(8.0);
                    ui.strong("Recent projects");
                    for p in others {
                        let name = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        if ui
                            .link(name)
                            .on_hover_text(p.display().to_string())
                            .clicked()
                        {
                            action = Some(Action::OpenProject(p.clone()));
                        }
                    }
                }
                ui.min_rect()
            })
        });
    let mut filled = panel.response.rect;
    filled.max.y = filled.max.y.min(panel.inner.inner.max.y + 8.0);
    (action, filled)
}

fn project_section(
    ui: &mut egui::Ui,
    project: Option<&OpenProject>,
    open_dataset: Option<&Path>,
    action: &mut Option<Action>,
) {
    let Some(p) = project else {
        ui.label("No project open. Open a project, or a dataset file on its own.");
        return;
    };
    ui.heading(&p.project.name);
    ui.label(p.project.task.label());
    ui.small(format!(
        "Template: {} · split {}/{}/{} (seed {})",
        p.project.template.name(),
        p.project.split.ratios[0],
        p.project.split.ratios[1],
        p.project.split.ratios[2],
        p.project.split.seed
    ));
    ui.add_space(6.0);
    ui.strong("Datasets");
    if p.project.datasets.is_empty() {
        ui.label("None yet: open or drop a dataset file.");
    }
    for entry in &p.project.datasets {
        let path = p.dataset_path(entry);
        let selected = open_dataset.is_some_and(|o| o == path);
        let exists = path.exists();
        let mut text = egui::RichText::new(&entry.name);
        if !exists {
            text = text.strikethrough();
        }
        let resp = ui
            .selectable_label(selected, text)
            .on_hover_text(if exists {
                path.display().to_string()
            } else {
                format!("Missing: {}", path.display())
            });
        if resp.clicked() && !selected {
            *action = Some(Action::OpenDataset(path));
        }
    }
}
