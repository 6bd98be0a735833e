//! A version's detail (lineage, the training settings changed since the version before, its
//! gates at registration) and the comparison of two versions' metrics as bars with intervals.

use super::RegistryPanel;
use super::chips::{gate_chip, short_time};
use crate::app::combo;
use crate::registry::gates::{METRICS, Measured};
use crate::registry::version::VersionRecord;
use crate::train::config::flat_fields;
use egui::Color32;
use std::collections::BTreeMap;

/// The bars of the two compared versions.
const BAR_A: Color32 = Color32::from_rgb(66, 165, 245);
const BAR_B: Color32 = Color32::from_rgb(255, 167, 38);

/// The training settings whose values differ between `before` and `after`: key, before, after.
pub fn config_diff(
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> Vec<(String, String, String)> {
    let text = |v: &serde_json::Value| -> BTreeMap<String, String> {
        flat_fields(v)
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_else(|| "—".into())))
            .collect()
    };
    let (a, b) = (text(before), text(after));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let get = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or("—".into());
            (k.clone(), get(&a), get(&b))
        })
        .collect()
}

fn short_sha(sha: Option<&str>) -> String {
    sha.map_or("—".into(), |s| s.get(..12).unwrap_or(s).to_string())
}

pub(super) fn detail(panel: &RegistryPanel, ui: &mut egui::Ui) {
    let Some(model) = panel.current() else { return };
    let versions = &model.listing.versions;
    let Some(pos) = versions
        .iter()
        .position(|v| Some(v.version) == panel.state.selected)
    else {
        return;
    };
    let v = &versions[pos];
    ui.heading(format!("Version {}", v.version));
    lineage(ui, v);
    ui.add_space(6.0);
    config_changes(ui, pos.checked_sub(1).map(|p| &versions[p]), v);
    ui.add_space(6.0);
    gates_at_registration(ui, v);
}

/// Where the version came from: run, registration, base model, data, the bias verdict.
fn lineage(ui: &mut egui::Ui, v: &VersionRecord) {
    let d = &v.dataset;
    let lineage = [
        ("run", v.run.clone()),
        (
            "registered",
            format!("{} by {}", short_time(&v.created), v.user),
        ),
        ("note", v.note.clone().unwrap_or("—".into())),
        (
            "base model",
            format!(
                "{} (sha256 {})",
                v.base_model.source,
                short_sha(v.base_model.sha256.as_deref())
            ),
        ),
        (
            "dataset",
            format!(
                "{} (sha256 {}), split {:.0}/{:.0}/{:.0} seed {}",
                d.name,
                short_sha(d.sha256.as_deref()),
                d.split_ratios[0],
                d.split_ratios[1],
                d.split_ratios[2],
                d.split_seed
            ),
        ),
        (
            "evaluated",
            format!(
                "{} records of the {} split",
                d.evaluated_records, d.evaluated_split
            ),
        ),
        ("bias audit", v.bias.describe()),
    ];
    egui::Grid::new("registry_lineage")
        .spacing([14.0, 4.0])
        .show(ui, |ui| {
            for (k, value) in lineage {
                ui.strong(k);
                ui.label(value);
                ui.end_row();
            }
        });
}

/// The training settings that differ from the version before `v` (`prev`).
fn config_changes(ui: &mut egui::Ui, prev: Option<&VersionRecord>, v: &VersionRecord) {
    match prev {
        None => {
            ui.label("Configuration: the first version, nothing to compare with.");
        }
        Some(prev) => {
            let diff = config_diff(&prev.training, &v.training);
            if diff.is_empty() {
                ui.label(format!(
                    "Configuration: the same as version {}.",
                    prev.version
                ));
            } else {
                ui.strong(format!(
                    "Configuration changed since version {}",
                    prev.version
                ));
                egui::Grid::new("registry_config_diff")
                    .striped(true)
                    .spacing([14.0, 4.0])
                    .show(ui, |ui| {
                        for h in [
                            "setting",
                            &format!("v{}", prev.version),
                            &format!("v{}", v.version),
                        ] {
                            ui.strong(h);
                        }
                        ui.end_row();
                        for (key, before, after) in diff {
                            ui.label(key);
                            ui.label(before);
                            ui.label(after);
                            ui.end_row();
                        }
                    });
            }
        }
    }
}

