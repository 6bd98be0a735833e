//! The Compare panel: the evaluated records of a run (and of the base model or a second run,
//! matched by record id) in a virtualized table, sorted and filtered by metric, problem and
//! demographic group; the selected record's source, reference and outputs side by side with
//! word-level diff, medication and safety marks and metric badges; and a review mode for
//! clinicians. Prediction files are read off the UI thread.

mod choose;
mod detail;
mod marks;
mod review;
mod rows;

pub use review::ReviewView;
pub use rows::{Compared, ProblemFilter, RowFilters, Side, SortKey, visible_rows};

use super::AppState;
use super::combo;
use super::panel::{Panel, PanelContext, Request};
use super::record_table::{self, or_dash};
use crate::engine::Event;
use crate::eval::job::target::Target;
use crate::eval::names::{metric_label, metric_short_label};
use crate::project::predictions::{PredictionSet, PredictionSource, modified, prediction_sources};
use crate::train::run::list_runs;
use crossbeam_channel::{Receiver, Sender, unbounded};
use egui_extras::Column;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What the panel keeps across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareUiState {
    /// The prediction set shown as A (`base` or a run id); default: the newest run.
    pub a: Option<String>,
    /// The one shown as B; `None`: A alone.
    pub b: Option<String>,
    pub filters: RowFilters,
    pub sort: SortKey,
    pub selected_id: Option<String>,
    /// Show the reference words an output dropped, struck through.
    pub show_removed: bool,
    pub review_mode: bool,
    pub reviewer: String,
}

type Loaded = (String, Option<SystemTime>, Result<PredictionSet, String>);

/// A read prediction set and the modification time of the file it was read from.
type ReadSet = (Option<SystemTime>, Result<Arc<PredictionSet>, String>);

pub struct ComparePanel {
    pub state: CompareUiState,
    project_dir: Option<PathBuf>,
    pub sources: Vec<PredictionSource>,
    sets: HashMap<String, ReadSet>,
    loading: HashSet<String>,
    loaded_tx: Sender<Loaded>,
    loaded_rx: Receiver<Loaded>,
    /// The pair shown, once both sets have loaded.
    pub compared: Option<Arc<Compared>>,
    compared_names: Option<(String, Option<String>)>,
    /// A's rows passing the filters, in sort order.
    pub rows: Vec<usize>,
    applied: Option<(RowFilters, SortKey)>,
    pub selected: Option<usize>,
    scroll_to_selected: bool,
    detail: Option<detail::Detail>,
    pub review: ReviewView,
    choice: choose::ReviewChoice,
    /// The project's runs, newest last, for the Evaluate menu.
    runs: Vec<String>,
    /// What the user asked of the window (an evaluation).
    requests: Vec<Request>,
}

impl ComparePanel {
    pub fn new(state: CompareUiState) -> Self {
        let (loaded_tx, loaded_rx) = unbounded();
        Self {
            review: ReviewView::new(&state.reviewer),
            choice: choose::ReviewChoice::default(),
            state,
            project_dir: None,
            sources: Vec::new(),
            sets: HashMap::new(),
            loading: HashSet::new(),
            loaded_tx,
            loaded_rx,
            compared: None,
            compared_names: None,
            rows: Vec::new(),
            applied: None,
            selected: None,
            scroll_to_selected: false,
            detail: None,
            runs: Vec::new(),
            requests: Vec::new(),
        }
    }

    pub fn project_dir(&self) -> Option<&Path> {
        self.project_dir.as_deref()
    }

    /// Whether the chosen sets are still being read.
    pub fn is_loading(&self) -> bool {
        !self.loading.is_empty()
    }

    /// Starts reading the chosen sets that are not read yet; takes those that arrived.
    fn load(&mut self, ctx: &egui::Context) {
        for (name, read_at, result) in self.loaded_rx.try_iter() {
            self.loading.remove(&name);
            self.sets.insert(name, (read_at, result.map(Arc::new)));
        }
        let wanted = [self.state.a.clone(), self.state.b.clone()];
        for name in wanted.into_iter().flatten() {
            if self.sets.contains_key(&name) || self.loading.contains(&name) {
                continue;
            }
            let Some(source) = self.sources.iter().find(|s| s.name == name).cloned() else {
                continue;
            };
            self.loading.insert(name.clone());
            let (tx, ctx) = (self.loaded_tx.clone(), ctx.clone());
            std::thread::spawn(move || {
                let read_at = modified(&source.path);
                let read = PredictionSet::read(source).map_err(|e| e.to_string());
                tx.send((name, read_at, read)).ok();
                ctx.request_repaint();
            });
        }
        self.pair_up();
    }

