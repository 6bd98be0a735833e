//! What the Registry panel draws: the action bar and its form, the last action's outcome, the
//! versions table and the alias history.

use super::actions::{self, ActionOutcome, Form};
use super::chips::{ALIAS, FAIL, PASS, UNMEASURED, chip, gate_chip, short_time};
use super::{ModelView, RegistryPanel};
use crate::app::combo;
use crate::registry::PRODUCTION;
use crate::registry::version::VersionRecord;
use std::collections::BTreeMap;

pub fn show(panel: &mut RegistryPanel, ui: &mut egui::Ui) {
    if panel.project_dir.is_none() {
        ui.label("Open a project: its registry is shown here.");
        return;
    }
    if panel.loaded.is_none() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Reading the registry…");
        });
        return;
    }
    action_bar(panel, ui);
    form_ui(panel, ui);
    outcome_ui(panel, ui);
    ui.separator();
    let errors: Vec<String> = panel
        .loaded
        .iter()
        .flat_map(|l| l.models.iter().filter_map(|m| m.as_ref().err().cloned()))
        .collect();
    for e in &errors {
        ui.colored_label(ui.visuals().error_fg_color, format!("Not trusted: {e}"));
    }
    if panel.current().is_none() {
        if errors.is_empty() {
            empty(ui);
        }
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("registry_scroll")
        .show(ui, |ui| {
            versions_table(panel, ui);
            ui.add_space(8.0);
            super::detail::detail(panel, ui);
            ui.add_space(8.0);
            super::detail::comparison(panel, ui);
            ui.add_space(8.0);
            history(panel, ui);
        });
}

fn empty(ui: &mut egui::Ui) {
    ui.vertical_centered(|ui| {
        ui.add_space(60.0);
        ui.heading("No registered model yet");
        ui.label(
            "Train and evaluate a run, then Register it here (or lablens registry add): \
             it becomes version 1, and Promote moves production to it through the gates.",
        );
    });
}

fn action_bar(panel: &mut RegistryPanel, ui: &mut egui::Ui) {
    let names: Vec<String> = panel.loaded.as_ref().map(|l| l.names()).unwrap_or_default();
    let busy = panel.is_busy();
    ui.horizontal_wrapped(|ui| {
        if names.len() > 1 {
            let choices: Vec<Option<String>> = names.iter().cloned().map(Some).collect();
            let before = panel.state.model.clone();
            combo::choice(ui, "Model", &mut panel.state.model, &choices, |n| {
                n.clone().unwrap_or_default()
            });
            if panel.state.model != before {
                panel.state.selected = None;
                panel.state.compare = [None, None];
                panel.settle_choices();
            }
        } else if let Some(name) = names.first() {
            ui.strong(name);
        }
        ui.separator();
        let runs = panel.loaded.as_ref().map_or(0, |l| l.runs.len());
        let register = ui
            .add_enabled(!busy && runs > 0, egui::Button::new("Register…"))
            .on_hover_text("Register a run with a final adapter and eval.json as a new version")
            .on_disabled_hover_text("No run of the project has an adapter and eval.json yet");
        if register.clicked() {
            panel.form = Some(Form::register(panel));
        }
        let selected = panel.state.selected.filter(|_| panel.current().is_some());
        let promote = ui
            .add_enabled(!busy && selected.is_some(), egui::Button::new("Promote…"))
            .on_hover_text("Move an alias (production by default) to the selected version");
        if let (true, Some(v)) = (promote.clicked(), selected) {
            panel.form = Some(Form::promote(v));
        }
        let has_alias = panel
            .current()
            .is_some_and(|m| !m.listing.aliases.is_empty());
        let back = ui
            .add_enabled(!busy && has_alias, egui::Button::new("Roll back…"))
            .on_hover_text("Move an alias back to the version it named before");
        if back.clicked() {
            panel.form = Some(Form::rollback());
        }
        if ui
            .add_enabled(!busy, egui::Button::new("Look again"))
            .clicked()
        {
            use crate::app::Panel;
            panel.refresh();
        }
        if busy {
            ui.spinner();
            if let Some(a) = &panel.acting {
                ui.label(match a {
                    actions::Action::Register { .. } => "Registering…",
                    actions::Action::Promote { .. } => "Promoting…",
                    actions::Action::Rollback { .. } => "Rolling back…",
                });
            }
        }
    });
}

