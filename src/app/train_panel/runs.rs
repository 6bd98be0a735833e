//! The project's runs: status, best validation loss and duration of each; ticked runs overlaid
//! on one loss plot (their `metrics.jsonl` read off the UI thread); two runs' configurations side
//! by side with the differing fields marked.

use super::plots::{self, Curves, RUN_COLORS, Trace};
use crate::app::status::format_eta;
use crate::train::TrainConfig;
use crate::train::config::flat_fields;
use crate::train::run::{
    ADAPTER_DIR, CONFIG_FILE, METRICS_FILE, RunDir, RunStatus, RunSummary, list_runs, read_jsonl,
};
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A listed run and the adapter the playground can use from it.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub summary: RunSummary,
    /// The final adapter, else the newest checkpoint's, with a label saying which.
    pub adapter: Option<(PathBuf, String)>,
}

/// What the list asks the panel to do.
pub enum RunAction {
    Resume(String),
}

/// One field of two configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffRow {
    pub field: String,
    pub a: String,
    pub b: String,
}

impl DiffRow {
    pub fn differs(&self) -> bool {
        self.a != self.b
    }
}

pub struct RunsView {
    project_dir: Option<PathBuf>,
    pub rows: Vec<RunRow>,
    pub ticked: BTreeSet<String>,
    curves: BTreeMap<String, Curves>,
    loading: BTreeSet<String>,
    loaded_tx: Sender<(String, Curves)>,
    loaded_rx: Receiver<(String, Curves)>,
    /// The two runs whose configurations are compared.
    pub compare: [Option<String>; 2],
    diff: Option<(Vec<DiffRow>, [String; 2])>,
    /// Runs the overlay plot drew last frame.
    pub drawn: usize,
    pub error: Option<String>,
}

impl Default for RunsView {
    fn default() -> Self {
        let (loaded_tx, loaded_rx) = unbounded();
        Self {
            project_dir: None,
            rows: Vec::new(),
            ticked: BTreeSet::new(),
            curves: BTreeMap::new(),
            loading: BTreeSet::new(),
            loaded_tx,
            loaded_rx,
            compare: [None, None],
            diff: None,
            drawn: 0,
            error: None,
        }
    }
}

/// The adapter a run offers: its final one, else its newest checkpoint's.
fn adapter_of(summary: &RunSummary) -> Option<(PathBuf, String)> {
    let last = summary.dir.join(ADAPTER_DIR);
    if last.join(crate::model::adapters::ADAPTER_CONFIG).is_file() {
        return Some((last, format!("{} (final)", summary.id)));
    }
    let run = RunDir {
        id: summary.id.clone(),
        dir: summary.dir.clone(),
    };
    let step = *run.checkpoints().last()?;
    Some((
        run.checkpoint_dir(step),
        format!("{} (step {step})", summary.id),
    ))
}

impl RunsView {
    /// Lists the runs of `project_dir` (a few small files per run) and reloads the ticked curves.
    pub fn refresh(&mut self, project_dir: &Path) {
        if self.project_dir.as_deref() != Some(project_dir) {
            *self = RunsView {
                project_dir: Some(project_dir.to_path_buf()),
                ..RunsView::default()
            };
        }
        self.rows = list_runs(project_dir)
            .into_iter()
            .map(|summary| RunRow {
                adapter: adapter_of(&summary),
                summary,
            })
            .collect();
        let ids: BTreeSet<String> = self.rows.iter().map(|r| r.summary.id.clone()).collect();
        self.ticked.retain(|id| ids.contains(id));
        self.curves.clear();
        self.diff = None;
    }

    /// The row of run `id`, running in this window, at `step` of its total with its best
    /// validation loss so far and `elapsed_s`.
    pub fn follow(&mut self, id: &str, step: usize, best_val_loss: Option<f64>, elapsed_s: f64) {
        if let Some(row) = self.rows.iter_mut().find(|r| r.summary.id == id) {
            let s = &mut row.summary;
            s.status = RunStatus::Running;
            s.step = step;
            s.best_val_loss = best_val_loss.or(s.best_val_loss);
            s.elapsed_s = elapsed_s;
        }
    }

    /// Takes the curves that finished loading; starts loading those ticked and missing.
    fn load_curves(&mut self, ctx: &egui::Context) {
        for (id, curves) in self.loaded_rx.try_iter() {
            self.loading.remove(&id);
            if self.ticked.contains(&id) {
                self.curves.insert(id, curves);
            }
        }
        for id in &self.ticked {
            if self.curves.contains_key(id) || self.loading.contains(id) {
                continue;
            }
            let Some(row) = self.rows.iter().find(|r| &r.summary.id == id) else {
                continue;
            };
            self.loading.insert(id.clone());
            let (tx, path, id, ctx) = (
                self.loaded_tx.clone(),
                row.summary.dir.join(METRICS_FILE),
                id.clone(),
                ctx.clone(),
            );
            // A long run's metrics take a while to parse; the window keeps drawing meanwhile.
            std::thread::spawn(move || {
                let curves = Curves::from_metrics(&read_jsonl(&path));
                tx.send((id, curves)).ok();
                ctx.request_repaint();
            });
        }
    }

