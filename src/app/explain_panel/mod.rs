//! The Explain panel: pick a model's evaluated record, a method (LIME, saliency, section
//! importance, input length), its sample count and target, and run it on the engine with
//! progress and cancel; the record's saved explanation shows as the input coloured word by
//! word, the output beside it, the strongest features, the section bars and the length curve.

mod views;

use super::AppState;
use super::panel::{Panel, PanelContext, Request};
use crate::analysis::explain::{
    ExplainRequest, ExplainSettings, Explanation, FeatureKind, FeatureWeight, Method, TargetText,
    explanation_path, read_explanation,
};
use crate::engine::{Command, Event, JobId};
use crate::eval::job::target::Target;
use crate::project::predictions::{
    BASE, PredictionSource, keep_or_newest, modified, parse_predictions, prediction_sources,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which word weights colour the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Highlight {
    #[default]
    Lime,
    Saliency,
}

/// What the panel keeps across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExplainUiState {
    /// `base` or a run id; default: the newest evaluated run.
    pub source: Option<String>,
    pub record: Option<String>,
    pub settings: ExplainSettings,
    pub highlight: Highlight,
}

impl Default for ExplainUiState {
    fn default() -> Self {
        ExplainUiState {
            source: None,
            record: None,
            settings: ExplainSettings::default(),
            highlight: Highlight::Lime,
        }
    }
}

/// A record of the chosen prediction set: its id and the model's output.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordChoice {
    pub id: String,
    pub output: String,
}

/// The job the panel started, as the engine reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub job: Option<JobId>,
    pub stage: String,
    pub done: u64,
    pub total: u64,
}

pub struct ExplainPanel {
    pub state: ExplainUiState,
    project_dir: Option<PathBuf>,
    pub sources: Vec<PredictionSource>,
    pub records: Vec<RecordChoice>,
    /// The shown record's saved explanation.
    pub explanation: Option<Explanation>,
    pub message: Option<String>,
    pub running: Option<Running>,
    /// What the user asked of the window: an explanation job, or its cancel.
    requests: Vec<Request>,
    loaded_for: Option<(String, String)>,
    /// The prediction file `records` came from and when it was written.
    records_from: Option<(PathBuf, Option<std::time::SystemTime>)>,
}

impl ExplainPanel {
    pub fn new(state: ExplainUiState) -> Self {
        Self {
            state,
            project_dir: None,
            sources: Vec::new(),
            records: Vec::new(),
            explanation: None,
            message: None,
            running: None,
            requests: Vec::new(),
            loaded_for: None,
            records_from: None,
        }
    }

    fn source(&self) -> Option<&PredictionSource> {
        let name = self.state.source.as_deref()?;
        self.sources.iter().find(|s| s.name == name)
    }

    /// The chosen set's records (a predictions file of a split: small enough to read here).
    fn read_records(&mut self) {
        let from = self.source().map(|s| (s.path.clone(), modified(&s.path)));
        // A finished job refreshes the panel; the file is parsed again only when it changed.
        if from.is_none() || from != self.records_from {
            let rows = from
                .as_ref()
                .and_then(|(path, _)| std::fs::read(path).ok())
                .map(|b| parse_predictions(&b).0)
                .unwrap_or_default();
            self.records = rows
                .into_iter()
                .map(|r| RecordChoice {
                    id: r.id,
                    output: r.prediction,
                })
                .collect();
            self.records_from = from;
        }
        let ids: Vec<&str> = self.records.iter().map(|r| r.id.as_str()).collect();
        if self
            .state
            .record
            .as_deref()
            .is_none_or(|r| !ids.contains(&r))
        {
            self.state.record = ids.first().map(|s| s.to_string());
        }
        self.loaded_for = None;
        self.load_explanation();
    }

