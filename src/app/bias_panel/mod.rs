//! The Bias panel: a heatmap of a prediction set's metrics by demographic group (rows: the
//! groups of one dimension; columns: the metrics, or the groups of a second dimension for
//! intersections), coloured by the gap to overall, small groups greyed and flagged cells
//! outlined; the audit's findings in sentences; clicking a cell opens Compare on that slice.
//! The statistics run on a thread of their own (they take well under a second); writing
//! bias.json and the counterfactual test, which generates, are engine jobs.

mod heatmap;

pub use heatmap::{Cell, Grid};

use super::AppState;
use super::combo;
use super::compare_panel::{ComparePanel, RowFilters};
use super::panel::{Panel, PanelContext, Request};
use crate::analysis::bias::counterfactual::CounterfactualReport;
use crate::analysis::bias::job::{BiasOutcome, BiasRequest, CounterfactualOptions};
use crate::analysis::bias::{BiasOptions, BiasReport, COMMON_METRICS, SliceKey, audit};
use crate::data::record::{AgeGroup, Demographic};
use crate::engine::{Command, Event};
use crate::eval::job::target::Target;
use crate::eval::names::{metric_label, metric_short_label};
use crate::project::predictions::{
    BASE, PredictionSet, PredictionSource, keep_or_newest, modified, prediction_sources,
};
use crossbeam_channel::{Receiver, Sender, unbounded};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the heatmap's columns are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Columns {
    /// One column per metric, each cell the row group's slice.
    Metrics,
    /// The row group alone, then its intersection with each group of this dimension.
    Dimension(Demographic),
}

/// What the panel keeps across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BiasUiState {
    /// The prediction set audited (`base` or a run id); default: the newest.
    pub source: Option<String>,
    /// The metric of the intersection view and of bias.json.
    pub metric: String,
    pub rows: Demographic,
    pub columns: Columns,
    pub threshold: f64,
    pub min_size: usize,
    /// Records the counterfactual test generates again.
    pub counterfactual_limit: usize,
}

impl Default for BiasUiState {
    fn default() -> Self {
        let options = BiasOptions::default();
        Self {
            source: None,
            metric: options.metric,
            rows: Demographic::Ethnicity,
            columns: Columns::Metrics,
            threshold: options.threshold,
            min_size: options.min_size,
            counterfactual_limit: CounterfactualOptions::default().limit,
        }
    }
}

/// The settings an audit was computed with.
#[derive(Debug, Clone, PartialEq)]
struct AuditKey {
    source: String,
    threshold: f64,
    min_size: usize,
    modified: Option<std::time::SystemTime>,
}

/// Every common metric's audit of one prediction set, in the order of `COMMON_METRICS`.
#[derive(Debug, Clone)]
pub struct Audits {
    pub reports: Vec<(String, BiasReport)>,
    pub skipped_lines: usize,
}

impl Audits {
    pub fn report(&self, metric: &str) -> Option<&BiasReport> {
        self.reports
            .iter()
            .find(|(m, _)| m == metric)
            .map(|(_, r)| r)
    }
}

type Computed = (AuditKey, Result<Arc<Audits>, String>);

pub struct BiasPanel {
    pub state: BiasUiState,
    project_dir: Option<PathBuf>,
    pub sources: Vec<PredictionSource>,
    audits: Option<Computed>,
    computing: Option<AuditKey>,
    done_tx: Sender<Computed>,
    done_rx: Receiver<Computed>,
    /// The last counterfactual test's result, with the set it ran on.
    pub counterfactual: Option<(String, CounterfactualReport)>,
    /// What the user asked of the window: Compare on a slice, a job for the engine (bias.json,
    /// the counterfactual test).
    requests: Vec<Request>,
    /// Where the last engine job wrote bias.json.
    pub written: Option<PathBuf>,
}

/// Audits every common metric the set has (and `extra`), all dimensions and their pairs.
fn audit_all(set: &PredictionSet, key: &AuditKey, extra: &str) -> Audits {
    let found = set.metric_names();
    let mut metrics: Vec<&str> = COMMON_METRICS
        .iter()
        .copied()
        .filter(|m| found.iter().any(|f| f == m))
        .collect();
    if !metrics.contains(&extra) && found.iter().any(|f| f == extra) {
        metrics.push(extra);
    }
    let reports = metrics
        .into_iter()
        .filter_map(|m| {
            let options = BiasOptions {
                metric: m.to_string(),
                threshold: key.threshold,
                min_size: key.min_size,
                ..BiasOptions::default()
            };
            audit(&set.rows, &options).ok().map(|r| (m.to_string(), r))
        })
        .collect();
    Audits {
        reports,
        skipped_lines: set.issues.iter().filter(|i| i.skipped).count(),
    }
}