    /// Whether every ticked run's curves have arrived.
    pub fn curves_ready(&self) -> bool {
        self.loading.is_empty() && self.ticked.iter().all(|id| self.curves.contains_key(id))
    }

    fn dir_of(&self, id: &str) -> Option<&Path> {
        self.rows
            .iter()
            .find(|r| r.summary.id == id)
            .map(|r| r.summary.dir.as_path())
    }

    /// The configuration rows of the compared runs, read again when the pair changes.
    fn diff_rows(&mut self) -> Option<&[DiffRow]> {
        let [Some(a), Some(b)] = self.compare.clone() else {
            return None;
        };
        let pair = [a, b];
        if self.diff.as_ref().is_none_or(|(_, p)| p != &pair) {
            let read = |id: &str| {
                let dir = self.dir_of(id).ok_or_else(|| format!("no run {id}"))?;
                crate::train::session::read_config(&dir.join(CONFIG_FILE))
                    .map_err(|e| e.to_string())
            };
            match (read(&pair[0]), read(&pair[1])) {
                (Ok(ca), Ok(cb)) => {
                    self.error = None;
                    self.diff = Some((config_diff(&ca, &cb), pair));
                }
                (Err(e), _) | (_, Err(e)) => {
                    self.error = Some(e);
                    self.diff = None;
                }
            }
        }
        self.diff.as_ref().map(|(rows, _)| rows.as_slice())
    }
}

/// Every field of both configurations as text, nested fields named with dots (`lora.r`).
pub fn config_diff(a: &TrainConfig, b: &TrainConfig) -> Vec<DiffRow> {
    let flat = |cfg: &TrainConfig| -> BTreeMap<String, String> {
        flat_fields(&serde_json::to_value(cfg).unwrap_or_default())
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_else(|| "—".into())))
            .collect()
    };
    let (fa, fb) = (flat(a), flat(b));
    let fields: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    fields
        .into_iter()
        .map(|f| DiffRow {
            field: f.clone(),
            a: fa.get(f).cloned().unwrap_or_default(),
            b: fb.get(f).cloned().unwrap_or_default(),
        })
        .collect()
}

fn status_text(ui: &egui::Ui, status: RunStatus) -> egui::RichText {
    let (word, color) = match status {
        RunStatus::Running => ("running", egui::Color32::from_rgb(0x61, 0xaf, 0xef)),
        RunStatus::Finished => ("finished", egui::Color32::from_rgb(0x98, 0xc3, 0x79)),
        RunStatus::Stopped => ("stopped", egui::Color32::from_rgb(0xe5, 0xc0, 0x7b)),
        RunStatus::Failed => ("failed", ui.visuals().error_fg_color),
    };
    egui::RichText::new(word).color(color)
}

/// Draws the runs tab; `busy` disables Resume while the engine works.
pub fn show(
    ui: &mut egui::Ui,
    view: &mut RunsView,
    state: &mut super::TrainUiState,
    busy: bool,
) -> Option<RunAction> {
    view.load_curves(ui.ctx());
    if view.rows.is_empty() {
        ui.weak("No runs yet: start one from the Live tab.");
        return None;
    }
    let action = table(ui, view, busy);
    ui.separator();
    ui.columns(2, |cols| {
        overlay(&mut cols[0], view, state);
        compare(&mut cols[1], view);
    });
    action
}

fn table(ui: &mut egui::Ui, view: &mut RunsView, busy: bool) -> Option<RunAction> {
    let mut action = None;
    egui::ScrollArea::vertical()
        .max_height(200.0)
        .id_salt("runs_table")
        .show(ui, |ui| {
            egui::Grid::new("runs_grid")
                .num_columns(6)
                .striped(true)
                .spacing([16.0, 4.0])
                .show(ui, |ui| {
                    for title in [
                        "overlay · run",
                        "status",
                        "steps",
                        "best val loss",
                        "duration",
                        "",
                    ] {
                        ui.strong(title);
                    }
                    ui.end_row();
                    for row in &view.rows {
                        let s = &row.summary;
                        let mut on = view.ticked.contains(&s.id);
                        if ui.checkbox(&mut on, &s.id).changed() {
                            if on {
                                view.ticked.insert(s.id.clone());
                            } else {
                                view.ticked.remove(&s.id);
                            }
                        }
                        ui.label(status_text(ui, s.status))
                            .on_hover_text(&s.message);
                        ui.label(format!("{}/{}", s.step, s.total_steps));
                        ui.label(s.best_val_loss.map_or("—".into(), |l| format!("{l:.4}")));
                        ui.label(format_eta(std::time::Duration::from_secs_f64(
                            s.elapsed_s.max(0.0),
                        )));
                        let resumable = matches!(s.status, RunStatus::Stopped | RunStatus::Failed);
                        if resumable
                            && ui
                                .add_enabled(!busy, egui::Button::new("Resume"))
                                .on_hover_text("Continue from the run's last checkpoint")
                                .clicked()
                        {
                            action = Some(RunAction::Resume(s.id.clone()));
                        } else if !resumable {
                            ui.label("");
                        }
                        ui.end_row();
                    }
                });
        });
    action
}