fn form_ui(panel: &mut RegistryPanel, ui: &mut egui::Ui) {
    let Some(mut form) = panel.form.clone() else {
        return;
    };
    let runs = panel
        .loaded
        .as_ref()
        .map(|l| l.runs.clone())
        .unwrap_or_default();
    let aliases: Vec<String> = panel
        .current()
        .map(|m| m.listing.aliases.keys().cloned().collect())
        .unwrap_or_default();
    let mut close = false;
    let mut confirm = false;
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.horizontal_wrapped(|ui| match &mut form {
            Form::Register { run, name, note } => {
                ui.strong("Register");
                let choices: Vec<Option<String>> = runs.iter().cloned().map(Some).collect();
                combo::choice(ui, "Run", run, &choices, |r| r.clone().unwrap_or_default());
                text_field(ui, "as model", name, 140.0);
                text_field(ui, "Note", note, 240.0);
            }
            Form::Promote {
                version,
                alias,
                reason,
                force,
            } => {
                ui.strong(format!("Promote version {version}"));
                text_field(ui, "to alias", alias, 110.0);
                text_field(ui, "Reason", reason, 280.0);
                ui.checkbox(force, "force")
                    .on_hover_text("Move even when a check fails; needs a reason");
            }
            Form::Rollback { alias, reason } => {
                ui.strong("Roll back");
                let mut choices = aliases.clone();
                if !choices.contains(alias) {
                    choices.push(alias.clone());
                }
                combo::choice(ui, "alias", alias, &choices, Clone::clone);
                text_field(ui, "Reason", reason, 280.0);
            }
        });
        for line in actions::confirmation(&form, panel) {
            ui.label(line);
        }
        let action = form.action(panel.state.model.as_deref());
        ui.horizontal(|ui| {
            let label = match form {
                Form::Register { .. } => "Confirm: register",
                Form::Promote { .. } => "Confirm: promote",
                Form::Rollback { .. } => "Confirm: roll back",
            };
            let ok = action.is_ok() && !panel.is_busy();
            confirm = ui.add_enabled(ok, egui::Button::new(label)).clicked();
            close = ui.button("Cancel").clicked();
            if let Err(why) = &action {
                ui.colored_label(ui.visuals().warn_fg_color, why);
            }
        });
        if confirm && let Ok(action) = action {
            panel.perform(action);
        }
    });
    if close {
        panel.form = None;
    } else if panel.form.is_some() {
        panel.form = Some(form);
    }
}

fn text_field(ui: &mut egui::Ui, label: &str, text: &mut String, width: f32) {
    let id = ui.label(label).id;
    ui.add(egui::TextEdit::singleline(text).desired_width(width))
        .labelled_by(id);
}

fn outcome_ui(panel: &RegistryPanel, ui: &mut egui::Ui) {
    let Some(outcome) = &panel.outcome else {
        return;
    };
    let error = ui.visuals().error_fg_color;
    match outcome {
        Err(e) => {
            ui.colored_label(error, format!("Failed: {e}"));
        }
        Ok(ActionOutcome::Registered {
            name,
            version,
            run,
            notes,
        }) => {
            ui.label(format!(
                "Registered run {run} as version {version} of {name}."
            ));
            for n in notes {
                ui.weak(n);
            }
        }
        Ok(ActionOutcome::Moved(m)) => {
            let from = m.from.map_or("nothing".into(), |v| format!("version {v}"));
            if m.moved {
                let how = match (m.rollback, m.forced) {
                    (true, _) => "rolled back",
                    (false, true) => "moved (forced past a failed check)",
                    (false, false) => "moved",
                };
                ui.label(format!("{} {how}: {from} to version {}.", m.alias, m.to));
            } else {
                ui.colored_label(
                    error,
                    format!(
                        "Refused: {} stays at {from}; version {} did not pass:",
                        m.alias, m.to
                    ),
                );
                for g in m.gates.iter().filter(|g| !g.passed()) {
                    ui.colored_label(error, format!("  gate {}", g.describe()));
                }
                if let Some(d) = m.degradation.as_ref().filter(|d| d.degraded) {
                    ui.colored_label(error, format!("  degradation check: {}", d.describe()));
                }
            }
            for n in &m.notes {
                ui.weak(n);
            }
        }
    }
}