impl BiasPanel {
    pub fn new(state: BiasUiState) -> Self {
        let (done_tx, done_rx) = unbounded();
        Self {
            state,
            project_dir: None,
            sources: Vec::new(),
            audits: None,
            computing: None,
            done_tx,
            done_rx,
            counterfactual: None,
            requests: Vec::new(),
            written: None,
        }
    }

    /// The audits of the chosen set, once computed with the current settings.
    pub fn audits(&self) -> Option<&Audits> {
        match &self.audits {
            Some((key, Ok(a))) if Some(key) == self.wanted_key().as_ref() => Some(a),
            _ => None,
        }
    }

    pub fn is_computing(&self) -> bool {
        self.computing.is_some()
    }

    fn wanted_key(&self) -> Option<AuditKey> {
        let name = self.state.source.clone()?;
        let source = self.sources.iter().find(|s| s.name == name)?;
        Some(AuditKey {
            modified: modified(&source.path),
            source: name,
            threshold: self.state.threshold,
            min_size: self.state.min_size,
        })
    }

    /// Takes finished audits and starts the one the settings ask for.
    fn compute(&mut self, ctx: &egui::Context) {
        for done in self.done_rx.try_iter() {
            if self.computing.as_ref() == Some(&done.0) {
                self.computing = None;
            }
            self.audits = Some(done);
        }
        let Some(key) = self.wanted_key() else { return };
        let have = self.audits.as_ref().is_some_and(|(k, _)| *k == key);
        if have || self.computing.as_ref() == Some(&key) || self.computing.is_some() {
            return;
        }
        let Some(source) = self.sources.iter().find(|s| s.name == key.source).cloned() else {
            return;
        };
        self.computing = Some(key.clone());
        let (tx, ctx, metric) = (self.done_tx.clone(), ctx.clone(), self.state.metric.clone());
        std::thread::spawn(move || {
            let result = PredictionSet::read(source)
                .map(|set| Arc::new(audit_all(&set, &key, &metric)))
                .map_err(|e| e.to_string());
            tx.send((key, result)).ok();
            ctx.request_repaint();
        });
    }

    /// The heatmap of the current settings.
    pub fn grid(&self) -> Option<Grid> {
        let audits = self.audits()?;
        Some(build_grid(audits, &self.state))
    }

    /// Acts as a click on the cell of `key` does.
    pub fn open_slice(&mut self, key: &SliceKey) {
        if let Some(source) = &self.state.source {
            self.requests.push(Request::CompareSlice {
                source: source.clone(),
                key: key.clone(),
            });
        }
    }

    fn request_job(&mut self, counterfactual: bool) {
        let (Some(dir), Some(source)) = (&self.project_dir, &self.state.source) else {
            return;
        };
        let request = BiasRequest {
            project_dir: dir.clone(),
            target: if source == BASE {
                Target::Base
            } else {
                Target::Run(source.clone())
            },
            options: BiasOptions {
                metric: self.state.metric.clone(),
                threshold: self.state.threshold,
                min_size: self.state.min_size,
                ..BiasOptions::default()
            },
            counterfactual: counterfactual.then(|| CounterfactualOptions {
                limit: self.state.counterfactual_limit,
                ..CounterfactualOptions::default()
            }),
        };
        self.requests
            .push(Request::Submit(Command::Bias(Box::new(request))));
    }

    fn controls(&mut self, ui: &mut egui::Ui) {
        let names: Vec<String> = self.sources.iter().map(|s| s.name.clone()).collect();
        let metrics: Vec<String> = self
            .audits()
            .map(|a| a.reports.iter().map(|(m, _)| m.clone()).collect())
            .unwrap_or_default();
        let s = &mut self.state;
        ui.horizontal_wrapped(|ui| {
            combo::choice(ui, "Predictions", &mut s.source, &names.iter().cloned().map(Some).collect::<Vec<_>>(), |n| n.clone().unwrap_or_default());
            combo::choice(ui, "Metric", &mut s.metric, &metrics, |m| metric_label(m));
            combo::choice(ui, "Rows", &mut s.rows, &Demographic::ALL, |d| dim_label(*d));
            let mut columns = vec![Columns::Metrics];
            columns.extend(Demographic::ALL.iter().filter(|d| **d != s.rows).map(|d| Columns::Dimension(*d)));
            if let Columns::Dimension(d) = s.columns && d == s.rows {
                s.columns = Columns::Metrics;
            }
            combo::choice(ui, "Columns", &mut s.columns, &columns, |c| match c {
                Columns::Metrics => "metrics".into(),
                Columns::Dimension(d) => format!("× {}", dim_label(*d)),
            });
            let label = ui.label("Threshold").id;
            let mut percent = s.threshold * 100.0;
            let changed = ui
                .add(egui::DragValue::new(&mut percent).range(1.0..=50.0).speed(0.5).suffix("%"))
                .on_hover_text("A significant slice is flagged when it is worse than overall by more than this")
                .labelled_by(label)
                .changed();
            if changed {
                s.threshold = (percent / 100.0).clamp(0.01, 0.5);
            }
            let label = ui.label("Min size").id;
            ui.add(egui::DragValue::new(&mut s.min_size).range(2..=1000))
                .on_hover_text("Smaller slices are shown greyed and never flagged")
                .labelled_by(label);
        });
        ui.horizontal_wrapped(|ui| {
            if ui
                .button("Write bias.json")
                .on_hover_text("Write this audit beside the predictions (an engine job)")
                .clicked()
            {
                self.request_job(false);
            }
            if let Some(p) = &self.written {
                ui.weak(format!("wrote {}", p.display()));
            }
            if self.is_computing() {
                ui.spinner();
            }
        });
    }

