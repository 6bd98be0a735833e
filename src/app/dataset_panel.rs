//! The Dataset panel: a virtualized table of records with filters, the selected record in full,
//! the validation report and the distributions of lengths and demographics.

use super::AppState;
use super::charts::{self, ChartData};
use super::combo;
use super::panel::{Panel, PanelContext, Request};
use super::record_table::{self, or_dash};
use super::record_view;
use super::validation_view;
use crate::data::dataset::DatasetView;
use crate::data::record::{AgeGroup, Split};
use crate::data::sections::SectionKind;
use egui_extras::Column;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which rows the table shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filters {
    pub split: Option<Split>,
    pub gender: Option<String>,
    pub age_group: Option<AgeGroup>,
    pub ethnicity: Option<String>,
    /// Case-insensitive text searched in the id, patient id, input and target.
    pub text: String,
}

impl Filters {
    /// Row indices of `view` that pass every filter, in file order.
    pub fn apply(&self, view: &DatasetView) -> Vec<usize> {
        let query = (!self.text.trim().is_empty()).then(|| {
            regex::RegexBuilder::new(&regex::escape(self.text.trim()))
                .case_insensitive(true)
                .build()
        });
        let query = match query {
            Some(Ok(q)) => Some(q),
            // An escaped literal always compiles; a pathological one matches nothing.
            Some(Err(_)) => return Vec::new(),
            None => None,
        };
        view.records()
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                self.split.is_none_or(|s| view.splits[*i] == s)
                    && self
                        .gender
                        .as_ref()
                        .is_none_or(|g| r.gender.as_ref() == Some(g))
                    && self.age_group.is_none_or(|g| r.age_group() == Some(g))
                    && self
                        .ethnicity
                        .as_ref()
                        .is_none_or(|e| r.ethnicity.as_ref() == Some(e))
                    && query.as_ref().is_none_or(|q| {
                        q.is_match(&r.id)
                            || r.patient_id.as_deref().is_some_and(|p| q.is_match(p))
                            || q.is_match(&r.input)
                            || q.is_match(&r.target)
                    })
            })
            .map(|(i, _)| i)
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DatasetTab {
    #[default]
    Records,
    Validation,
    Distributions,
}

impl DatasetTab {
    pub const ALL: [DatasetTab; 3] = [
        DatasetTab::Records,
        DatasetTab::Validation,
        DatasetTab::Distributions,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DatasetTab::Records => "Records",
            DatasetTab::Validation => "Validation",
            DatasetTab::Distributions => "Distributions",
        }
    }
}

/// The panel's persisted part.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetUiState {
    pub filters: Filters,
    pub tab: DatasetTab,
    pub selected_id: Option<String>,
    pub scrubbed: bool,
}

/// Distinct values offered by the demographic filters.
#[derive(Debug, Default)]
struct Choices {
    genders: Vec<String>,
    ethnicities: Vec<String>,
}

pub struct DatasetPanel {
    pub state: DatasetUiState,
    view: Option<Arc<DatasetView>>,
    /// Rows passing the filters; recomputed only when the filters change.
    pub rows: Vec<usize>,
    applied: Option<Filters>,
    text_edited_at: Option<Instant>,
    pub selected: Option<usize>,
    scroll_to_selected: bool,
    choices: Choices,
    charts: Option<ChartData>,
    requests: Vec<Request>,
}

/// Above this many records the text filter waits for a pause in typing.
const DEBOUNCE_ROWS: usize = 20_000;