    /// Matches A and B once both have loaded.
    fn pair_up(&mut self) {
        let names = (
            self.state.a.clone().unwrap_or_default(),
            self.state.b.clone(),
        );
        if self.compared_names.as_ref() == Some(&names) {
            return;
        }
        let get = |n: &str| self.sets.get(n).and_then(|(_, r)| r.as_ref().ok()).cloned();
        let Some(a) = get(&names.0) else { return };
        let b = match &names.1 {
            Some(n) => match get(n) {
                Some(b) => Some(b),
                None => return,
            },
            None => None,
        };
        self.compared = Some(Arc::new(Compared::new(a, b)));
        self.compared_names = Some(names);
        self.choice.forget();
        self.applied = None;
        self.detail = None;
        self.selected = None;
        self.scroll_to_selected = true;
    }

    /// Re-applies filters and sort when they (or the pair) changed.
    pub fn refresh_rows(&mut self) {
        let Some(c) = &self.compared else { return };
        let wanted = (self.state.filters.clone(), self.state.sort.clone());
        if self.applied.as_ref() == Some(&wanted) {
            return;
        }
        self.rows = visible_rows(c, &wanted.0, &wanted.1);
        self.applied = Some(wanted);
        self.selected = self
            .state
            .selected_id
            .as_ref()
            .and_then(|id| c.a.rows.iter().position(|r| &r.id == id));
    }

    /// Selects A's row `index`, as a click on the table does.
    pub fn select(&mut self, index: usize) {
        if let Some(c) = &self.compared {
            self.state.selected_id = c.a.rows.get(index).map(|r| r.id.clone());
            self.selected = Some(index);
            self.scroll_to_selected = true;
        }
    }

    fn empty_state(&mut self, ui: &mut egui::Ui) {
        ui.vertical_centered(|ui| {
            ui.add_space(80.0);
            ui.heading("No predictions yet");
            let project = self
                .project_dir
                .as_ref()
                .map_or("P".to_string(), |d| d.display().to_string());
            ui.label("Evaluate a trained run to compare its outputs with the references:");
            ui.code(format!("lablens eval --project {project} --run R"));
            ui.label("Its predictions.jsonl appears here when it is written.");
            ui.horizontal(|ui| {
                self.evaluate_menu(ui);
                if ui.button("Look again").clicked() {
                    self.refresh();
                }
            });
        });
    }

    /// Evaluate the base model or a run over the test split (progress in the status line; a
    /// cancelled evaluation continues where it stopped when started again).
    fn evaluate_menu(&mut self, ui: &mut egui::Ui) {
        ui.menu_button("Evaluate…", |ui| {
            if ui
                .button("the base model")
                .on_hover_text("The project's model without an adapter, over the test split")
                .clicked()
            {
                self.requests.push(Request::Evaluate(Target::Base));
            }
            for id in self.runs.iter().rev() {
                if ui.button(format!("run {id}")).clicked() {
                    self.requests
                        .push(Request::Evaluate(Target::Run(id.clone())));
                }
            }
        });
    }