    /// Reads the shown record's saved explanation when the choice changed.
    fn load_explanation(&mut self) {
        let (Some(source), Some(record)) = (self.source(), self.state.record.clone()) else {
            self.explanation = None;
            return;
        };
        let key = (source.name.clone(), record.clone());
        if self.loaded_for.as_ref() == Some(&key) {
            return;
        }
        let dir = source.path.parent().unwrap_or(Path::new("."));
        match read_explanation(&explanation_path(dir, &record)) {
            Ok(e) => {
                self.explanation = e;
                self.message = None;
            }
            Err(e) => {
                self.explanation = None;
                self.message = Some(e.to_string());
            }
        }
        self.loaded_for = Some(key);
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Asks for the chosen method on the chosen record.
    pub fn request(&mut self) {
        let (Some(dir), Some(source), Some(record)) = (
            self.project_dir.clone(),
            self.state.source.clone(),
            self.state.record.clone(),
        ) else {
            self.message =
                Some("Evaluate a model first: explanations start from its records.".into());
            return;
        };
        let target = if source == BASE {
            Target::Base
        } else {
            Target::Run(source)
        };
        let request = ExplainRequest {
            project_dir: dir,
            target,
            record,
            settings: self.state.settings.clone(),
            dataset: None,
        };
        self.requests
            .push(Request::Submit(Command::Explain(Box::new(request))));
    }

    fn controls(&mut self, ui: &mut egui::Ui) {
        let before = (self.state.source.clone(), self.state.record.clone());
        ui.horizontal_wrapped(|ui| {
            let names: Vec<String> = self.sources.iter().map(|s| s.name.clone()).collect();
            combo(ui, "Model", &mut self.state.source, &names);
            let ids: Vec<String> = self.records.iter().map(|r| r.id.clone()).collect();
            combo(ui, "Record", &mut self.state.record, &ids);
        });
        if before.0 != self.state.source {
            self.read_records();
        } else if before.1 != self.state.record {
            self.load_explanation();
        }
        let output = self
            .records
            .iter()
            .find(|r| Some(&r.id) == self.state.record.as_ref())
            .map(|r| r.output.clone())
            .unwrap_or_default();
        let s = &mut self.state.settings;
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Method").id;
            egui::ComboBox::from_id_salt("explain-method")
                .selected_text(s.method.label())
                .show_ui(ui, |ui| {
                    for m in Method::ALL {
                        ui.selectable_value(&mut s.method, m, m.label());
                    }
                })
                .response
                .labelled_by(label);
            if s.method == Method::Lime {
                let label = ui.label("Features").id;
                egui::ComboBox::from_id_salt("explain-features")
                    .selected_text(s.features.name())
                    .show_ui(ui, |ui| {
                        for k in FeatureKind::ALL {
                            ui.selectable_value(&mut s.features, k, k.name());
                        }
                    })
                    .response
                    .labelled_by(label);
                let label = ui.label("Samples").id;
                ui.add(egui::DragValue::new(&mut s.samples).range(2..=4096))
                    .labelled_by(label);
                let label = ui.label("Seed").id;
                ui.add(egui::DragValue::new(&mut s.seed)).labelled_by(label);
            }
            let label = ui.label("Target").id;
            egui::ComboBox::from_id_salt("explain-target")
                .selected_text(s.target.name())
                .show_ui(ui, |ui| {
                    for t in targets(&output) {
                        let label = t.name();
                        ui.selectable_value(&mut s.target, t, label);
                    }
                })
                .response
                .labelled_by(label);
        });
        ui.horizontal(|ui| match &self.running {
            Some(r) => {
                let fraction = if r.total > 0 {
                    r.done as f32 / r.total as f32
                } else {
                    0.0
                };
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .desired_width(260.0)
                        .text(format!("{} {}/{}", r.stage, r.done, r.total)),
                );
                if ui.button("Cancel").clicked() {
                    self.requests.push(Request::Cancel);
                }
            }
            None => {
                if ui
                    .add_enabled(self.state.record.is_some(), egui::Button::new("Explain"))
                    .clicked()
                {
                    self.request();
                }
            }
        });
    }

    fn explanation_ui(&mut self, ui: &mut egui::Ui, e: &Explanation) {
        let lime_words = e
            .lime
            .as_ref()
            .map(|l| crate::analysis::explain::word_weights_of(&e.input, &l.result.weights));
        let saliency_words = e.saliency.as_ref().map(|s| s.result.words.clone());
        if lime_words.is_some() && saliency_words.is_some() {
            ui.horizontal(|ui| {
                ui.label("Colour the input by");
                ui.radio_value(&mut self.state.highlight, Highlight::Lime, "LIME");
                ui.radio_value(&mut self.state.highlight, Highlight::Saliency, "Saliency");
            });
        }
        let (words, features, what): (Option<Vec<FeatureWeight>>, Vec<FeatureWeight>, String) =
            match (&self.state.highlight, &lime_words, &saliency_words) {
                (Highlight::Saliency, _, Some(s)) | (Highlight::Lime, None, Some(s)) => {
                    let sal = e.saliency.as_ref();
                    (
                        Some(s.clone()),
                        s.clone(),
                        sal.map_or(String::new(), |t| {
                            format!("saliency for the {} ({:.2} s)", t.target, t.result.seconds)
                        }),
                    )
                }
                (_, Some(w), _) => {
                    let l = e.lime.as_ref();
                    (
                        Some(w.clone()),
                        l.map(|l| l.result.weights.clone()).unwrap_or_default(),
                        l.map_or(String::new(), |l| {
                            format!(
                                "LIME on {} for the {}: {} samples, R² {:.3}, {:.0} tokens/s",
                                l.result.features.name(),
                                l.target,
                                l.result.samples,
                                l.result.r2,
                                l.result.scoring.tokens_per_s
                            )
                        }),
                    )
                }
                _ => (None, Vec::new(), String::new()),
            };
        ui.columns(2, |cols| {
            cols[0].heading("Input");
            match &words {
                Some(w) => {
                    cols[0].weak(&what);
                    let scale = views::scale_of(w);
                    views::legend(&mut cols[0], scale);
                    views::highlighted_text(&mut cols[0], &e.input, w, scale);
                }
                None => {
                    cols[0].label(&e.input);
                }
            }
            cols[1].heading("Output");
            cols[1].weak(format!("from {}", e.output_source));
            cols[1].label(&e.output);
            if !features.is_empty() {
                cols[1].separator();
                cols[1].strong("Top features");
                views::top_bars(&mut cols[1], &features, 12);
            }
        });
        if let Some(s) = &e.sections {
            ui.separator();
            ui.heading("Section importance");
            views::section_bars(ui, &s.result);
        }
        if let Some(l) = &e.length {
            ui.separator();
            ui.heading("Input length");
            views::length_curves(ui, &l.result);
        }
    }
}