    fn findings(&self, ui: &mut egui::Ui) {
        let Some(report) = self.audits().and_then(|a| a.report(&self.state.metric)) else {
            ui.label(format!(
                "This set has no {} values.",
                metric_label(&self.state.metric)
            ));
            return;
        };
        for line in &report.findings {
            let flagged = line.starts_with("Flagged");
            let text = egui::RichText::new(line);
            ui.label(if flagged {
                text.strong().color(ui.visuals().warn_fg_color)
            } else {
                text
            });
        }
        ui.indent("bias_mitigations", |ui| {
            for line in &report.mitigations {
                ui.label(line);
            }
        });
    }

    fn counterfactual_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.strong("Counterfactual test");
            ui.label("swaps he/she, Mr./Ms., stated age and ethnicity in the inputs and generates again with the same model.");
            let label = ui.label("Records").id;
            ui.add(egui::DragValue::new(&mut self.state.counterfactual_limit).range(1..=500)).labelled_by(label);
            if ui.button("Run counterfactual test").clicked() {
                self.request_job(true);
            }
        });
        let Some((source, cf)) = &self.counterfactual else {
            return;
        };
        ui.label(format!(
            "{source}, {} records, {}:",
            cf.records,
            metric_label(&cf.metric)
        ));
        egui::Grid::new("bias_counterfactual")
            .striped(true)
            .show(ui, |ui| {
                for h in [
                    "swap",
                    "records",
                    "outputs changed",
                    "output similarity",
                    "metric shift",
                    "mean |shift|",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for e in &cf.effects {
                    ui.label(e.kind.name());
                    ui.label(e.records.to_string());
                    ui.label(format!("{:.0}%", e.changed * 100.0));
                    ui.label(format!("{:.3}", e.output_similarity));
                    ui.label(format!("{:+.4}", e.metric_shift));
                    ui.label(format!("{:.4}", e.metric_abs_shift));
                    ui.end_row();
                }
            });
    }
}

impl Panel for BiasPanel {
    fn set_project(&mut self, dir: &Path) {
        if self.project_dir.as_deref() != Some(dir) {
            self.audits = None;
            self.counterfactual = None;
        }
        self.project_dir = Some(dir.to_path_buf());
        self.refresh();
    }

    /// Looks again for prediction sets (a finished evaluation adds one).
    fn refresh(&mut self) {
        let Some(dir) = &self.project_dir else { return };
        self.sources = prediction_sources(dir);
        self.state.source = keep_or_newest(&self.sources, self.state.source.as_deref());
    }

    /// Takes the result of an engine job this panel asked for; any finished job may have
    /// written a prediction set.
    fn on_event(&mut self, event: &Event) {
        if let Event::Finished { .. } = event {
            self.refresh();
        }
        if let Event::BiasAudited { outcome, .. } = event {
            let BiasOutcome {
                counterfactual,
                written,
                ..
            } = outcome.as_ref();
            if let (Some(cf), Some(source)) = (counterfactual, &self.state.source) {
                self.counterfactual = Some((source.clone(), cf.clone()));
            }
            self.written = Some(written.clone());
        }
    }