    fn source_bar(&mut self, ui: &mut egui::Ui) {
        let names: Vec<String> = self.sources.iter().map(|s| s.name.clone()).collect();
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Outputs A").id;
            let before = (self.state.a.clone(), self.state.b.clone());
            egui::ComboBox::from_id_salt("compare_a")
                .selected_text(self.state.a.clone().unwrap_or_default())
                .show_ui(ui, |ui| {
                    for n in &names {
                        ui.selectable_value(&mut self.state.a, Some(n.clone()), n);
                    }
                })
                .response
                .labelled_by(label);
            let label = ui.label("Outputs B").id;
            egui::ComboBox::from_id_salt("compare_b")
                .selected_text(self.state.b.clone().unwrap_or_else(|| "none".into()))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.state.b, None, "none");
                    for n in names.iter().filter(|n| Some(*n) != self.state.a.as_ref()) {
                        ui.selectable_value(&mut self.state.b, Some(n.clone()), n);
                    }
                })
                .response
                .labelled_by(label);
            if self.state.b.is_some() && self.state.b == self.state.a {
                self.state.b = None;
            }
            if before != (self.state.a.clone(), self.state.b.clone()) {
                self.compared_names = None;
            }
            if ui
                .button("Reload")
                .on_hover_text("Read the prediction files again")
                .clicked()
            {
                self.refresh();
            }
            self.evaluate_menu(ui);
            ui.separator();
            ui.toggle_value(&mut self.state.review_mode, "Review mode")
                .on_hover_text(
                    "A clean view for rating two outputs without knowing which is which",
                );
        });
    }

    fn issues_line(&self, ui: &mut egui::Ui, c: &Compared) {
        ui.horizontal_wrapped(|ui| {
            ui.label(format!("{} records · {} shown", c.len(), self.rows.len()));
            if let Some(b) = &c.b {
                let shared = c.shared_ids().len();
                if shared < c.len() {
                    ui.label(format!(
                        "· {} of A's records have no output in {}",
                        c.len() - shared,
                        b.source.name
                    ));
                }
            }
            for set in std::iter::once(&c.a).chain(c.b.as_ref()) {
                if set.issues.is_empty() {
                    continue;
                }
                let skipped = set.issues.iter().filter(|i| i.skipped).count();
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "{}: {skipped} lines skipped, {} fields ignored",
                        set.source.name,
                        set.issues.len() - skipped
                    ),
                )
                .on_hover_text(
                    set.issues
                        .iter()
                        .take(20)
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
            }
        });
    }

    fn filter_bar(&mut self, ui: &mut egui::Ui, c: &Compared) {
        let distinct = |f: fn(&crate::project::predictions::PredictionRow) -> Option<&String>| {
            c.a.rows
                .iter()
                .filter_map(f)
                .cloned()
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect::<Vec<_>>()
        };
        let genders = distinct(|r| r.gender.as_ref());
        let ethnicities = distinct(|r| r.ethnicity.as_ref());
        let metrics = c.metric_names();
        let has_b = c.b.is_some();
        let sort = &mut self.state.sort;
        let f = &mut self.state.filters;
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Sort by").id;
            egui::ComboBox::from_id_salt("compare_sort")
                .selected_text(
                    sort.metric
                        .as_deref()
                        .map_or_else(|| "file order".into(), metric_label),
                )
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut sort.metric, None, "file order");
                    for m in &metrics {
                        ui.selectable_value(&mut sort.metric, Some(m.clone()), metric_label(m));
                    }
                })
                .response
                .labelled_by(label);
            if has_b {
                ui.selectable_value(&mut sort.side, Side::A, "of A");
                ui.selectable_value(&mut sort.side, Side::B, "of B");
            }
            ui.checkbox(&mut sort.best_first, "best first")
                .on_hover_text(
                    "Unticked: the worst rows first (low ROUGE/BLEU, high grade or error counts)",
                );
            ui.separator();
            combo::choice(ui, "Problem", &mut f.problem, &ProblemFilter::ALL, |p| {
                p.label().into()
            });
            combo::demographics(
                ui,
                &mut f.gender,
                &mut f.age_group,
                &mut f.ethnicity,
                (&genders, &ethnicities),
            );
            let label = ui.label("Search").id;
            ui.add(
                egui::TextEdit::singleline(&mut f.text)
                    .hint_text("words or id")
                    .desired_width(140.0),
            )
            .labelled_by(label);
            if *f != RowFilters::default() && ui.button("Clear filters").clicked() {
                *f = RowFilters::default();
            }
        });
    }

    fn table(&mut self, ui: &mut egui::Ui, c: &Compared) {
        let metric = self.state.sort.metric.clone();
        let shown_metric = metric.unwrap_or_else(|| "rougeL.fmeasure".into());
        let sides: Vec<Side> = if c.b.is_some() {
            vec![Side::A, Side::B]
        } else {
            vec![Side::A]
        };
        let mut columns = vec![Column::auto().at_least(80.0)];
        columns.extend([Column::auto(); 3]);
        columns.extend(sides.iter().map(|_| Column::auto().at_least(90.0)));
        columns.extend(sides.iter().map(|_| Column::auto().at_least(110.0)));
        columns.push(Column::remainder().clip(true));
        let shown = metric_short_label(&shown_metric);
        let mut header: Vec<(String, Option<&str>)> = ["ID", "Sex", "Age", "Ethnicity"]
            .iter()
            .map(|t| (t.to_string(), None))
            .collect();
        header.extend(sides.iter().map(|s| (format!("{shown} {s:?}"), None)));
        header.extend(sides.iter().map(|s| (format!("Problems {s:?}"), None)));
        header.push(("Output A".into(), None));
        let rows = record_table::Rows {
            rows: &self.rows,
            selected: self.selected,
            scroll_to_selected: &mut self.scroll_to_selected,
        };
        let chosen = record_table::show(ui, rows, &columns, &header, |row, i| {
            let a = &c.a.rows[i];
            row.col(|ui| {
                ui.label(&a.id);
            });
            for value in [
                or_dash(a.gender.as_ref()),
                or_dash(a.age),
                or_dash(a.ethnicity.as_ref()),
            ] {
                row.col(|ui| {
                    ui.label(value);
                });
            }
            for s in &sides {
                row.col(|ui| {
                    let v = c.row(i, *s).and_then(|r| r.metric(&shown_metric));
                    ui.label(v.map_or("—".into(), detail::format_metric));
                });
            }
            for s in &sides {
                row.col(|ui| {
                    if let Some(r) = c.row(i, *s) {
                        detail::problem_chips(ui, r);
                    }
                });
            }
            row.col(|ui| {
                ui.add(egui::Label::new(first_words(&a.prediction)).truncate());
            });
        });
        if let Some(i) = chosen {
            self.select(i);
        }
    }
}