fn overlay(ui: &mut egui::Ui, view: &mut RunsView, state: &mut super::TrainUiState) {
    ui.strong("Training loss of the ticked runs");
    let style = plots::style_controls(ui, &mut state.smoothing, &mut state.log_y);
    let colors: BTreeMap<String, egui::Color32> = view
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.summary.id.clone(), RUN_COLORS[i % RUN_COLORS.len()]))
        .collect();
    let mut traces: Vec<Trace<'_>> = view
        .curves
        .iter_mut()
        .filter(|(id, _)| view.ticked.contains(*id))
        .map(|(id, curves)| Trace {
            name: id.as_str(),
            color: colors.get(id).copied().unwrap_or(RUN_COLORS[0]),
            curves,
        })
        .collect();
    let height = (ui.available_height() - 30.0).max(160.0);
    view.drawn = plots::loss_plot(ui, "runs_overlay", &mut traces, style, height);
    if view.ticked.is_empty() {
        ui.weak("Tick runs above to overlay their curves.");
    }
}

fn compare(ui: &mut egui::Ui, view: &mut RunsView) {
    ui.strong("Configurations side by side");
    let ids: Vec<String> = view.rows.iter().map(|r| r.summary.id.clone()).collect();
    for (slot, name) in [(0, "run A"), (1, "run B")] {
        ui.horizontal(|ui| {
            let label = ui.label(name).id;
            egui::ComboBox::from_id_salt(("compare", slot))
                .selected_text(
                    view.compare[slot]
                        .clone()
                        .unwrap_or_else(|| "choose".into()),
                )
                .show_ui(ui, |ui| {
                    for id in &ids {
                        ui.selectable_value(&mut view.compare[slot], Some(id.clone()), id);
                    }
                })
                .response
                .labelled_by(label);
        });
    }
    let warn = ui.visuals().warn_fg_color;
    let Some(rows) = view.diff_rows() else {
        if let Some(e) = &view.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        return;
    };
    let differing = rows.iter().filter(|r| r.differs()).count();
    ui.label(format!("{differing} of {} fields differ", rows.len()));
    // The two value columns share what the field names leave, in characters of the body font.
    let char_width = crate::app::charts::text_width(ui, "0000000000") / 10.0;
    let cell_chars =
        (((ui.available_width() - 24.0 * char_width) / 2.0 / char_width) as usize).clamp(8, 60);
    egui::ScrollArea::vertical().id_salt("diff").show(ui, |ui| {
        egui::Grid::new("diff_grid")
            .num_columns(3)
            .striped(true)
            .show(ui, |ui| {
                for r in rows {
                    let color = r.differs().then_some(warn);
                    if r.differs() {
                        let field = egui::RichText::new(format!("≠ {}", r.field));
                        ui.label(field.color(warn).strong());
                    } else {
                        ui.weak(&r.field);
                    }
                    value_cell(ui, &r.a, color, cell_chars);
                    value_cell(ui, &r.b, color, cell_chars);
                    ui.end_row();
                }
            });
    });
}

/// A value of at most `chars` characters; a longer one is cut, whole on hover.
fn value_cell(ui: &mut egui::Ui, value: &str, color: Option<egui::Color32>, chars: usize) {
    let long = value.chars().count() > chars;
    let shown: String = if long {
        value.chars().take(chars - 1).chain(['…']).collect()
    } else {
        value.to_string()
    };
    let mut text = egui::RichText::new(shown);
    if let Some(c) = color {
        text = text.color(c);
    }
    let response = ui.label(text);
    if long {
        response.on_hover_text(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_nested_fields_and_marks_only_what_differs() {
        let a = TrainConfig::default();
        let mut b = a.clone();
        b.lr = 0.002;
        b.lora.r = 8;
        b.max_steps = None;
        let rows = config_diff(&a, &b);
        let differing: Vec<(&str, &str, &str)> = rows
            .iter()
            .filter(|r| r.differs())
            .map(|r| (r.field.as_str(), r.a.as_str(), r.b.as_str()))
            .collect();
        assert_eq!(
            differing,
            [
                ("lora.r", "16", "8"),
                ("lr", "0.005", "0.002"),
                ("max_steps", "80", "—")
            ]
        );
        assert!(
            rows.iter()
                .any(|r| r.field == "lora.target_modules" && !r.differs())
        );
    }
}