    fn save_state(&mut self, state: &mut AppState) {
        state.bias = self.state.clone();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _ctx: &PanelContext<'_>) {
        self.compute(ui.ctx());
        if self.sources.is_empty() {
            ui.vertical_centered(|ui| {
                ui.add_space(80.0);
                ui.heading("No predictions to audit yet");
                ui.label("Evaluate the base model or a run (Compare panel, or lablens eval); its predictions.jsonl is audited here.");
                if ui.button("Look again").clicked() {
                    self.refresh();
                }
            });
            return;
        }
        self.controls(ui);
        ui.separator();
        let error = match &self.audits {
            Some((_, Err(e))) => Some(e.clone()),
            _ => None,
        };
        if let Some(e) = error {
            ui.colored_label(ui.visuals().error_fg_color, format!("Could not read: {e}"));
            return;
        }
        let Some(grid) = self.grid() else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Computing slices…");
            });
            return;
        };
        egui::ScrollArea::vertical().show(ui, |ui| {
            self.findings(ui);
            ui.add_space(6.0);
            if grid.rows.is_empty() {
                ui.label("No record of this set has this demographic field.");
            } else {
                // Scrolled sideways where the metrics do not fit, so that what follows keeps
                // the pane's width.
                let clicked = egui::ScrollArea::horizontal()
                    .id_salt("bias_heatmap")
                    .show(ui, |ui| {
                        heatmap::show(ui, &grid, self.state.threshold, self.state.min_size)
                    })
                    .inner;
                if let Some(key) = clicked {
                    self.open_slice(&key);
                }
            }
            ui.add_space(6.0);
            heatmap::legend(ui, self.state.threshold, self.state.min_size);
            ui.separator();
            self.counterfactual_ui(ui);
        });
    }

    fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }
}

fn dim_label(d: Demographic) -> String {
    d.name().replace('_', " ")
}

/// The Compare panel's filters that show exactly the records of a slice.
pub fn filters_of(key: &SliceKey) -> RowFilters {
    RowFilters {
        gender: key.get(Demographic::Gender).map(String::from),
        age_group: key
            .get(Demographic::AgeGroup)
            .and_then(|l| AgeGroup::ALL.into_iter().find(|g| g.label() == l)),
        ethnicity: key.get(Demographic::Ethnicity).map(String::from),
        ..RowFilters::default()
    }
}

/// Shows prediction set `source` in Compare, filtered to a slice's records.
pub fn open_in_compare(compare: &mut ComparePanel, source: String, filters: RowFilters) {
    let c = &mut compare.state;
    if c.b.as_deref() == Some(source.as_str()) {
        c.b = c.a.clone().filter(|a| *a != source);
    }
    c.a = Some(source);
    c.filters = filters;
    c.selected_id = None;
    c.review_mode = false;
}

/// The slice of `report` with exactly these groups, in any order.
fn find_slice<'a>(
    report: &'a BiasReport,
    parts: &[(Demographic, &str)],
) -> Option<&'a crate::analysis::bias::SliceReport> {
    report.slices.iter().find(|s| {
        s.dims.0.len() == parts.len() && parts.iter().all(|(d, v)| s.dims.get(*d) == Some(*v))
    })
}

fn cell(report: &BiasReport, parts: &[(Demographic, &str)]) -> Option<Cell> {
    find_slice(report, parts).map(|s| Cell {
        metric: report.metric.clone(),
        higher_is_worse: report.higher_is_worse,
        overall: report.overall.mean,
        slice: s.clone(),
    })
}

/// The groups of `dim` in `report`, in display order.
fn groups(report: &BiasReport, dim: Demographic) -> Vec<String> {
    report
        .slices
        .iter()
        .filter(|s| s.dims.dims() == [dim])
        .map(|s| s.dims.label())
        .collect()
}

/// The heatmap for `state` from the audits.
pub fn build_grid(audits: &Audits, state: &BiasUiState) -> Grid {
    let chosen = audits
        .report(&state.metric)
        .or_else(|| audits.reports.first().map(|(_, r)| r));
    let Some(chosen) = chosen else {
        return Grid::default();
    };
    let rows = groups(chosen, state.rows);
    let (columns, cells) = match state.columns {
        Columns::Metrics => {
            let columns: Vec<String> = audits
                .reports
                .iter()
                .map(|(m, _)| metric_short_label(m))
                .collect();
            let cells = rows
                .iter()
                .map(|g| {
                    audits
                        .reports
                        .iter()
                        .map(|(_, r)| cell(r, &[(state.rows, g)]))
                        .collect()
                })
                .collect();
            (columns, cells)
        }
        Columns::Dimension(other) => {
            let others = groups(chosen, other);
            let mut columns = vec!["all".to_string()];
            columns.extend(others.iter().cloned());
            let cells = rows
                .iter()
                .map(|g| {
                    std::iter::once(cell(chosen, &[(state.rows, g)]))
                        .chain(
                            others
                                .iter()
                                .map(|h| cell(chosen, &[(state.rows, g), (other, h)])),
                        )
                        .collect()
                })
                .collect();
            (columns, cells)
        }
    };
    Grid {
        row_title: dim_label(state.rows),
        rows,
        columns,
        cells,
    }
}

#[cfg(test)]
mod tests;