/// `0.4210 [0.3980, 0.4433]` of the version's `metric`, or a dash.
pub(super) fn measured_text(record: &VersionRecord, metric: &str) -> String {
    let Some(def) = crate::registry::gates::metric(metric) else {
        return "—".into();
    };
    match record.measure(def) {
        Some(m) => match m.interval {
            Some([low, high]) => format!("{:.4} [{low:.4}, {high:.4}]", m.value),
            None => format!("{:.4}", m.value),
        },
        None => "—".into(),
    }
}

/// Version → its aliases.
fn aliases_by_version(model: &ModelView) -> BTreeMap<u32, Vec<String>> {
    let mut by: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (alias, v) in &model.listing.aliases {
        by.entry(*v).or_default().push(alias.clone());
    }
    by
}

fn primary_name(panel: &RegistryPanel) -> &'static str {
    panel
        .loaded
        .as_ref()
        .and_then(|l| l.settings)
        .map_or("rouge1", |(m, _)| m.name)
}

fn versions_table(panel: &mut RegistryPanel, ui: &mut egui::Ui) {
    let Some(model) = panel.current() else { return };
    let primary = primary_name(panel);
    let by_version = aliases_by_version(model);
    let mut clicked = None;
    ui.heading(format!("Versions of {}", model.name));
    egui::Grid::new("registry_versions")
        .striped(true)
        .spacing([14.0, 6.0])
        .show(ui, |ui| {
            for h in ["version", "run", "created", primary, "gates", "aliases"] {
                ui.strong(if h == primary {
                    format!("{h} (95% interval)")
                } else {
                    h.to_string()
                });
            }
            ui.end_row();
            for v in model.listing.versions.iter().rev() {
                let selected = panel.state.selected == Some(v.version);
                if ui
                    .selectable_label(selected, format!("v{}", v.version))
                    .on_hover_text("Show this version's detail")
                    .clicked()
                {
                    clicked = Some(v.version);
                }
                ui.label(&v.run);
                ui.label(short_time(&v.created));
                ui.label(measured_text(v, primary));
                ui.horizontal(|ui| {
                    for g in &v.gates {
                        gate_chip(ui, g);
                    }
                });
                ui.horizontal(|ui| {
                    for alias in by_version.get(&v.version).into_iter().flatten() {
                        let fill = if alias == PRODUCTION { PASS } else { ALIAS };
                        chip(ui, alias, fill);
                    }
                });
                ui.end_row();
            }
        });
    if clicked.is_some() {
        panel.state.selected = clicked;
    }
}

fn history(panel: &RegistryPanel, ui: &mut egui::Ui) {
    let Some(model) = panel.current() else { return };
    ui.heading("Alias history");
    if model.history.moves.is_empty() {
        ui.label("No alias has moved yet: Promote moves one.");
        return;
    }
    for (_, m) in model.history.moves.iter().rev() {
        ui.horizontal_wrapped(|ui| {
            ui.monospace(short_time(&m.when));
            let fill = if m.alias == PRODUCTION { PASS } else { ALIAS };
            chip(ui, &m.alias, fill);
            let from = m.from.map_or("—".into(), |v| format!("v{v}"));
            ui.strong(format!("{from} to v{}", m.to));
            ui.label(format!("by {}", m.who));
            if m.rollback {
                chip(ui, "rollback", UNMEASURED);
            }
            if m.forced {
                chip(ui, "forced", FAIL);
            }
        });
        ui.indent(("registry_move", &m.when, &m.alias), |ui| {
            ui.weak(m.reason.as_deref().unwrap_or("no reason given"));
        });
    }
}