impl DatasetPanel {
    pub fn new(state: DatasetUiState) -> Self {
        Self {
            state,
            view: None,
            rows: Vec::new(),
            applied: None,
            text_edited_at: None,
            selected: None,
            scroll_to_selected: false,
            choices: Choices::default(),
            charts: None,
            requests: Vec::new(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.view.as_ref().map(|v| v.path())
    }

    pub fn view(&self) -> Option<&DatasetView> {
        self.view.as_deref()
    }

    /// The view, shared: for a context the panel itself is drawn beside.
    pub fn shared_view(&self) -> Option<Arc<DatasetView>> {
        self.view.clone()
    }

    pub fn set_dataset(&mut self, view: Arc<DatasetView>) {
        let distinct = |f: &dyn Fn(&crate::data::record::Record) -> Option<&String>| {
            view.records()
                .iter()
                .filter_map(f)
                .cloned()
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect::<Vec<_>>()
        };
        self.choices = Choices {
            genders: distinct(&|r| r.gender.as_ref()),
            ethnicities: distinct(&|r| r.ethnicity.as_ref()),
        };
        self.selected = self
            .state
            .selected_id
            .as_ref()
            .and_then(|id| view.records().iter().position(|r| &r.id == id));
        self.view = Some(view);
        self.applied = None;
        self.scroll_to_selected = true;
    }

    /// Selects the row of `records()[index]`, as a click on the table does.
    pub fn select(&mut self, index: usize) {
        if let Some(view) = &self.view {
            self.state.selected_id = view.records().get(index).map(|r| r.id.clone());
            self.selected = Some(index);
            self.scroll_to_selected = true;
        }
    }

    /// Re-applies the filters when they changed (the text one after a pause on big datasets).
    pub fn refresh_rows(&mut self) {
        let Some(view) = &self.view else { return };
        if self.applied.as_ref() == Some(&self.state.filters) {
            return;
        }
        let text_changed = self
            .applied
            .as_ref()
            .is_some_and(|a| a.text != self.state.filters.text);
        if text_changed
            && view.records().len() > DEBOUNCE_ROWS
            && self
                .text_edited_at
                .is_some_and(|t| t.elapsed() < Duration::from_millis(300))
        {
            return;
        }
        self.rows = self.state.filters.apply(view);
        self.charts = Some(ChartData::compute(view, &self.rows));
        self.applied = Some(self.state.filters.clone());
    }

    fn header(&self, ui: &mut egui::Ui, view: &DatasetView) {
        ui.horizontal_wrapped(|ui| {
            ui.heading(
                view.path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            ui.label(format!(
                "{} records · {} shown · {} skipped lines",
                view.records().len(),
                self.rows.len(),
                view.loaded.issues.len()
            ));
            let failed = view.report.checks.iter().filter(|c| !c.passed).count();
            if failed == 0 {
                ui.colored_label(
                    egui::Color32::from_rgb(0x4c, 0xaf, 0x50),
                    "all checks passed",
                );
            } else {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!("{failed} check(s) failed"),
                );
            }
        });
    }

    fn filter_bar(&mut self, ui: &mut egui::Ui) {
        let f = &mut self.state.filters;
        ui.horizontal_wrapped(|ui| {
            let label_id = ui.label("Search").id;
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut f.text)
                        .hint_text("words, id or patient")
                        .desired_width(180.0),
                )
                .labelled_by(label_id);
            if edit.changed() {
                self.text_edited_at = Some(Instant::now());
            }
            combo::filter(ui, "Split", &mut f.split, &Split::ALL, |s| {
                s.name().to_string()
            });
            combo::demographics(
                ui,
                &mut f.gender,
                &mut f.age_group,
                &mut f.ethnicity,
                (&self.choices.genders, &self.choices.ethnicities),
            );
            if *f != Filters::default() && ui.button("Clear filters").clicked() {
                *f = Filters::default();
            }
        });
    }

    fn record_side(&mut self, ui: &mut egui::Ui, view: &DatasetView) {
        egui::ScrollArea::vertical().id_salt("record_scroll").show(ui, |ui| {
            match self.selected.and_then(|i| view.records().get(i).map(|r| (i, r))) {
                Some((i, record)) => {
                    record_view::show(ui, record, view.splits[i], &mut self.state.scrubbed)
                }
                None => {
                    ui.label("Select a record to read it in full. Up and down arrows move through the rows.");
                }
            }
        });
    }