fn gates_at_registration(ui: &mut egui::Ui, v: &VersionRecord) {
    ui.strong("Gates at registration");
    if v.gates.is_empty() {
        ui.label("The project had no gates when this version was registered.");
        return;
    }
    egui::Grid::new("registry_gates")
        .striped(true)
        .spacing([14.0, 4.0])
        .show(ui, |ui| {
            for h in [
                "gate",
                "value [95% interval]",
                "compared",
                "threshold",
                "result",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for g in &v.gates {
                ui.label(&g.metric);
                ui.label(match (g.value, g.interval) {
                    (Some(x), Some([lo, hi])) => format!("{x:.4} [{lo:.4}, {hi:.4}]"),
                    (Some(x), None) => format!("{x:.4}"),
                    _ => "not measured".into(),
                });
                ui.label(g.compared.map_or("—".into(), |c| format!("{c:.4}")));
                ui.label(format!("{} {}", g.compare, g.threshold));
                gate_chip(ui, g);
                ui.end_row();
            }
        });
}

/// The metrics the comparison shows, where both versions have them.
const COMPARED: &[&str] = &[
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "bleu",
    "fkgl",
    "meds.hallucinated_per_example",
    "safety.flags_per_example",
];

pub(super) fn comparison(panel: &mut RegistryPanel, ui: &mut egui::Ui) {
    let Some(model) = panel.current() else { return };
    let versions: Vec<Option<u32>> = model
        .listing
        .versions
        .iter()
        .map(|v| Some(v.version))
        .collect();
    let records: Vec<VersionRecord> = model.listing.versions.clone();
    ui.heading("Compare two versions");
    let mut chosen = panel.state.compare;
    ui.horizontal(|ui| {
        let name = |v: &Option<u32>| v.map_or("—".into(), |v| format!("v{v}"));
        swatch(ui, BAR_A);
        combo::choice(ui, "A", &mut chosen[0], &versions, name);
        swatch(ui, BAR_B);
        combo::choice(ui, "B", &mut chosen[1], &versions, name);
    });
    panel.state.compare = chosen;
    let find = |v: Option<u32>| records.iter().find(|r| Some(r.version) == v);
    let (Some(a), Some(b)) = (find(chosen[0]), find(chosen[1])) else {
        ui.label("Choose two versions.");
        return;
    };
    let rows: Vec<Bar> = COMPARED
        .iter()
        .filter_map(|name| {
            let def = METRICS.iter().find(|m| m.name == *name)?;
            let (ma, mb) = (a.measure(def)?, b.measure(def)?);
            Some(Bar {
                label: crate::eval::names::metric_short_label(def.per_example.unwrap_or(name)),
                a: (a.version, ma),
                b: (b.version, mb),
            })
        })
        .collect();
    if rows.is_empty() {
        ui.label("The two versions have no metric in common.");
        return;
    }
    bars(ui, &rows);
}

/// A small square of a version's bar colour.
fn swatch(ui: &mut egui::Ui, color: Color32) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    ui.painter().rect_filled(rect, 2.0, color);
}

struct Bar {
    label: String,
    a: (u32, Measured),
    b: (u32, Measured),
}

/// A metric per row, a bar for each version with its 95% interval as a whisker, each on the
/// metric's own scale (from 0 to a little past the larger upper end).
fn bars(ui: &mut egui::Ui, rows: &[Bar]) {
    let font = egui::FontId::proportional(12.0);
    let text_color = ui.visuals().text_color();
    let width = ui.available_width().min(900.0);
    let (label_w, value_w) = (150.0, 260.0);
    for row in rows {
        let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 40.0), egui::Sense::hover());
        let painter = ui.painter_at(rect);
        painter.text(
            rect.left_center(),
            egui::Align2::LEFT_CENTER,
            &row.label,
            font.clone(),
            text_color,
        );
        let top = |m: &Measured| m.interval.map_or(m.value, |[_, hi]| hi).max(m.value);
        let max = top(&row.a.1).max(top(&row.b.1)).max(1e-9) * 1.1;
        let x0 = rect.left() + label_w;
        let span = (rect.width() - label_w - value_w).max(40.0);
        let x = |v: f64| x0 + span * (v.max(0.0) / max).min(1.0) as f32;
        for (i, ((version, m), color)) in [(&row.a, BAR_A), (&row.b, BAR_B)].into_iter().enumerate()
        {
            let y = rect.top() + 4.0 + 18.0 * i as f32;
            let bar =
                egui::Rect::from_min_max(egui::pos2(x0, y + 2.0), egui::pos2(x(m.value), y + 14.0));
            painter.rect_filled(bar, 2.0, color);
            let stroke = egui::Stroke::new(1.5, text_color);
            if let Some([lo, hi]) = m.interval {
                let mid = y + 8.0;
                painter.line_segment([egui::pos2(x(lo), mid), egui::pos2(x(hi), mid)], stroke);
                for end in [lo, hi] {
                    painter.line_segment(
                        [egui::pos2(x(end), mid - 4.0), egui::pos2(x(end), mid + 4.0)],
                        stroke,
                    );
                }
            }
            let text = match m.interval {
                Some([lo, hi]) => format!("v{version} {:.4} [{lo:.4}, {hi:.4}]", m.value),
                None => format!("v{version} {:.4}", m.value),
            };
            painter.text(
                egui::pos2(x0 + span + 12.0, y + 8.0),
                egui::Align2::LEFT_CENTER,
                text,
                font.clone(),
                text_color,
            );
        }
    }
}