impl Panel for ComparePanel {
    /// Shows the prediction sets of the project in `dir`.
    fn set_project(&mut self, dir: &Path) {
        if self.project_dir.as_deref() != Some(dir) {
            self.sets.clear();
            self.compared = None;
            self.compared_names = None;
        }
        self.project_dir = Some(dir.to_path_buf());
        self.refresh();
    }

    /// Looks again for prediction files (a finished evaluation adds one) and reads changed
    /// sets again.
    fn refresh(&mut self) {
        let Some(dir) = &self.project_dir else { return };
        self.choice.forget();
        let known: Vec<String> = self.sources.iter().map(|s| s.name.clone()).collect();
        self.sources = prediction_sources(dir);
        self.runs = list_runs(dir).into_iter().map(|r| r.id).collect();
        let sources = &self.sources;
        let before = self.sets.len();
        self.sets.retain(|name, (read_at, _)| {
            sources
                .iter()
                .any(|s| &s.name == name && modified(&s.path) == *read_at)
        });
        if self.sets.len() != before {
            self.compared_names = None;
        }
        let names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        if self.state.a.as_deref().is_none_or(|a| !names.contains(&a)) {
            self.state.a = names.last().map(|s| s.to_string());
            self.state.b = names
                .iter()
                .rev()
                .nth(1)
                .map(|s| s.to_string())
                .filter(|_| names.len() > 1);
        }
        if self.state.b.as_deref().is_some_and(|b| !names.contains(&b)) {
            self.state.b = None;
        }
        // A set that appeared while the panel was open (an evaluation just finished) is shown
        // as A, against what A was before.
        let appeared = names.iter().rev().find(|n| !known.iter().any(|k| k == *n));
        if let (false, Some(new)) = (known.is_empty(), appeared) {
            let before = self.state.a.replace(new.to_string());
            if self.state.b.is_none() || self.state.b.as_deref() == Some(new) {
                self.state.b = before.filter(|b| b != new);
            }
        }
    }

    /// A finished job may have written a prediction set.
    fn on_event(&mut self, event: &Event) {
        if let Event::Finished { .. } = event {
            self.refresh();
        }
    }

    /// Keeps the reviewer's comment too (the window saves on closing as well).
    fn save_state(&mut self, state: &mut AppState) {
        self.review.save_comment();
        state.compare = self.state.clone();
    }

    /// Draws the panel.
    fn ui(&mut self, ui: &mut egui::Ui, _ctx: &PanelContext<'_>) {
        self.load(ui.ctx());
        self.refresh_rows();
        if self.sources.is_empty() {
            self.empty_state(ui);
            return;
        }
        if self.state.review_mode {
            // Reviewers see no model names: only the way back to the comparison.
            ui.horizontal(|ui| {
                ui.toggle_value(&mut self.state.review_mode, "Review mode")
                    .on_hover_text("Leave review mode for the full comparison");
            });
        } else {
            self.source_bar(ui);
        }
        ui.separator();
        let errors: Vec<String> = [&self.state.a, &self.state.b]
            .into_iter()
            .flatten()
            .filter_map(|n| self.sets.get(n)?.1.as_ref().err().cloned())
            .collect();
        for e in &errors {
            ui.colored_label(ui.visuals().error_fg_color, format!("Could not read: {e}"));
        }
        let Some(compared) = self.compared.clone() else {
            if errors.is_empty() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Reading predictions…");
                });
            }
            return;
        };
        if self.state.review_mode {
            let dir = self.project_dir.clone();
            self.review
                .ui(ui, &compared, dir.as_deref(), &mut self.state.reviewer);
            return;
        }
        self.issues_line(ui, &compared);
        self.filter_bar(ui, &compared);
        if let Some(dir) = self.project_dir.clone()
            && self.choice.ui(ui, &dir, &compared, &self.rows)
        {
            // Reviewing opens on the new choice.
            self.review.session = None;
        }
        ui.separator();
        egui::Panel::top("compare_rows")
            .resizable(true)
            .default_size(230.0)
            .show(ui, |ui| self.table(ui, &compared));
        egui::CentralPanel::default().show(ui, |ui| {
            let show_removed = &mut self.state.show_removed;
            match self.selected {
                Some(i) => {
                    let detail = self
                        .detail
                        .take()
                        .filter(|d| d.row == i)
                        .unwrap_or_else(|| detail::Detail::new(&compared, i));
                    detail.show(ui, &compared, show_removed);
                    self.detail = Some(detail);
                }
                None => {
                    ui.label(
                        "Select a row to read its source, reference and outputs side by side. \
                         Up and down arrows (or j and k) move through the rows.",
                    );
                }
            }
        });
    }

    fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }
}

fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(30)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