impl Panel for ExplainPanel {
    fn set_project(&mut self, dir: &Path) {
        if self.project_dir.as_deref() != Some(dir) {
            self.loaded_for = None;
            self.explanation = None;
        }
        self.project_dir = Some(dir.to_path_buf());
        self.refresh();
    }

    /// Looks again for evaluated prediction sets (an evaluation adds one).
    fn refresh(&mut self) {
        let Some(dir) = &self.project_dir else { return };
        self.sources = prediction_sources(dir);
        self.state.source = keep_or_newest(&self.sources, self.state.source.as_deref());
        self.read_records();
    }

    fn on_event(&mut self, event: &Event) {
        let mine = |job: &JobId| self.running.as_ref().is_some_and(|r| r.job == Some(*job));
        match event {
            // Another job may have written a prediction set; this panel's own keeps its records.
            Event::Finished { .. } if !self.is_running() => self.refresh(),
            Event::Progress {
                job,
                stage,
                done,
                total,
                ..
            } if mine(job) => {
                if let Some(r) = &mut self.running {
                    r.stage = stage.clone();
                    r.done = *done;
                    r.total = *total;
                }
            }
            Event::Explained {
                job, explanation, ..
            } if mine(job) => {
                self.running = None;
                self.message = None;
                if self.state.record.as_deref() == Some(explanation.record.as_str()) {
                    self.explanation = Some((**explanation).clone());
                }
            }
            Event::Failed { job, error, .. } if mine(job) => {
                self.running = None;
                self.message = Some(format!("The explanation failed: {error}"));
            }
            Event::Cancelled { job } if mine(job) => {
                self.running = None;
                self.message = Some("Cancelled.".into());
            }
            _ => {}
        }
    }

    fn save_state(&mut self, state: &mut AppState) {
        state.explain = self.state.clone();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _ctx: &PanelContext<'_>) {
        self.controls(ui);
        ui.separator();
        if let Some(m) = &self.message {
            ui.colored_label(ui.visuals().warn_fg_color, m);
        }
        let Some(e) = &self.explanation else {
            ui.label(if self.records.is_empty() {
                "No evaluated records yet: evaluate a model (Compare panel, Evaluate…) to explain its outputs."
            } else {
                "No explanation of this record yet: choose a method and press Explain."
            });
            return;
        };
        let e = e.clone();
        egui::ScrollArea::vertical().show(ui, |ui| self.explanation_ui(ui, &e));
    }

    fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    /// The window submitted the request; `job` is `None` when the engine was busy.
    fn submitted(&mut self, job: Option<JobId>) {
        self.running = job.map(|job| Running {
            job: Some(job),
            stage: "starting".into(),
            done: 0,
            total: 0,
        });
    }
}

/// The targets offered for a record: its output, its reference, and each medication its
/// output names.
fn targets(output: &str) -> Vec<TargetText> {
    let mut out = vec![TargetText::Output, TargetText::Reference];
    let mut seen = std::collections::BTreeSet::new();
    for p in crate::eval::meds::extract(output) {
        if seen.insert(p.name.to_ascii_lowercase()) {
            out.push(TargetText::Medication(p.name));
        }
    }
    out
}

/// A choice among `options` after the label `name`.
fn combo(ui: &mut egui::Ui, name: &str, value: &mut Option<String>, options: &[String]) {
    let label = ui.label(name).id;
    egui::ComboBox::from_id_salt(("explain", name))
        .selected_text(value.clone().unwrap_or_else(|| "—".into()))
        .show_ui(ui, |ui| {
            for o in options {
                ui.selectable_value(value, Some(o.clone()), o);
            }
        })
        .response
        .labelled_by(label);
}

#[cfg(test)]
mod tests;