    fn table(&mut self, ui: &mut egui::Ui, view: &DatasetView) {
        let columns = [
            Column::auto().at_least(90.0),
            Column::auto().at_least(70.0),
            Column::auto(),
            Column::auto(),
            Column::auto(),
            Column::auto(),
            Column::auto(),
            Column::auto(),
            Column::remainder().clip(true),
        ];
        let header: Vec<(String, Option<&str>)> = [
            ("ID", None),
            ("Patient", None),
            ("Split", None),
            ("Sex", None),
            ("Age", None),
            ("Ethnicity", None),
            ("In", Some("words of the input")),
            ("Out", Some("words of the target")),
            ("Diagnosis / first line", None),
        ]
        .into_iter()
        .map(|(t, hover)| (t.to_string(), hover))
        .collect();
        let rows = record_table::Rows {
            rows: &self.rows,
            selected: self.selected,
            scroll_to_selected: &mut self.scroll_to_selected,
        };
        // Scrolled sideways where the pane is narrower than the columns, never under the
        // record view beside it.
        let chosen = egui::ScrollArea::horizontal()
            .id_salt("records_table")
            .show(ui, |ui| {
                record_table::show(ui, rows, &columns, &header, |row, i| {
                    let r = &view.records()[i];
                    let cells = [
                        r.id.clone(),
                        or_dash(r.patient_id.as_ref()),
                        view.splits[i].name().to_string(),
                        or_dash(r.gender.as_ref()),
                        or_dash(r.age),
                        or_dash(r.ethnicity.as_ref()),
                        view.input_words[i].to_string(),
                        view.target_words[i].to_string(),
                    ];
                    for cell in cells {
                        row.col(|ui| {
                            ui.label(cell);
                        });
                    }
                    row.col(|ui| {
                        ui.add(egui::Label::new(preview(&r.input)).truncate());
                    });
                })
            })
            .inner;
        if let Some(i) = chosen {
            self.select(i);
        }
    }
}

impl Panel for DatasetPanel {
    /// The window opens the project's dataset (the one open last, else its first), which
    /// replaces the one shown here.
    fn set_project(&mut self, _dir: &Path) {}

    fn refresh(&mut self) {
        self.refresh_rows();
    }

    fn save_state(&mut self, state: &mut AppState) {
        state.dataset = self.state.clone();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _ctx: &PanelContext<'_>) {
        self.refresh_rows();
        if self.text_edited_at.is_some() && self.applied.as_ref() != Some(&self.state.filters) {
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
        let Some(view) = self.view.clone() else {
            if empty_state(ui) {
                self.requests.push(Request::PickDataset);
            }
            return;
        };
        self.header(ui, &view);
        self.filter_bar(ui);
        ui.separator();
        egui::Panel::right("record_view")
            .resizable(true)
            .default_size(ui.available_width() * 0.4)
            .show(ui, |ui| self.record_side(ui, &view));
        ui.horizontal(|ui| {
            for tab in DatasetTab::ALL {
                ui.selectable_value(&mut self.state.tab, tab, tab.label());
            }
        });
        ui.separator();
        match self.state.tab {
            DatasetTab::Records => self.table(ui, &view),
            DatasetTab::Validation => {
                if let Some(index) = validation_view::show(ui, &view) {
                    self.select(index);
                }
            }
            DatasetTab::Distributions => {
                if let Some(c) = &self.charts {
                    charts::show(ui, c);
                }
            }
        }
    }

    fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }
}

/// What the table shows of a note: its diagnosis when it has one, else its first line of text.
fn preview(text: &str) -> String {
    let diagnosis = crate::data::sections::section_text(text, SectionKind::Diagnosis);
    diagnosis
        .unwrap_or(text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(160)
        .collect()
}

fn empty_state(ui: &mut egui::Ui) -> bool {
    let mut open = false;
    ui.vertical_centered(|ui| {
        ui.add_space(80.0);
        ui.heading("No dataset open");
        ui.label("Open a JSONL or CSV file, or drop one on this window.");
        ui.label("Records need an input and a target; other columns are kept.");
        open = ui.button("Open dataset…").clicked();
    });
    open
}

#[cfg(test)]
mod tests;
