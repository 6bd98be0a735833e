//! Review mode: a plain view for clinicians. Two versions of a record's explanation in a
//! blinded order, a rating from 1 to 5 and flags for each, a comment; every change is written
//! to `reviews.jsonl` at once. Afterwards the results reveal which version came from which
//! model, with mean ratings, flag rates, agreement between reviewers and a CSV export.

use super::rows::{Compared, Side};
use crate::project::predictions::PredictionRow;
use crate::project::reviews::{
    OutputReview, Review, ReviewFlag, ReviewSession, reviews_path, summarize, write_csv,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// An edit of the review under way, made by a click and saved at once.
type Change = Box<dyn FnOnce(&mut Review)>;

/// A typed comment is saved after this pause, or when the box loses focus.
const COMMENT_PAUSE: Duration = Duration::from_millis(1200);

/// What each rating from 1 to 5 means, shown beside the buttons.
const ANCHORS: [&str; 5] = ["very poor", "poor", "acceptable", "good", "excellent"];

pub struct ReviewView {
    pub session: Option<ReviewSession>,
    /// The position in the session's records.
    pub position: usize,
    name: String,
    comment: String,
    comment_edited: Option<Instant>,
    pub revealed: bool,
    /// *Show results* was pressed and waits for its confirmation.
    confirming: bool,
    pub error: Option<String>,
    pub note: Option<String>,
}

/// Which output pair and file a session is for.
fn session_matches(s: &ReviewSession, path: &Path, reviewer: &str, c: &Compared) -> bool {
    let mut pair = [
        c.a.source.name.clone(),
        c.b.as_ref()
            .map(|b| b.source.name.clone())
            .unwrap_or_default(),
    ];
    pair.sort();
    s.path == path && s.reviewer == reviewer.trim() && s.sources == pair
}

impl ReviewView {
    pub fn new(reviewer: &str) -> Self {
        Self {
            session: None,
            position: 0,
            name: reviewer.to_string(),
            comment: String::new(),
            comment_edited: None,
            revealed: false,
            confirming: false,
            error: None,
            note: None,
        }
    }

    /// The record under review.
    pub fn current_id(&self) -> Option<&str> {
        let s = self.session.as_ref()?;
        s.items.get(self.position).map(String::as_str)
    }

    /// Opens (or keeps) the session of `reviewer` on the pair `c`, continuing where they stopped.
    fn open(&mut self, project: &Path, c: &Compared, reviewer: &str) {
        let Some(b) = &c.b else { return };
        let Some(path) = reviews_path(project, &c.a.source.name, &b.source.name) else {
            return;
        };
        if self
            .session
            .as_ref()
            .is_some_and(|s| session_matches(s, &path, reviewer, c))
        {
            return;
        }
        self.save_comment();
        match ReviewSession::open(
            &path,
            reviewer,
            [&c.a.source.name, &b.source.name],
            c.shared_ids(),
        ) {
            Ok(s) => {
                self.position = s.first_unfinished().unwrap_or(0);
                self.session = Some(s);
                self.error = None;
                self.load_comment();
            }
            Err(e) => self.error = Some(format!("Could not open the reviews: {e}")),
        }
    }

    fn load_comment(&mut self) {
        self.comment = match (&self.session, self.current_id()) {
            (Some(s), Some(id)) => s.review(id).comment,
            _ => String::new(),
        };
        self.comment_edited = None;
    }

    /// Saves `change` applied to the current review, with the comment as typed.
    pub fn update(&mut self, change: impl FnOnce(&mut Review)) {
        let Some(id) = self.current_id().map(String::from) else {
            return;
        };
        let Some(session) = &mut self.session else {
            return;
        };
        let mut review = session.review(&id);
        review.comment = self.comment.clone();
        change(&mut review);
        match session.save(review) {
            Ok(()) => {
                self.error = None;
                self.comment_edited = None;
            }
            Err(e) => self.error = Some(format!("Not saved: {e}")),
        }
    }

    /// Saves a comment typed since the last save.
    pub fn save_comment(&mut self) {
        if self.comment_edited.is_none() {
            return;
        }
        let saved = self
            .session
            .as_ref()
            .zip(self.current_id())
            .map(|(s, id)| s.review(id).comment);
        if saved.as_deref() != Some(self.comment.as_str()) {
            self.update(|_| {});
        }
        self.comment_edited = None;
    }

    /// Moves to record `position` (saving a typed comment first).
    pub fn go_to(&mut self, position: usize) {
        self.save_comment();
        let n = self.session.as_ref().map_or(0, |s| s.items.len());
        self.position = position.min(n.saturating_sub(1));
        self.load_comment();
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        c: &Compared,
        project: Option<&Path>,
        reviewer: &mut String,
    ) {
        if c.b.is_none() {
            ui.label(
                "Reviewing compares two versions of each explanation. Choose a second set of \
                 outputs (Outputs B) above: the base model's or another run's.",
            );
            return;
        }
        if reviewer.trim().is_empty() {
            self.ask_name(ui, reviewer);
            return;
        }
        if let Some(project) = project {
            self.open(project, c, reviewer);
        }
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        if self.session.is_none() {
            return;
        }
        if self
            .comment_edited
            .is_some_and(|t| t.elapsed() >= COMMENT_PAUSE)
        {
            self.save_comment();
        }
        if self.comment_edited.is_some() {
            ui.ctx().request_repaint_after(COMMENT_PAUSE);
        }
        self.header(ui, reviewer);
        ui.separator();
        if self.revealed {
            egui::ScrollArea::vertical()
                .id_salt("review_results")
                .show(ui, |ui| self.results(ui));
            return;
        }
        let Some(id) = self.current_id().map(String::from) else {
            ui.label("There are no records that both sets of outputs share.");
            return;
        };
        let Some(i) = c.a.rows.iter().position(|r| r.id == id) else {
            return;
        };
        egui::ScrollArea::vertical()
            .id_salt("review_item")
            .show(ui, |ui| self.item(ui, c, i, &id));
    }

    fn ask_name(&mut self, ui: &mut egui::Ui, reviewer: &mut String) {
        ui.vertical_centered(|ui| {
            ui.add_space(60.0);
            ui.heading("Review explanations");
            ui.label(
                "You will read a patient's note and two explanations of it, in an order that \
                 hides which program wrote which. Rate each one and mark what is wrong.",
            );
            ui.label("Everything you enter is saved at once.");
            ui.add_space(12.0);
            let label = ui.label("Your name").id;
            let edit = ui
                .add(egui::TextEdit::singleline(&mut self.name).desired_width(220.0))
                .labelled_by(label);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let start = ui
                .add_enabled(
                    !self.name.trim().is_empty(),
                    egui::Button::new("Start reviewing"),
                )
                .clicked();
            if (start || enter) && !self.name.trim().is_empty() {
                *reviewer = self.name.trim().to_string();
            }
        });
    }

    fn header(&mut self, ui: &mut egui::Ui, reviewer: &mut String) {
        let Some(s) = &self.session else { return };
        let (n, done) = (s.items.len(), s.done());
        let (chosen, chosen_missing) = (if s.chosen { " chosen" } else { "" }, s.chosen_missing);
        let next_open = s.first_unfinished();
        let mut go = None;
        ui.horizontal_wrapped(|ui| {
            ui.strong(format!("Reviewer: {reviewer}"));
            if ui.small_button("Change").clicked() {
                self.save_comment();
                self.name = reviewer.clone();
                reviewer.clear();
                self.session = None;
                self.revealed = false;
                return;
            }
            ui.separator();
            ui.label(format!(
                "Record {} of {n}{chosen} · {done} of {n} rated",
                self.position + 1
            ));
            if chosen_missing > 0 {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "{chosen_missing} chosen records are not in both outputs and are left out"
                    ),
                );
            }
            ui.add(
                egui::ProgressBar::new(if n > 0 { done as f32 / n as f32 } else { 0.0 })
                    .desired_width(160.0),
            );
            ui.separator();
            if ui
                .add_enabled(
                    self.position > 0 && !self.revealed,
                    egui::Button::new("Previous"),
                )
                .clicked()
            {
                go = Some(self.position - 1);
            }
            if ui
                .add_enabled(
                    self.position + 1 < n && !self.revealed,
                    egui::Button::new("Next"),
                )
                .clicked()
            {
                go = Some(self.position + 1);
            }
            if ui
                .add_enabled(
                    next_open.is_some() && !self.revealed,
                    egui::Button::new("Next not yet rated"),
                )
                .clicked()
            {
                go = next_open;
            }
            ui.separator();
            if self.revealed {
                if ui.button("Back to reviewing").clicked() {
                    self.revealed = false;
                }
            } else if self.confirming {
                // Seeing which program wrote which version unblinds every later rating.
                ui.label(
                    "Show which program wrote each version? Ratings made after it are not blind.",
                );
                if ui.button("Show them").clicked() {
                    self.save_comment();
                    self.revealed = true;
                    self.confirming = false;
                }
                if ui.button("Keep reviewing").clicked() {
                    self.confirming = false;
                }
            } else if ui
                .button("Show results")
                .on_hover_text("Results show which program wrote which version")
                .clicked()
            {
                self.confirming = true;
            }
        });
        if let Some(p) = go {
            self.go_to(p);
        }
    }

    fn item(&mut self, ui: &mut egui::Ui, c: &Compared, i: usize, id: &str) {
        let Some(session) = &self.session else { return };
        let review = session.review(id);
        let saved = session.is_saved(id);
        let a = &c.a.rows[i];
        ui.strong("The patient's note");
        // Heights are bounded so that the ratings stay in view without scrolling the page.
        egui::Frame::group(ui.style()).show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("review_note")
                .max_height(ui.ctx().content_rect().height() * 0.25)
                .auto_shrink([false, true])
                .show(ui, |ui| ui.label(&a.input));
        });
        egui::CollapsingHeader::new("Explanation written by a person (for reference)")
            .id_salt("review_reference")
            .show(ui, |ui| {
                ui.label(&a.reference);
            });
        ui.add_space(8.0);
        let text_of = |source: &str| -> Option<&PredictionRow> {
            let side = if source == c.a.source.name {
                Side::A
            } else {
                Side::B
            };
            c.row(i, side)
        };
        let mut change: Option<Change> = None;
        ui.columns(2, |cols| {
            for (k, (ui, out)) in cols.iter_mut().zip([&review.a, &review.b]).enumerate() {
                let version = ["Version A", "Version B"][k];
                ui.heading(version);
                let row = text_of(&out.source);
                egui::Frame::group(ui.style()).show(ui, |ui| {
                    egui::ScrollArea::vertical()
                        .id_salt(("review_version", k))
                        .max_height(ui.ctx().content_rect().height() * 0.3)
                        .auto_shrink([false, true])
                        .show(ui, |ui| ui.label(row.map_or("", |r| r.prediction.as_str())));
                });
                if row.is_some_and(|r| r.output_cut) {
                    ui.add(
                        egui::Label::new(
                            egui::RichText::new(super::detail::CUT_NOTE)
                                .color(ui.visuals().warn_fg_color),
                        )
                        .wrap(),
                    );
                }
                ui.label("How good is this explanation for the patient?");
                ui.horizontal(|ui| {
                    for x in 1..=5u8 {
                        let chosen = out.rating == Some(x);
                        if ui
                            .selectable_label(chosen, x.to_string())
                            .on_hover_text(ANCHORS[usize::from(x - 1)])
                            .clicked()
                        {
                            change = Some(Box::new(move |r: &mut Review| {
                                side(r, k).rating = Some(x);
                            }));
                        }
                    }
                    ui.label(out.rating.map_or("not rated yet".into(), |x| {
                        format!("{x} of 5, {}", ANCHORS[usize::from(x - 1)])
                    }));
                });
                // The scale's words in sight, not only on hover: ratings mean the same to
                // every reviewer.
                let scale: Vec<String> = ANCHORS
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("{} {a}", i + 1))
                    .collect();
                ui.add(egui::Label::new(egui::RichText::new(scale.join(" · ")).weak()).wrap());
                for flag in ReviewFlag::ALL {
                    let mut on = out.flags.contains(&flag);
                    if ui.checkbox(&mut on, flag.label()).changed() {
                        change = Some(Box::new(move |r: &mut Review| {
                            let flags = &mut side(r, k).flags;
                            if on {
                                flags.insert(flag);
                            } else {
                                flags.remove(&flag);
                            }
                        }));
                    }
                }
            }
        });
        ui.add_space(8.0);
        let label = ui.label("Comment (optional)").id;
        let edit = ui
            .add(
                egui::TextEdit::multiline(&mut self.comment)
                    .desired_rows(3)
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label);
        if edit.changed() {
            self.comment_edited = Some(Instant::now());
        }
        if edit.lost_focus() {
            self.save_comment();
        }
        if let Some(change) = change {
            self.update(change);
        }
        let status = if self.comment_edited.is_some() {
            "Comment not saved yet (saves when you pause)"
        } else if saved {
            "Saved"
        } else {
            "Nothing entered yet"
        };
        ui.weak(status);
    }

    /// Unblinded results over every reviewer of this pair.
    fn results(&mut self, ui: &mut egui::Ui) {
        let Some(s) = &self.session else { return };
        let lines: Vec<Review> = s
            .all
            .iter()
            .filter(|r| {
                let mut p = [r.a.source.clone(), r.b.source.clone()];
                p.sort();
                p == s.sources
            })
            .cloned()
            .collect();
        let summary = summarize(&lines);
        if let Some(id) = self.current_id() {
            let r = s.review(id);
            ui.label(format!(
                "Record {id}: Version A was {}, Version B was {}.",
                r.a.source, r.b.source
            ));
        }
        ui.label(format!(
            "{} reviews by {} reviewer(s) of {} records; {} with both versions rated.",
            summary.reviews,
            summary.reviewers.len(),
            summary.records,
            summary.complete
        ));
        ui.add_space(6.0);
        ui.strong("Ratings by model");
        egui::Grid::new("review_models")
            .striped(true)
            .show(ui, |ui| {
                ui.strong("Model");
                ui.strong("Rated");
                ui.strong("Mean rating");
                for f in ReviewFlag::ALL {
                    ui.strong(f.label());
                }
                ui.end_row();
                for m in &summary.sources {
                    ui.label(&m.source);
                    ui.label(m.rated.to_string());
                    ui.label(m.mean_rating.map_or("—".into(), |x| format!("{x:.2}")));
                    for f in ReviewFlag::ALL {
                        ui.label(format!("{:.0}%", m.flag_rates[&f] * 100.0));
                    }
                    ui.end_row();
                }
            });
        ui.add_space(6.0);
        ui.strong("Agreement between reviewers (Cohen's kappa: 1 is full agreement, 0 is chance)");
        if summary.agreement.is_empty() {
            ui.label("Agreement needs a second reviewer of the same records.");
        }
        let kappa = |k: Option<f64>| k.map_or("—".to_string(), |x| format!("{x:.2}"));
        for a in &summary.agreement {
            ui.label(format!(
                "{} and {}: {} versions rated by both, same rating {}, kappa on ratings {}",
                a.reviewers[0],
                a.reviewers[1],
                a.outputs,
                a.exact.map_or("—".into(), |x| format!("{:.0}%", x * 100.0)),
                kappa(a.rating_kappa)
            ));
            let flags: Vec<String> = ReviewFlag::ALL
                .iter()
                .map(|f| format!("{} {}", f.label(), kappa(a.flag_kappa[f])))
                .collect();
            ui.weak(format!("kappa on flags: {}", flags.join(" · ")));
        }
        ui.add_space(6.0);
        let csv = s.path.with_extension("csv");
        if ui.button("Save as CSV").clicked() {
            self.note = Some(match write_csv(&csv, &lines) {
                Ok(n) => format!("Saved {n} reviews to {}", csv.display()),
                Err(e) => format!("Could not save: {e}"),
            });
        }
        if let Some(n) = &self.note {
            ui.label(n);
        }
    }
}

/// Version A (`k` = 0) or B of a review.
fn side(r: &mut Review, k: usize) -> &mut OutputReview {
    if k == 0 { &mut r.a } else { &mut r.b }
}
